"""ASHA whose decisions reach the trial's workers before their next epoch.

Tune acts on a STOP by killing the trial's actor, but a TorchTrainer's workers do not wait for
that: with short epochs a trial that ASHA stopped had already trained further, and often to the
end (FACTS.md). So the scheduler posts each decision to a small actor, and after a report at one
of ASHA's rungs (the only iterations at which ASHA can stop a trial) the workers wait for it.
"""

import asyncio
import math
from collections import defaultdict

import ray
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

WAIT_S = 60.0  # past this, a worker that heard nothing trains on rather than hang


@ray.remote(num_cpus=0)
class Decisions:
    def __init__(self) -> None:
        self.stop: dict[tuple[str, int], bool] = {}
        self.posted: defaultdict[tuple[str, int], asyncio.Event] = defaultdict(asyncio.Event)

    async def post(self, trial_id: str, iteration: int, stop: bool) -> None:
        self.stop[trial_id, iteration] = stop
        self.posted[trial_id, iteration].set()

    async def wait(self, trial_id: str, iteration: int, timeout: float = WAIT_S) -> bool:
        """Whether the trial is to stop after `iteration`; False if no decision came in time."""
        try:
            await asyncio.wait_for(self.posted[trial_id, iteration].wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.stop[trial_id, iteration]


class PostingASHA(ASHAScheduler):
    """Ray's ASHA, unchanged, that also posts every decision to a `Decisions` actor."""

    def __init__(self, decisions: "ray.actor.ActorHandle", **kwargs) -> None:
        super().__init__(**kwargs)
        self.decisions = decisions
        # Tune marks every stopped trial done, at max_t too; this tells the two apart.
        self.stopped_early: set[str] = set()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if self._time_attr in result:
            iteration, stop = int(result[self._time_attr]), decision == TrialScheduler.STOP
            self.decisions.post.remote(trial.trial_id, iteration, stop)
            if stop and iteration < self._max_t:
                self.stopped_early.add(trial.trial_id)
        return decision


def rungs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The iterations after which ASHA may stop a trial, as Ray's single bracket places them
    (grace_period * reduction_factor^k), below max_t."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return sorted({math.ceil(grace_period * reduction_factor**k) for k in range(count)} - {max_t})
