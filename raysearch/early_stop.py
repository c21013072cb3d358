"""ASHA whose decisions reach the trial's pool before its next epoch.

Tune acts on a STOP by ending the trial's actor, but the pool training the trial does not wait
for that: with short epochs a stopped trial would already have trained further (FACTS.md). So
the scheduler posts each decision to the search's dispatcher, and after a report at one of
ASHA's rungs (the only iterations at which ASHA can stop a trial) the pool's ranks wait for it.
"""

import math
from collections.abc import Sequence
from typing import Any

import ray
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from raysearch.job import FAMILY
from raysearch.moasha import MOASHA


class PostingASHA(FIFOScheduler):
    """Ray's ASHA, unchanged (or with several objectives MOASHA, moasha.py), one per model
    family of the search, that also posts every decision to a `Dispatcher`.

    A search across families (params.model) compares a trial at a rung only with trials of its
    own family: every family's rungs are at the same iterations, each the same fraction of
    max_t (of an ESN's training data absorbed, of a gradient-trained family's epochs), but the
    families' learning curves differ in shape (an ESN's readout, solved exactly on what it has
    seen, is near its final score at the first rung; an LSTM after one epoch of ten is far from
    its own), so a rung that pooled them would stop trials for their family's curve, not for
    their promise. Which family is better is the sampler's to learn, from trials' final values.
    """

    def __init__(self, dispatcher: "ray.actor.ActorHandle", time_attr: str, max_t: int,
                 stopped_early: set[str], grace_period: int, reduction_factor: float,
                 objectives: Sequence[tuple[str, str]] = ()) -> None:
        """`objectives`: (metric, mode) of each objective when there are several."""
        super().__init__()
        self.dispatcher, self.time_attr, self.max_t = dispatcher, time_attr, max_t
        self.grace_period, self.reduction_factor = grace_period, reduction_factor
        self.objectives = list(objectives)
        self.mode: str | None = None
        self.by_family: dict[str, TrialScheduler] = {}
        # Tune marks every stopped trial done, at max_t too; this tells the two apart (the
        # search's one set: a trial past scheduler.max_trial_s joins it too, tracking.py).
        self.stopped_early = stopped_early

    def __getstate__(self) -> dict:
        # Tune pickles its scheduler into the experiment's state, and a resumed search unpickles
        # it before putting its own in its place; a dead driver's actor handle would not load.
        return {**self.__dict__, "dispatcher": None}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        self.mode = mode
        return super().set_search_properties(metric, mode, **spec)

    def _of(self, trial: Trial) -> TrialScheduler:
        family = str(trial.config.get(FAMILY, ""))
        if family not in self.by_family:
            if len(self.objectives) > 1:
                self.by_family[family] = MOASHA(
                    self.objectives, self.time_attr, self.max_t,
                    rungs(self.max_t, self.grace_period, self.reduction_factor),
                    self.reduction_factor)
            else:
                self.by_family[family] = ASHAScheduler(
                    time_attr=self.time_attr, max_t=self.max_t, metric=self._metric,
                    mode=self.mode, grace_period=self.grace_period,
                    reduction_factor=self.reduction_factor)
        return self.by_family[family]

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        decision = self._of(trial).on_trial_result(tune_controller, trial, result)
        if self.time_attr in result:
            iteration, stop = int(result[self.time_attr]), decision == TrialScheduler.STOP
            self.dispatcher.post.remote(trial.trial_id, iteration, stop)
            if stop and iteration < self.max_t:
                self.stopped_early.add(trial.trial_id)
        return decision

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{family or 'ASHA'}: {asha.debug_string()}"
                         for family, asha in self.by_family.items())


def rungs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The iterations after which ASHA may stop a trial, as Ray's single bracket places them
    (grace_period * reduction_factor^k), below max_t."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return sorted({math.ceil(grace_period * reduction_factor**k) for k in range(count)} - {max_t})
