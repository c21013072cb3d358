"""End to end on a real local Ray cluster: Optuna + ASHA over 2-worker gloo TorchTrainer trials,
a real SQLite MLflow store, the registry and `raysearch pull`."""


import mlflow
import numpy as np
import optuna
import pytest
import requests
import torch
from helpers import (
    assert_nothing_left_running,
    child_runs,
    cli,
    cli_here,
    diagnostics,
    mlflow_models_serve,
    optuna_dashboard,
    own_tracebacks,
    train_runs_started,
)
from mlflow import MlflowClient

import raysearch
from raysearch import checkpoint, search, tracking
from raysearch.costs import COST_METRICS
from raysearch.data import DATASETS
from raysearch.early_stop import rungs
from raysearch.spec import load_spec, resolve_space

DIGITS = """\
    name: digits-e2e
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 4, sampler: tpe, seed: 0, max_concurrent: 1}
    scheduler: {type: asha, max_t: 4, grace_period: 1, reduction_factor: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr:        {type: float, low: 1e-4, high: 3e-1, log: true}
      optimizer: {type: categorical, choices: [sgd, adam]}
      momentum:  {type: float, low: 0.5, high: 0.99, when: {optimizer: sgd}}
    fixed: {channels: 8, batch_size: 64}
"""

def test_digits_search_from_the_command_line(ray_cluster, tmp_path, tracking_uri, write_spec):
    space = write_spec(DIGITS)
    env = {"RAY_ADDRESS": ray_cluster.address_info["address"]}
    pools_before = train_runs_started()
    run = cli("tune", "--space", str(space), "--tracking-uri", tracking_uri,
              "--storage", str(tmp_path / "results"), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "now champion" in run.stdout
    assert own_tracebacks(run.stderr) == []
    # all four trials ran on the search's one warm pool: a trial ASHA stopped freed it
    assert train_runs_started() - pools_before == 1

    client = MlflowClient(tracking_uri)
    parent = client.search_runs([client.get_experiment_by_name("digits-e2e").experiment_id],
                                "tags.`raysearch.role` = 'search'")[0]
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4
    states = [c.data.tags[tracking.STATE_TAG] for c in children]
    assert "stopped_early" in states and "completed" in states
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == list(range(1, len(history) + 1))
        if child.data.tags[tracking.STATE_TAG] == "stopped_early":
            # ASHA stops only at a rung, and its decision reaches the workers before they
            # train another epoch
            assert len(history) in rungs(max_t=4, grace_period=1, reduction_factor=2)
        else:
            assert len(history) == 4
        # a param whose `when:` is false is neither sampled nor logged
        assert ("momentum" in child.data.params) == (child.data.params["optimizer"] == "sgd")
        # what its model costs, beside its metric
        costs = {name: child.data.metrics[name] for name in COST_METRICS}
        assert all(value > 0 for name, value in costs.items() if name != "peak_memory_mb")
        assert costs["params_trainable"] == costs["params_total"]  # a CNN trains every weight
        # peak_memory_mb is RSS growth on a CPU: a warm pool's process may reuse memory, so 0
        # is a fair reading here (test_costs.py measures it)
    # the search's Optuna study, where the command said: each trial with what its run
    # logged, a trial ASHA stopped PRUNED as a pruner's would be; optuna-dashboard serves it
    url = f"sqlite:///{tmp_path / 'results' / 'digits-e2e' / 'optuna.db'}"
    assert f"Optuna dashboard: optuna-dashboard {url}" in run.stdout
    study = optuna.load_study(study_name="digits-e2e", storage=url)
    assert len(study.trials) == 4
    for child in children:
        (trial,) = [t for t in study.trials
                    if t.params["lr"] == pytest.approx(float(child.data.params["lr"]))]
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert trial.intermediate_values == {m.step: m.value for m in history}
        if child.data.tags[tracking.STATE_TAG] == "stopped_early":
            assert trial.state == optuna.trial.TrialState.PRUNED
        else:
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == max(history, key=lambda m: m.step).value
    with optuna_dashboard(url) as dashboard:
        (listed,) = requests.get(f"{dashboard}/api/studies", timeout=30).json()["study_summaries"]
        assert listed["study_name"] == "digits-e2e"
        shown = requests.get(f"{dashboard}/api/studies/{listed['study_id']}", timeout=30).json()
        assert len(shown["trials"]) == 4

    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == [
        "diagnostics", "report", "search.json", "space.yaml"]
    # the champion's confusion matrix and per-class scores on the test split, beside the
    # search's results and in the run its registered version comes from
    champion = client.get_model_version_by_alias("digits-e2e", "champion")
    assert float(champion.tags["latency_ms"]) > 0 and float(champion.tags["params_total"]) > 0
    for run_id in (parent.info.run_id, champion.run_id):
        files = diagnostics(tracking_uri, run_id)
        assert sorted(files) == ["classification_report.txt", "confusion_matrix.png"]
        report = files["classification_report.txt"].decode()
        assert "precision" in report and "recall" in report and "f1-score" in report
        assert len([line for line in report.splitlines() if line.strip()[:1].isdigit()]) == 10

    champion = client.get_model_version_by_alias("digits-e2e", "champion")
    assert champion.tags["metric"] == "val_accuracy"
    assert float(champion.tags["test_accuracy"]) > 0.5

    out = tmp_path / "pulled"
    pulled = cli_here("pull", "digits-e2e@champion", "--out", str(out), "--tracking-uri",
                      tracking_uri)
    assert pulled.returncode == 0, pulled.stderr
    model = raysearch.load(out)
    splits, _ = DATASETS["digits"].load(DATASETS["digits"].options())
    x_test = splits["test"][0]
    # The registered weights are those of the trial's checkpoint.
    ckpt_dir = mlflow.artifacts.download_artifacts(champion.source, tracking_uri=tracking_uri)
    assert torch.equal(model(x_test), checkpoint.load(ckpt_dir)(x_test))
    accuracy = (model(x_test).argmax(1) == splits["test"][1]).float().mean().item()
    assert accuracy == pytest.approx(float(champion.tags["test_accuracy"]), abs=1e-6)

    # The champion is an MLflow model: MLflow's pyfunc and its model server predict the class
    # probabilities raysearch.load's model gives.
    probabilities = model(x_test).softmax(-1).detach().numpy()
    mlflow.set_tracking_uri(tracking_uri)
    served = mlflow.pyfunc.load_model("models:/digits-e2e@champion")
    assert np.allclose(served.predict(x_test.numpy()), probabilities, atol=1e-5)
    with mlflow_models_serve("models:/digits-e2e@champion", tracking_uri) as url:
        reply = requests.post(f"{url}/invocations", json={"inputs": x_test[:5].tolist()},
                              timeout=60)
    assert reply.ok, reply.text
    assert np.allclose(reply.json()["predictions"], probabilities[:5], atol=1e-5)
    assert_nothing_left_running()


def test_the_default_search_registers_a_forecaster_scored_on_its_test_split(default_search):
    """The ready ESN space's champion (the session's default search) forecasts the test split
    with the NRMSE its version records, and MLflow's pyfunc forecasts every step as
    raysearch.load's model does."""
    client = MlflowClient(default_search.tracking_uri)
    version = client.get_model_version_by_alias("esn-mackey-glass", "champion")
    model = raysearch.load(tracking.pull(client, "esn-mackey-glass",
                                         default_search.folder / "pulled")[0])
    spec = load_spec(resolve_space("esn"))
    u, y = DATASETS["mackey_glass"].load(spec.data_options())[0]["test"]
    washout = spec.fixed["washout"]
    prediction = model(u[None])[0, washout:]
    nrmse = ((prediction - y[washout:]).pow(2).mean() / y[washout:].var(unbiased=False)).sqrt()
    assert nrmse.item() == pytest.approx(float(version.tags["test_nrmse"]), rel=1e-3)
    assert nrmse.item() < 0.01
    mlflow.set_tracking_uri(default_search.tracking_uri)
    served = mlflow.pyfunc.load_model("models:/esn-mackey-glass@champion")
    assert np.allclose(served.predict(u[None].numpy()), model(u[None]).detach().numpy(), atol=1e-5)
    assert list(diagnostics(default_search.tracking_uri, version.run_id)) == ["forecast.png"]


CHAMPION = """\
    name: digits-champion
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: 1}}
    scheduler: {{type: none, max_t: {epochs}}}
    resources: {{workers: 2, cpus_per_worker: 1}}
    params:
      lr: {{type: float, low: {lr}, high: {lr2}}}
    fixed: {{channels: 8, optimizer: adam}}
"""


def test_a_worse_search_leaves_the_champion(ray_cluster, tmp_path, tracking_uri, write_spec):
    good = load_spec(write_spec(CHAMPION.format(epochs=3, lr=0.01, lr2=0.02)))
    first = search.run(good, tracking_uri, str(tmp_path / "results"))
    assert first.promotion.champion

    bad = load_spec(write_spec(CHAMPION.format(epochs=1, lr=1e-7, lr2=2e-7)))
    second = search.run(bad, tracking_uri, str(tmp_path / "results"))
    assert second.best.value < first.best.value
    assert not second.promotion.champion
    assert second.promotion.version != first.promotion.version
    assert_nothing_left_running()
    client = MlflowClient(tracking_uri)
    champion = client.get_model_version_by_alias("digits-champion", "champion")
    assert str(champion.version) == first.promotion.version


SAME_TRIAL = """\
    name: same-trial
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 4, sampler: random, seed: 0, max_concurrent: 1}
    scheduler: {type: none, max_t: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      optimizer: {type: categorical, choices: [adam]}
    fixed: {channels: 8, lr: 0.01, batch_size: 64, seed: 3, dropout: 0.2}
"""


def test_a_seeded_trial_reports_the_same_first_or_fourth_on_a_pool_or_on_fresh_workers(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    """Four trials of one seeded config on one warm pool, one after another, then the same
    config in a search whose trial gets a fresh TorchTrainer (reuse_workers: false): each
    reports the same numbers, epoch by epoch (dropout draws from the seeded generator too)."""
    path = write_spec(SAME_TRIAL)
    client = MlflowClient(tracking_uri)

    def histories(outcome: search.Outcome) -> list[dict]:
        runs = sorted(child_runs(client, outcome), key=lambda r: r.info.start_time)
        return [{key: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, key)]
                 for key in ("val_accuracy", "val_loss", "train_loss")} for r in runs]

    pools_before = train_runs_started()
    warm = search.run(load_spec(path), tracking_uri, str(tmp_path / "results"))
    assert train_runs_started() - pools_before == 1
    cold = search.run(load_spec(path, ["resources.reuse_workers=false", "search.trials=1"],
                                name="same-trial-cold"), tracking_uri, str(tmp_path / "results"))
    assert train_runs_started() - pools_before == 2  # a Train run of its own for the trial

    first, *later = histories(warm) + histories(cold)
    assert len(first["val_accuracy"]) == 2 and len(later) == 4
    assert all(h == first for h in later)
    assert warm.count("completed") == 4 and cold.count("completed") == 1
    assert_nothing_left_running()


TWO_SLOTS = """\
    name: two-slots
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 5, sampler: random, seed: 0, max_concurrent: 2}
    scheduler: {type: asha, max_t: 3, grace_period: 1, reduction_factor: 2}
    resources: {workers: 1, cpus_per_worker: 1}
    params:
      lr: {type: float, low: 1e-3, high: 1e-1, log: true}
    fixed: {channels: 4}
"""


def test_two_trial_slots_run_on_two_pools(ray_cluster, tmp_path, tracking_uri, write_spec):
    """Two trials at once on the 2-CPU cluster: two warm pools of one worker, and each trial,
    stopped early or not, on one of them."""
    pools_before = train_runs_started()
    outcome = search.run(load_spec(write_spec(TWO_SLOTS)), tracking_uri,
                         str(tmp_path / "results"))
    assert outcome.max_concurrent == 2 and train_runs_started() - pools_before == 2
    assert outcome.count("completed") + outcome.count("stopped_early") == 5
    client = MlflowClient(tracking_uri)
    for run in child_runs(client, outcome):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == list(range(1, len(steps) + 1)) and steps
    assert_nothing_left_running()


def test_a_search_on_its_own_ray_instance_listens_on_localhost_only(default_search):
    """`raysearch tune` with no cluster to join starts a Ray instance for itself, as on a
    laptop: none of its processes (GCS, raylet, dashboard, agents, pools' workers) listens on an
    address that another machine could reach, from the start to the end of the search. The one
    exception is torch's: the rendezvous store (TCPStore) a pool's rank 0 opens for its worker
    group binds every interface, and no torch setting changes that (README)."""
    assert "registered: esn-mackey-glass version 1 (now champion)" in default_search.run.stdout
    # the embedded store, in the working directory
    assert default_search.tracking_uri == f"sqlite:///{default_search.folder / 'mlflow.db'}"
    assert (default_search.folder / "mlflow.db").exists()
    seen = default_search.listening
    assert len(seen) > 5  # GCS, raylet, dashboard, its agents, workers
    outward = {a: name for a, name in seen.items() if not a.startswith("127.")}
    # the warm pool's rendezvous, in its rank-0 worker: titled by the task it runs, its
    # torch shutdown at the pool's end if that is when it was last seen
    (name,) = outward.values()
    # (or a method's, such as the health check's, when it was last seen running one)
    assert name.startswith(("ray::RayTrainWorker", "ray::execute")), name


BUDGETED = """\
    name: budgeted
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 20, sampler: tpe, seed: 0, max_concurrent: 1, time_budget_s: 8}
    scheduler: {type: none, max_t: 200, max_trial_s: 8}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: float, low: 1e-3, high: 1e-2, log: true}
    fixed: {channels: 4, optimizer: adam}
"""


def test_time_budgets_end_a_trial_and_the_search_and_the_best_is_promoted(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    """The first trial starts within the search's 8 s and runs past them (it runs 8 s of its
    own, and began after the search did): no trial starts after it. It is stopped at its first
    epoch past those 8 s, long before its 200 epochs, and is promoted all the same."""
    outcome = search.run(load_spec(write_spec(BUDGETED)), tracking_uri, str(tmp_path / "results"))
    assert outcome.budget_ended and len(outcome.states) == 1
    assert outcome.count("stopped_early") == 1
    assert outcome.promotion.champion
    client = MlflowClient(tracking_uri)
    (run,) = child_runs(client, outcome)
    assert run.data.tags[tracking.STATE_TAG] == "stopped_early"
    trial_s = client.get_metric_history(run.info.run_id, "trial_s")
    assert 8 < max(m.value for m in trial_s) and len(trial_s) < 200
    assert sorted(m.value > 8 for m in trial_s) == [False] * (len(trial_s) - 1) + [True]
    study = optuna.load_study(study_name="budgeted",
                              storage=f"sqlite:///{tmp_path / 'results'}/budgeted/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED]
    assert_nothing_left_running()

