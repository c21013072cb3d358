"""Trials that go wrong on a real Ray cluster: a loss that turns NaN, a trial that raises, a
worker killed mid-trial, workers that can never start. The search says why, and goes on."""

import os
import signal
from pathlib import Path

import optuna
import ray
from helpers import (
    assert_nothing_left_running,
    child_runs,
    cli,
    own_tracebacks,
    train_runs_started,
    trial_runs,
)
from mlflow import MlflowClient
from ray import tune
from ray.util.state import list_actors

from raysearch import search, tracking
from raysearch.spec import load_spec


def optuna_states(storage: Path, name: str) -> list[str]:
    """What Optuna was told of each trial: the search's study, where it keeps it."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage / name}/optuna.db")
    return sorted(t.state.name for t in study.trials)


DIVERGING = """\
    name: diverging
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 1, sampler: random, seed: 0}
    scheduler: {type: none, max_t: 3}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      channels: {type: categorical, choices: [4, 8]}
    fixed: {lr: 1.0e+30, optimizer: sgd}
"""


def test_a_search_whose_trials_all_diverge_exits_1_with_the_first_reason(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    storage = tmp_path / "results"
    run = cli("tune", "--space", str(write_spec(DIVERGING)), "--tracking-uri", tracking_uri,
              "--storage", str(storage),
              env={"RAY_ADDRESS": ray_cluster.address_info["address"]})

    assert run.returncode == 1, run.stdout + run.stderr
    assert own_tracebacks(run.stderr) == []
    assert "error: every trial failed; the first, trial" in run.stderr
    assert "Diverged: train_loss is nan at epoch 1" in run.stderr
    assert "trials: 0 completed, 0 stopped early, 1 failed" in run.stdout
    (trial,) = trial_runs(MlflowClient(tracking_uri), "diverging")
    assert (f"failed trial {trial.data.tags[tracking.TRIAL_TAG]}: Diverged: train_loss is nan "
            "at epoch 1") in run.stdout

    client = MlflowClient(tracking_uri)
    runs = trial_runs(client, "diverging")
    assert len(runs) == 1
    for r in runs:
        # stopped at the first epoch whose loss was not finite; nothing of it logged as a metric
        assert r.info.status == "FAILED"
        assert r.data.tags[tracking.STATE_TAG] == "failed"
        assert r.data.tags[tracking.ERROR_TAG] == "Diverged: train_loss is nan at epoch 1"
        assert client.get_metric_history(r.info.run_id, "val_accuracy") == []
        assert [a.path for a in client.list_artifacts(r.info.run_id)] == ["error.txt"]
    assert optuna_states(storage, "diverging") == ["FAIL"]
    assert client.search_registered_models("name = 'diverging'") == []
    assert_nothing_left_running()


DIVERGING_THEN_NOT = """\
    name: diverging-then-not
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 3, sampler: random, seed: 0, max_concurrent: 1}
    scheduler: {type: none, max_t: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: categorical, choices: [1.0e+30, 0.01]}
    fixed: {channels: 4, optimizer: sgd}
"""


def test_a_diverging_trial_fails_alone_and_the_pool_runs_the_next(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    """Seed 0 samples lr 0.01, then 1e30, then 0.01: the middle trial diverges at its first
    epoch, and the one after it trains both epochs on the same warm pool."""
    pools_before = train_runs_started()
    outcome = search.run(load_spec(write_spec(DIVERGING_THEN_NOT)), tracking_uri,
                         str(tmp_path / "results"))
    assert train_runs_started() - pools_before == 1
    client = MlflowClient(tracking_uri)
    runs = sorted(child_runs(client, outcome), key=lambda r: r.info.start_time)
    assert [r.data.params["lr"] for r in runs] == ["0.01", "1e+30", "0.01"]
    assert [r.data.tags[tracking.STATE_TAG] for r in runs] == ["completed", "failed",
                                                                "completed"]
    assert runs[1].data.tags[tracking.ERROR_TAG] == "Diverged: train_loss is nan at epoch 1"
    for r in (runs[0], runs[2]):
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_accuracy")] == [
            1, 2]
    assert_nothing_left_running()


RAISING = """\
    name: raising
    model: esn
    data: {name: mackey_glass, length: 500}
    objective: {metric: val_nrmse, mode: min}
    search: {trials: 2, sampler: random, seed: 0}
    scheduler: {type: none, max_t: 2}
    resources: {workers: 2, cpus_per_worker: 1, max_failures: 0}
    params:
      washout: {type: categorical, choices: [20, 400]}
    fixed: {units: 30}
"""


def test_a_trial_that_raises_fails_with_its_last_line_and_the_search_goes_on(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    """A washout longer than the validation series (100 steps of 500) is a ValueError in the
    trial's workers; the trials with a shorter washout still run and a champion is chosen."""
    storage = tmp_path / "results"
    outcome = search.run(load_spec(write_spec(RAISING)), tracking_uri, str(storage))

    client = MlflowClient(tracking_uri)
    runs = trial_runs(client, "raising")
    failed = [r for r in runs if r.data.tags[tracking.STATE_TAG] == "failed"]
    completed = [r for r in runs if r.data.tags[tracking.STATE_TAG] == "completed"]
    assert len(failed) + len(completed) == 2 and failed and completed  # seed 0 samples both
    reason = ("ValueError: washout (400) leaves no step of the validation series (100 steps) "
              "to score")
    for r in failed:
        assert r.data.params["washout"] == "400"
        assert r.data.tags[tracking.ERROR_TAG] == reason
        assert outcome.errors[r.data.tags[tracking.TRIAL_TAG]] == reason
    assert all(r.data.params["washout"] == "20" for r in completed)
    assert optuna_states(storage, "raising") == sorted(
        ["FAIL"] * len(failed) + ["COMPLETE"] * len(completed))
    assert client.get_model_version_by_alias("raising", "champion")
    assert_nothing_left_running()


SLOW = """\
    name: {name}
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: {trials}}}
    scheduler: {{type: none, max_t: {epochs}}}
    resources: {{workers: 2, cpus_per_worker: 1, start_timeout_s: 5}}
    params:
      lr: {{type: float, low: 0.001, high: 0.01}}
    fixed: {{channels: 16, batch_size: 32, optimizer: adam}}
"""


class KillAWorker(tune.Callback):
    """At a trial's first report, SIGKILLs one of its Ray Train workers, found through Ray's
    state API, as a lost node would."""

    def __init__(self) -> None:
        self.killed: list[int] = []

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.killed:
            return
        workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"),
                                       ("state", "=", "ALIVE")])
        os.kill(workers[-1].pid, signal.SIGKILL)
        self.killed.append(workers[-1].pid)


def test_a_killed_worker_restarts_the_pool_and_its_trial_goes_on_from_its_checkpoint(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    spec = load_spec(write_spec(SLOW.format(name="lost-worker", trials=2, epochs=6)))
    killer = KillAWorker()
    outcome = search.run(spec, tracking_uri, str(tmp_path / "results"), callbacks=(killer,))

    assert len(killer.killed) == 1
    assert outcome.count("completed") == 2
    client = MlflowClient(tracking_uri)
    first, second = sorted(child_runs(client, outcome), key=lambda r: r.info.start_time)
    assert first.data.tags[tracking.RESTARTS_TAG] == "1"
    assert tracking.RESTARTS_TAG not in second.data.tags  # the next trial: a whole new group
    for run in (first, second):
        # every epoch reported once, none skipped: the new group went on from the checkpoint
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == [1, 2, 3, 4, 5, 6]
    assert_nothing_left_running()


@ray.remote(num_cpus=1)
class HoldACpu:
    def ready(self) -> bool:
        return True


def test_a_trial_whose_workers_never_start_fails_after_the_start_timeout(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    """The cluster has the 2 CPUs a trial needs, so the search starts, but one is held by
    another job: the trial's workers cannot start, and it says so after start_timeout_s."""
    holder = HoldACpu.remote()
    ray.get(holder.ready.remote())
    try:
        spec = load_spec(write_spec(SLOW.format(name="never-starts", trials=1, epochs=1)))
        outcome = search.run(spec, tracking_uri, str(tmp_path / "results"))
    finally:
        ray.kill(holder)
    assert outcome.count("failed") == 1
    (reason,) = outcome.errors.values()
    assert reason.startswith("WorkersNeverStarted: 2 workers of 1 CPU and 0 GPU each did not "
                             "start within 5 s (resources.start_timeout_s)")
    assert_nothing_left_running()
