"""One Tune trial: a function trainable that trains over a Ray Train worker group.

Ray Train V2 takes no Trainer inside a Tuner: the trainable starts the TorchTrainer itself and
TuneReportCallback forwards each report of rank 0 to Tune, which is what lets ASHA stop it.
"""

import os
from dataclasses import dataclass
from typing import Any

import ray.train
import torch
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.torch.config import _TorchBackend
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
from ray.tune.integration.ray_train import TuneReportCallback

from raysearch.train_loop import train_loop

# The controller polls its workers at this pace; reports reach Tune no faster. Ray's 2 s default
# cost about 2 s per epoch report in a 2-worker trial (FACTS.md); 0.2 s costs little CPU.
HEALTH_CHECK_INTERVAL_S = "0.2"

# The trial's own actor only waits for its TorchTrainer, so it holds memory but no CPU: on a
# 2-core machine both cores go to the trial's two workers.
TRIAL_RESOURCES = {"cpu": 0, "memory": 256 * 2**20}


class Diverged(Exception):
    """A metric of the trial became NaN or infinite; training it further is pointless."""


class WorkersNeverStarted(Exception):
    """The trial's worker group did not start within `resources.start_timeout_s`."""


# TorchConfig's backend until the workers have started and said whether they have CUDA
BY_DEVICE = "by-device"


class _BackendByDevice(_TorchBackend):
    """NCCL where the workers see CUDA, gloo where they do not. The GPU resource alone does not
    tell: the fake GPU nodes of cluster/local.yaml have the resource and no device."""

    def on_start(self, worker_group, backend_config: TorchConfig) -> None:
        if backend_config.backend == BY_DEVICE:  # decided once; a restart keeps the choice
            cuda = worker_group.execute(torch.cuda.is_available)
            backend_config.backend = "nccl" if all(cuda) else "gloo"
        super().on_start(worker_group, backend_config)


@dataclass
class TorchConfigByDevice(TorchConfig):
    backend: str = BY_DEVICE

    @property
    def backend_cls(self) -> type[_TorchBackend]:
        return _BackendByDevice


class ForwardToTune(TuneReportCallback):
    """Forwards every report to Tune with the number of times the worker group was restarted
    after a failure so far. Runs in the trial's Train controller, which outlives restarts."""

    def __init__(self) -> None:
        super().__init__()
        self.restarts = 0

    def after_exception(self, run_context, worker_exceptions) -> None:
        self.restarts += 1

    def after_report(self, run_context, metrics, checkpoint) -> None:
        super().after_report(run_context, [{**metrics[0], "restarts": self.restarts}],
                             checkpoint)


def run_trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """`config`: the hyperparameters Optuna sampled plus the fixed ones; `setup`: the search's
    model, data, objective, resources and storage (the same for every trial)."""
    res = setup["resources"]
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)
    # Ray Train waits this long for a worker group, then retries; with no retries of the start
    # (controller_failure_limit=0 below) this bounds a trial whose workers never start.
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(res["start_timeout_s"])
    trial_id = tune.get_context().get_trial_id()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"setup": {**setup, "trial_id": trial_id}, "hyper": config},
        torch_config=TorchConfigByDevice(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers"],
            use_gpu=res["gpus_per_worker"] > 0,
            resources_per_worker={"CPU": res["cpus_per_worker"], "GPU": res["gpus_per_worker"]},
        ),
        run_config=ray.train.RunConfig(
            # Stable (no timestamp), so a restored search finds the run again.
            name=f"{setup['name']}-{trial_id}",
            storage_path=setup["train_storage"],
            callbacks=[ForwardToTune()],
            # Ray Train prints two INFO lines per report and worker at its default; the search's
            # own progress view says what matters, and warnings and errors still show
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
            # A failed worker group restarts from the latest checkpoint `max_failures` times;
            # a start that timed out is not retried (Ray's default retries it forever).
            failure_config=ray.train.FailureConfig(max_failures=res["max_failures"],
                                                   controller_failure_limit=0),
            # Keeps the best checkpoint (the one promoted) and the latest (the one resumed).
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=setup["metric"],
                checkpoint_score_order=setup["mode"],
            ),
        ),
    )
    try:
        result = trainer.fit()
    except ray.train.ControllerError as e:
        # Ray Train's own timeout error is not exported; telling it apart is what turns a
        # worker group that never started into a message saying what the trial waited for.
        if isinstance(e.controller_failure, WorkerGroupStartupTimeoutError):
            free = ray.available_resources()
            raise WorkersNeverStarted(
                f"{res['workers']} workers of {res['cpus_per_worker']:g} CPU and "
                f"{res['gpus_per_worker']:g} GPU each did not start within "
                f"{res['start_timeout_s']:g} s (resources.start_timeout_s); the cluster has "
                f"{free.get('CPU', 0):g} CPU and {free.get('GPU', 0):g} GPU free") from None
        raise
    # The train loop returns why it stopped early on its own: a metric that is not finite.
    if result.return_value:
        raise Diverged(result.return_value)


def trainable(setup: dict[str, Any]):
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), TRIAL_RESOURCES)
