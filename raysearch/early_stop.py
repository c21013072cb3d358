"""ASHA whose decisions reach the trial's pool before its next epoch.

Tune acts on a STOP by ending the trial's actor, but the pool training the trial does not wait
for that: with short epochs a stopped trial would already have trained further (FACTS.md). So
the scheduler posts each decision to the search's dispatcher, and after a report at one of
ASHA's rungs (the only iterations at which ASHA can stop a trial) the pool's ranks wait for it.
"""

import math

import ray
from ray.tune.schedulers import ASHAScheduler, TrialScheduler


class PostingASHA(ASHAScheduler):
    """Ray's ASHA, unchanged, that also posts every decision to a `Dispatcher`."""

    def __init__(self, dispatcher: "ray.actor.ActorHandle", time_attr: str, max_t: int,
                 stopped_early: set[str], **kwargs) -> None:
        super().__init__(time_attr=time_attr, max_t=max_t, **kwargs)
        self.dispatcher, self.time_attr, self.max_t = dispatcher, time_attr, max_t
        # Tune marks every stopped trial done, at max_t too; this tells the two apart (the
        # search's one set: a trial past scheduler.max_trial_s joins it too, tracking.py).
        self.stopped_early = stopped_early

    def __getstate__(self) -> dict:
        # Tune pickles its scheduler into the experiment's state, and a resumed search unpickles
        # it before putting its own in its place; a dead driver's actor handle would not load.
        return {**self.__dict__, "dispatcher": None}

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if self.time_attr in result:
            iteration, stop = int(result[self.time_attr]), decision == TrialScheduler.STOP
            self.dispatcher.post.remote(trial.trial_id, iteration, stop)
            if stop and iteration < self.max_t:
                self.stopped_early.add(trial.trial_id)
        return decision


def rungs(max_t: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The iterations after which ASHA may stop a trial, as Ray's single bracket places them
    (grace_period * reduction_factor^k), below max_t."""
    count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    return sorted({math.ceil(grace_period * reduction_factor**k) for k in range(count)} - {max_t})
