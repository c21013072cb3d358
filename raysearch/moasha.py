"""Asynchronous successive halving on several objectives (MOASHA: Schmucker et al. 2021, as in
Syne Tune), for a search whose `objective` is a list.

ASHA compares one number at each rung; with several objectives there is no single order, so at
a rung the trials recorded there are ranked by non-dominated sorting (the Pareto front of them
first, then the front of the rest, and so on), and a trial goes on when fewer than
ceil(n / reduction_factor) of the n trials recorded there before it are on a better front than
its own. Trials on one front are not ranked against each other (no crowding-distance tie
break): a trial that no earlier one beats on every objective is never stopped for it, which
keeps the whole front of trade-offs, the point of the search, alive to the next rung.
"""

import math
from collections.abc import Sequence
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

Point = tuple[float, ...]  # a trial's objectives at a rung, each to be minimized


def minimized(values: dict[str, Any], objectives: Sequence[tuple[str, str]]) -> Point:
    """The objectives (metric, mode) of `values` as numbers to minimize; a missing or NaN one
    as the worst."""
    out = []
    for metric, mode in objectives:
        value = float(values.get(metric, math.nan))
        value = -value if mode == "max" else value
        out.append(math.inf if math.isnan(value) else value)
    return tuple(out)


def dominates(a: Point, b: Point) -> bool:
    pairs = list(zip(a, b, strict=True))
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """Each point's front: 0 for the non-dominated ones, 1 for those of the rest, ..."""
    ranks = [-1] * len(points)
    left, rank = set(range(len(points))), 0
    while left:
        front = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in front:
            ranks[i] = rank
        left, rank = left - front, rank + 1
    return ranks


class MOASHA(FIFOScheduler):
    """`objectives`: (metric, mode) pairs; `milestones`: the iterations (of `time_attr`) at
    which a trial is judged, below `max_t`, where every trial stops."""

    def __init__(self, objectives: Sequence[tuple[str, str]], time_attr: str, max_t: int,
                 milestones: Sequence[int], reduction_factor: float) -> None:
        super().__init__()
        self.objectives, self.time_attr, self.max_t = list(objectives), time_attr, max_t
        self.reduction_factor = reduction_factor
        self.recorded: dict[int, dict[str, Point]] = {m: {} for m in milestones}

    def point(self, result: dict[str, Any]) -> Point | None:
        if any(metric not in result for metric, _ in self.objectives):
            return None
        return minimized(result, self.objectives)

    def judge(self, trial_id: str, iteration: int, point: Point) -> str:
        """Records the trial at the highest milestone it has reached and not been judged at,
        and decides there."""
        for milestone in sorted(self.recorded, reverse=True):
            recorded = self.recorded[milestone]
            if iteration < milestone or trial_id in recorded:
                continue
            before = list(recorded.values())
            recorded[trial_id] = point
            if before:
                *others, own = pareto_ranks([*before, point])
                ahead = sum(rank < own for rank in others)
                if ahead >= math.ceil(len(before) / self.reduction_factor):
                    return TrialScheduler.STOP
            break
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        point = self.point(result)
        if self.time_attr not in result or point is None:
            return TrialScheduler.CONTINUE
        if result[self.time_attr] >= self.max_t:
            return TrialScheduler.STOP
        return self.judge(trial.trial_id, int(result[self.time_attr]), point)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        point = self.point(result)
        if self.time_attr in result and point is not None:
            self.judge(trial.trial_id, int(result[self.time_attr]), point)

    def debug_string(self) -> str:
        return "MOASHA: " + ", ".join(f"{len(r)} trials at {m}"
                                      for m, r in sorted(self.recorded.items()))
