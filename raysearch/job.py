"""What travels between the driver, Tune's trials and the pools' workers: the search's setup,
each trial's job, what a trial hears of it, and the states a trial ends in.

No torch here: the dispatcher and the Tune trial actors import this module and nothing heavier.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any

import ray


class TrialState(str, Enum):
    """How a trial ended, as its MLflow run's `raysearch.state` tag says."""

    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the search was stopped (Ctrl-C) while it ran
    DISCARDED = "discarded"  # started just before a kill, before Tune saved that it exists

    def __str__(self) -> str:
        return self.value


# a trial config's key naming its model family, in a search across families (params.model)
FAMILY = "model"
ENDED = (TrialState.COMPLETED, TrialState.STOPPED_EARLY, TrialState.FAILED)
# a result's key, true in the result of the epoch after which a trial's pool stopped it for
# running past scheduler.max_trial_s (dispatch.py): stopped early, as by the scheduler
TIME_LIMITED = "time_limited"


@dataclass(frozen=True)
class SearchSetup:
    """What every trial of a search shares; the pools get it once, when they start."""

    name: str
    model: str | None  # every trial's family; None when the family is searched (its config's)
    data_ref: ray.ObjectRef  # the data set's (splits, DataInfo), put once for all trials
    max_t: int
    metric: str
    mode: str
    train_storage: str  # <storage>/<name>/train: each trial's checkpoints, each pool's Train run
    rungs: tuple[int, ...]  # epochs after which the scheduler may stop a trial
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_failures: int  # times a trial may lose its workers and go on from its checkpoint
    start_timeout_s: float
    reuse_workers: bool

    def trial_dir(self, trial_id: str) -> str:
        """Where the trial's checkpoints go (the same folder as a cold trial's Train run)."""
        return f"{self.train_storage}/{self.name}-{trial_id}"

    def shape(self) -> str:
        return (f"{self.workers} workers of {self.cpus_per_worker:g} CPU and "
                f"{self.gpus_per_worker:g} GPU each")


@dataclass(frozen=True)
class Unsaved:
    """A trial that ended in the search's study after Tune last saved its experiment (it ran
    and ended within the second before a driver died): the resumed Tune never heard of it, yet
    it counts towards the search's trials and may be the champion. It reads as a Tune trial
    where the MLflow callback writes its run (`trial_id`, `config`, its name)."""

    trial_id: str
    state: TrialState  # COMPLETED, or STOPPED_EARLY where the scheduler stopped it
    config: dict[str, Any] | None  # its params and fixed values; None if the study lacks its id

    def __str__(self) -> str:
        return self.trial_id


@dataclass
class Job:
    """One trial as a pool runs it."""

    trial_id: str
    config: dict[str, Any]  # the hyperparameters Optuna sampled plus the fixed ones
    seq: int = -1  # its place among the jobs of the pool that runs it
    restarts: int = 0  # times its pool's workers were lost while it ran


class End(str, Enum):
    """How a job ended, as its trial hears it."""

    DONE = "done"  # its last epoch, or the scheduler stopped it
    DIVERGED = "diverged"  # a metric became NaN or infinite
    FAILED = "failed"  # it raised, or lost its workers more often than max_failures
    NEVER_STARTED = "never_started"  # no pool's workers started within start_timeout_s
    CANCELLED = "cancelled"  # the search stopped


class Verdict(str, Enum):
    """What every rank of a pool hears after an epoch of its trial."""

    GO = "go"
    STOP = "stop"  # the scheduler stopped it, or Tune ended it
    FAIL = "fail"  # another rank raised: this one fails the trial too


@dataclass
class Event:
    """What a trial hears from its pool: a result, or the end."""

    result: dict[str, Any] | None = None
    end: End | None = None
    why: str = ""  # DIVERGED, FAILED, NEVER_STARTED: the reason, or the worker's traceback
