"""Every private Ray API raysearch touches, each with why there is no public way and what a Ray
upgrade would break. pyproject.toml pins ray>=2.60,<2.61; on an upgrade, read each of these
against the new source first (paths are under site-packages/ray)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import ray
from ray import tune


def init(**kwargs: Any) -> Any:
    """`ray.init()`: joins the cluster RAY_ADDRESS names (or the one `ray start` left on this
    machine), else starts a local instance whose servers listen on 127.0.0.1 only.

    Why: Ray binds its GCS, raylet and worker gRPC servers to every interface unless the node's
    IP is a loopback address, and ray.init() and `ray start` both replace 127.0.0.1 by the
    machine's outward address (_private/services.py resolve_ip_for_localhost), so a laptop's
    search would listen on its Wi-Fi, protected by the token alone. Keeping the loopback address
    makes every server bind 127.0.0.1 (checked with `ss -ltn` on 2.60: nothing else listens).
    Breaks if: resolve_ip_for_localhost or canonicalize_bootstrap_address are renamed or
    ray.init stops calling the first (the servers then listen on every interface again;
    tests/test_search.py checks the listening sockets).
    """
    from ray._private import services

    if services.canonicalize_bootstrap_address(None) is not None:
        return ray.init(**kwargs)
    if "RAY_AUTH_MODE" not in os.environ:
        # token authentication, as Ray gives a new local instance, chosen rather than defaulted
        # to: Ray then says nothing about it (its warning on every search is for users who
        # did not choose)
        os.environ["RAY_AUTH_MODE"] = "token"
        reload_auth_config()
    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        return ray.init(_node_ip_address="127.0.0.1", **kwargs)
    finally:
        services.resolve_ip_for_localhost = resolve


def joined_cluster() -> bool:
    """Whether this driver joined a running cluster rather than starting its own.

    Why: Ray has no public way to ask whether ray.init() started the head. Breaks if:
    global_worker.node or Node.head go (then every driver counts as joined: a laptop search
    short of resources waits for an autoscaler instead of being refused).
    """
    node = getattr(ray._private.worker.global_worker, "node", None)  # None under Ray Client
    return node is None or not node.head


def restore_with(tuner: tune.Tuner, tune_config: tune.TuneConfig,
                 run_config: tune.RunConfig) -> tune.Tuner:
    """A restored Tuner that runs with this driver's scheduler and callbacks.

    Why: Tuner.restore takes no scheduler or callbacks and would run with the ones pickled when
    the search began, which hold the dead driver's actor handles. Breaks if: Tuner stops keeping
    a _local_tuner with _tune_config and _run_config (tune/tuner.py, tune/impl/tuner_internal.py).
    """
    tuner._local_tuner._tune_config = tune_config
    tuner._local_tuner._run_config = run_config
    return tuner


class TrialsToRun(tune.search.SearchGenerator):
    """Tune's SearchGenerator around `searcher` that, restored, runs up to `trials` trials in
    all: the spec's count, which `raysearch tune --resume NAME --trials N` may raise for a
    finished search, rather than the count saved with the experiment.

    Why: a restored SearchGenerator takes its trial count from its saved state
    (`set_state`), and Tuner.restore takes no num_samples. Breaks if: SearchGenerator stops
    keeping `_total_samples` and `_finished` (tune/search/search_generator.py), or Tune wraps
    a SearchAlgorithm it is given again (then a restored search runs its saved count).
    """

    def __init__(self, searcher: Any, trials: int) -> None:
        super().__init__(searcher)
        self.trials = trials

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self._total_samples < self.trials:
            self._total_samples, self._finished = self.trials, False


def result(trial_id: str, config: dict[str, Any], history: list[dict[str, Any]],
           path: str) -> tune.Result:
    """A Tune Result for a trial Tune's experiment never held (study.py's unsaved trials), from
    the metrics of each epoch its checkpoint holds, so that it competes as Tune's trials do.

    Why: Result's constructor is documented as private (Result.from_path reads a trial folder
    of Tune's, which such a trial has none of). Breaks if: Result's fields `metrics`,
    `checkpoint`, `error`, `path`, `metrics_dataframe` change, or `config` stops being read
    from metrics (air/result.py).
    """
    import pandas as pd

    metrics = {**history[-1], "trial_id": trial_id, "config": config}
    return tune.Result(metrics=metrics, checkpoint=None, error=None, path=path,
                       metrics_dataframe=pd.DataFrame(history))


def is_start_timeout(error: BaseException) -> bool:
    """Whether a TorchTrainer's fit() failed because its worker group did not start in time.

    Why: Ray Train does not export WorkerGroupStartupTimeoutError; telling it apart turns a pool
    that never started into a message saying what the trial waited for. Breaks if: the class
    moves (train/v2/_internal/exceptions.py): such failures then read as plain errors.
    """
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    return isinstance(getattr(error, "controller_failure", None), WorkerGroupStartupTimeoutError)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_config_by_device() -> Any:
    """A TorchConfig whose backend is NCCL where the workers see CUDA, gloo where they do not.

    Why: TorchConfig picks NCCL from the GPU resource alone, but the fake GPU nodes of
    cluster/local.yaml have the resource and no device; the choice needs the workers, which only
    the backend's on_start reaches. Breaks if: _TorchBackend, its on_start(worker_group,
    backend_config) or TorchConfig.backend_cls change (train/torch/config.py).
    """
    from ray.train.torch import TorchConfig
    from ray.train.torch.config import _TorchBackend

    class BackendByDevice(_TorchBackend):
        def on_start(self, worker_group, backend_config: TorchConfig) -> None:
            if backend_config.backend == BY_DEVICE:  # decided once; a restart keeps the choice
                cuda = worker_group.execute(_cuda_available)
                backend_config.backend = "nccl" if all(cuda) else "gloo"
            super().on_start(worker_group, backend_config)

    @dataclass
    class TorchConfigByDevice(TorchConfig):
        backend: str = BY_DEVICE

        @property
        def backend_cls(self) -> type:
            return BackendByDevice

    return TorchConfigByDevice()


BY_DEVICE = "by-device"  # TorchConfig's backend until the workers have said what they see


def pool_watch(dispatcher: Any, pool: str) -> Any:
    """A Ray Train callback, run in a pool's Train controller, that gives the dispatcher the
    controller's handle (so the driver can abort a pool mid-epoch on Ctrl-C) and the errors of
    lost workers (for the message of a trial that lost them too often).

    Why: a TorchTrainer keeps its controller's handle to itself, and the public UserCallback has
    no hook at the controller's start. Breaks if: ControllerCallback.after_controller_start,
    WorkerGroupCallback.after_worker_group_poll_status (train/v2/_internal/execution/
    callback.py) or the controller's abort() (execution/controller/controller.py) change: Ctrl-C
    then waits for the epoch in progress, and the message lacks the workers' error.
    """
    from ray.train.v2._internal.execution.callback import (
        ControllerCallback,
        WorkerGroupCallback,
    )

    class PoolWatch(ControllerCallback, WorkerGroupCallback):
        def after_controller_start(self, train_run_context) -> None:
            dispatcher.started.remote(pool, ray.get_runtime_context().current_actor)

        def after_worker_group_poll_status(self, worker_group_status) -> None:
            for error in (worker_group_status.errors or {}).values():
                lines = [line for line in str(error).splitlines() if line.strip()]
                dispatcher.worker_error.remote(pool, lines[-1].strip() if lines else repr(error))

    return PoolWatch()


def abort(controller: Any) -> None:
    """Stop a pool's Train run now: its workers, placement group and controller go."""
    controller.abort.remote()


def reload_auth_config() -> None:
    """Make this process's Ray client read RAY_AUTH_MODE again after raysearch set it.

    Why: Ray reads its config once, on import; a Jobs client for a cluster with token auth sends
    the token only in token mode. Breaks if: ray._raylet.Config.initialize goes (a cluster with
    token authentication then refuses `raysearch jobs|logs|stop|tune --address` unless the user
    sets RAY_AUTH_MODE=token themselves).
    """
    from ray._raylet import Config

    Config.initialize("")


def validate_cluster_config(config: dict, fill_defaults: bool = True) -> None:
    """Ray's own checks of a cluster file, as `ray up` runs them (raises what Ray raises).

    Why: the autoscaler exports no validation function. Breaks if: prepare_config or
    validate_config leave autoscaler/_private/util.py (cluster_check then fails on import).
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config) if fill_defaults else config)
