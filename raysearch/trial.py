"""One Tune trial: a function trainable that hands its config to the search's pools and relays
what its pool reports to Tune, so ASHA, OptunaSearch, the MLflow callback and `--resume` see
each epoch of the trial as a Tune result.

It trains nothing itself and holds no CPU: the pools' workers have the cores.
"""

import sys
from typing import Any

import ray
from ray import tune

from raysearch.job import End, Job

# The trial's own actor only waits for its pool, so it holds memory but no CPU: a trial
# holding even 0.01 CPU kept a 2 x 1-CPU pool from starting on 2 cores (FACTS.md).
TRIAL_RESOURCES = {"cpu": 0, "memory": 256 * 2**20}


class Diverged(Exception):
    """A metric of the trial became NaN or infinite; training it further is pointless."""


class WorkersNeverStarted(Exception):
    """No worker group for the trial started within `resources.start_timeout_s`."""


class TrialFailed(Exception):
    """The trial raised in its workers (the message ends with their traceback), or lost its
    workers more often than `resources.max_failures`."""


RAISES = {End.DIVERGED: Diverged, End.NEVER_STARTED: WorkersNeverStarted,
          End.FAILED: TrialFailed}


def quiet_exit(unraisable: Any, default=sys.unraisablehook) -> None:
    """Python's hook for an exception nothing can catch, in a trial's actor. When Tune ends the
    actor, Ray's SIGTERM handler raises SystemExit wherever the process is; inside a finalizer
    (a weakref callback) Python cannot raise it and prints it as a traceback, which Ray relays
    into the search's output. The exit is the one Ray asked for: only that one is not printed."""
    if not isinstance(unraisable.exc_value, SystemExit):
        default(unraisable)


def run_trial(config: dict[str, Any], dispatcher: "ray.actor.ActorHandle") -> None:
    """`config`: the hyperparameters Optuna sampled plus the fixed ones."""
    sys.unraisablehook = quiet_exit
    trial_id = tune.get_context().get_trial_id()
    ray.get(dispatcher.submit.remote(Job(trial_id, config)))
    # A pool whose workers were lost goes on from the trial's latest checkpoint and first
    # replays the epochs that checkpoint holds; Tune has them already, unless this driver is a
    # resumed one that never heard of them.
    relayed: set[int] = set()
    while True:
        for event in ray.get(dispatcher.events.remote(trial_id)):
            if event.result is not None:
                if event.result["epoch"] not in relayed:
                    relayed.add(event.result["epoch"])
                    tune.report(event.result)
            elif event.end in RAISES:
                raise RAISES[event.end](event.why)
            else:  # DONE, or CANCELLED when the search stops
                return


def trainable(dispatcher: "ray.actor.ActorHandle"):
    return tune.with_resources(tune.with_parameters(run_trial, dispatcher=dispatcher),
                               TRIAL_RESOURCES)
