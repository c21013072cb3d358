"""The TorchTrainers a search keeps: one per trial slot, each running trial after trial for the
whole search (raysearch/train_loop.py), or with `resources.reuse_workers: false` a fresh one
per trial. The driver owns them, each `fit()` in a thread of its own, and the dispatcher
(raysearch/dispatch.py) hands them their jobs; a trial that fails on every rank ends there and
the pool takes the next one (raysearch/train_loop.py).

A pool whose Train run fails (its workers never started within `resources.start_timeout_s`, or
it gave up) fails the trial it ran or the one waiting for it, and starts again when the next
trial needs it: on an autoscaling cluster every trial waits for capacity as long as that.
"""

import os
import threading
import time
from typing import Any

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer

from raysearch import _ray
from raysearch.job import End, SearchSetup
from raysearch.storage import first_line

# Ray Train's controller polls its workers at this pace: how soon a lost worker is noticed and
# a finished pool returns. Reports do not go through it (they go to the dispatcher), so Ray's
# 2 s default would only slow a restart; each poll costs the controller a little CPU.
HEALTH_CHECK_INTERVAL_S = "0.5"
FINISH_S = 120.0  # a search that ended waits this long for its pools' last epochs
ABORT_AFTER_S = 2.0  # an interrupted one, this long before it aborts them mid-epoch


def pool_loop(config: dict[str, Any]) -> None:
    # The controller unpickles this function: it needs none of the training code.
    from raysearch.train_loop import serve

    serve(**config)


class EndedTrials(tune.Callback):
    """A trial Tune ends (it stopped it, or its actor died) stops in its pool too."""

    def __init__(self, dispatcher: "ray.actor.ActorHandle") -> None:
        self.dispatcher = dispatcher

    def __getstate__(self) -> dict:
        # pickled into the experiment's state with the other callbacks (see PostingASHA)
        return {**self.__dict__, "dispatcher": None}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.dispatcher.cancel.remote(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.dispatcher.cancel.remote(trial.trial_id)


class Pools:
    def __init__(self, setup: SearchSetup, dispatcher: "ray.actor.ActorHandle", slots: int,
                 trials: int) -> None:
        self.setup, self.dispatcher, self.slots = setup, dispatcher, slots
        # Ray Train counts a run's restarts over its whole life: room for every trial a pool
        # may run to lose its workers max_failures times, and once more for a trial that
        # raised on some ranks only
        self.restarts = (trials if setup.reuse_workers else 1) * (setup.max_failures + 1)
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def start(self) -> None:
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
        # Ray Train waits this long for a worker group; with no retries of the start
        # (controller_failure_limit=0 below) this bounds a pool whose workers never start.
        os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(self.setup.start_timeout_s)
        # Ray Train's preemption watcher is an observability actor for spot nodes, started with
        # each worker group; its creation logs a core_worker.cc error into every search
        # ("constructor arguments in the object store and max_restarts > 0"). A pool's lost
        # workers are handled by its restarts either way; =1 turns it back on.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        for slot in range(self.slots):
            thread = threading.Thread(target=self.run_slot, args=(slot,), daemon=True,
                                      name=f"{self.setup.name}-pool-{slot}")
            thread.start()
            self.threads.append(thread)

    def trainer(self, slot: str, name: str) -> TorchTrainer:
        s = self.setup
        return TorchTrainer(
            pool_loop,
            train_loop_config={"setup": s, "dispatcher": self.dispatcher, "pool": slot,
                               "one_job": not s.reuse_workers},
            torch_config=_ray.torch_config_by_device(),
            scaling_config=ray.train.ScalingConfig(
                num_workers=s.workers, use_gpu=s.gpus_per_worker > 0,
                resources_per_worker={"CPU": s.cpus_per_worker, "GPU": s.gpus_per_worker}),
            run_config=ray.train.RunConfig(
                name=name, storage_path=s.train_storage,
                callbacks=[_ray.pool_watch(self.dispatcher, slot)],
                # Ray Train prints INFO lines per worker group start; the search's own view
                # says what matters, and warnings and errors still show
                logging_config=ray.train.LoggingConfig(log_level="WARNING"),
                # a lost worker restarts the group, whose trial goes on from its checkpoint; a
                # start that timed out is not retried (Ray's default retries it forever)
                failure_config=ray.train.FailureConfig(max_failures=self.restarts,
                                                       controller_failure_limit=0)))

    def run_slot(self, slot: int) -> None:
        """A warm pool starts with the search and serves until it ends; a cold one (and a warm
        one whose Train run failed) starts when a trial waits for it."""
        key, warm = str(slot), self.setup.reuse_workers
        name = f"{self.setup.name}-pool-{slot}"
        waited = not warm
        while not self.stopping.is_set():
            if waited:
                trial_id = ray.get(self.dispatcher.claim.remote(key))
                if trial_id is None:
                    return
                if not warm:  # named as a trial's own TorchTrainer always was
                    name = f"{self.setup.name}-{trial_id}"
            waited = True
            try:
                self.trainer(key, name).fit()
            except Exception as e:  # noqa: BLE001  the pool's run failed; its trial with it
                if self.stopping.is_set():
                    return
                if _ray.is_start_timeout(e):
                    end, why = End.NEVER_STARTED, self.never_started()
                else:
                    end, why = End.FAILED, f"the trial's worker group failed: {first_line(e)}"
                ray.get(self.dispatcher.pool_failed.remote(key, end, why))
                continue
            if warm:
                return

    def never_started(self) -> str:
        free = ray.available_resources()
        return (f"{self.setup.shape()} did not start within {self.setup.start_timeout_s:g} s "
                f"(resources.start_timeout_s); the cluster has {free.get('CPU', 0):g} CPU and "
                f"{free.get('GPU', 0):g} GPU free")

    def stop(self, now: bool) -> None:
        """End every pool: after the epoch each is in (within FINISH_S), or with `now` (an
        interrupted search) within ABORT_AFTER_S, aborting the ones still training. Their
        workers and placement groups go with them. Once only: later calls do nothing."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        ray.get(self.dispatcher.close.remote())
        self.join(ABORT_AFTER_S if now else FINISH_S)
        if any(t.is_alive() for t in self.threads):
            for controller in ray.get(self.dispatcher.controllers.remote()):
                _ray.abort(controller)
            self.join(60)
        ray.kill(self.dispatcher)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
