"""A search with several objectives: the Pareto front of the trials it ran, and the rule that
picks its champion from it.

The front is taken over the trials that ran to the end (`max_t`), at their last epoch, as
Optuna's `best_trials` takes COMPLETE trials alone: a trial stopped early has its objectives
at an earlier epoch, which do not compare. The champion is, of the front, the best on
`champion.metric` (default the first objective) among the trials whose last epoch meets
`champion.where` (default the spec's constraints).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from raysearch.moasha import minimized, pareto_ranks
from raysearch.spec import Objective
from raysearch.spec.sections import Bound


@dataclass(frozen=True)
class Ended:
    """A trial that ran to the end, as the front reads it."""

    trial_id: str
    last: dict[str, Any]  # its last epoch's report


@dataclass(frozen=True)
class FrontTrial:
    trial_id: str
    values: dict[str, float]  # each objective at its last epoch
    meets: bool  # whether that epoch meets the champion's bounds


def front(ended: Iterable[Ended], objectives: Sequence[Objective],
          bounds: Sequence[Bound]) -> list[FrontTrial]:
    """The non-dominated trials of `ended`, in trial order; a trial without a finite value of
    every objective is on none (Optuna fails a trial told NaN)."""
    ended = [t for t in ended if all(math.isfinite(float(t.last.get(o.metric, math.nan)))
                                     for o in objectives)]
    pairs = [(o.metric, o.mode) for o in objectives]
    ranks = pareto_ranks([minimized(t.last, pairs) for t in ended])
    return [FrontTrial(t.trial_id, {o.metric: float(t.last[o.metric]) for o in objectives},
                       all(b.excess(t.last) <= 0 for b in bounds))
            for t, rank in zip(ended, ranks, strict=True) if rank == 0]


def champion(on_front: Sequence[FrontTrial], by: Objective) -> FrontTrial | None:
    """The best on `by` of the front's trials that meet the bounds; None when none does."""
    eligible = [t for t in on_front if t.meets and math.isfinite(t.values[by.metric])]
    if not eligible:
        return None
    sign = -1 if by.mode == "max" else 1
    return min(eligible, key=lambda t: sign * t.values[by.metric])
