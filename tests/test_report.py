"""What a search shows: its output outside a terminal, the live table in one, the report it
writes at its end (trials.csv, report.html rendered by headless Chromium), `raysearch report`
over one search and over several, and the TensorBoard event files of its trials."""

import csv
import io
import json
import math
import re

import pytest
from helpers import cli, cli_here, render_in_chromium
from mlflow import MlflowClient
from ray.tune.experiment import Trial
from rich.console import Console
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from raysearch import search, tracking
from raysearch.job import TrialState
from raysearch.progress import Progress
from raysearch.report import ReportError, SearchInfo, SearchRecord
from raysearch.report.compare import check_comparable
from raysearch.spec import load_spec, resolve_space

NAME, SMALL = "esn-mackey-glass", "esn-small"
PLOTS = 6  # learning curves and Optuna's five: history, intermediate, importances, parallel, slice


@pytest.fixture(scope="module")
def searches(default_search, ray_cluster):
    """The default search (conftest.py: the ready ESN space, 6 trials, run as users run it),
    then a smaller ESN of 2 trials on the same data, in the same store, for the comparison."""
    spec = load_spec(resolve_space("esn"), ["params.units.high=120"], trials=2, name=SMALL)
    search.run(spec, default_search.tracking_uri, str(default_search.storage))
    return {"run": default_search.run, "uri": default_search.tracking_uri,
            "storage": default_search.storage}


def trial_runs(uri: str, name: str) -> dict[str, object]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{tracking.TRIAL_TAG}` != ''")
    return {r.data.tags[tracking.TRIAL_TAG]: r for r in runs}


def test_a_search_outside_a_terminal_prints_a_line_per_trial_event_and_no_library_noise(
        searches):
    run = searches["run"]
    output = run.stdout + run.stderr
    lines = output.splitlines()
    assert len(lines) < 60, output
    assert "Traceback" not in output and "core_worker.cc" not in output, output
    for noise in ("Check failed", "bug in Ray", "ExperimentalWarning", "A new study created",
                  "Creating initial MLflow database tables", "Token authentication",
                  "Started a local Ray instance", "Trial status", "╭", "Received additional",
                  "is already reported"):
        assert noise not in output, noise
    trials = trial_runs(searches["uri"], NAME)
    assert len(trials) == 6
    for trial_id, trial in trials.items():
        started = [line for line in lines if line.startswith(f"trial {trial_id} started: ")]
        ended = [line for line in lines if line.startswith(f"trial {trial_id} ")
                 and line not in started]
        assert len(started) == 1 and len(ended) == 1, output
        # the sampled params with significant digits (a ridge of 1e-09 is not 0)
        ridge = float(trial.data.params["ridge"])
        assert f"ridge={ridge:.4g}" in started[0]
        state = trial.data.tags[tracking.STATE_TAG]
        epochs = len(MlflowClient(searches["uri"]).get_metric_history(trial.info.run_id,
                                                                      "val_nrmse"))
        expected = ("completed" if state == "completed"
                    else f"stopped early at epoch {epochs}")
        assert ended[0].startswith(f"trial {trial_id} {expected}: val_nrmse "), ended[0]
    assert re.search(r"6/6 trials done, best val_nrmse \S+ \(trial \w+\)", output)
    assert f"TensorBoard: tensorboard --logdir {searches['storage']}/{NAME}" in output
    assert (f"Optuna dashboard: optuna-dashboard sqlite:///{searches['storage']}/{NAME}/"
            "optuna.db") in output
    assert "registered: esn-mackey-glass version 1 (now champion)" in output
    assert f"report: {searches['storage']}/{NAME}/report/report.html" in output


def test_every_search_writes_its_report_into_its_storage_and_its_run(searches):
    folder = searches["storage"] / NAME / "report"
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "trials.csv"]
    client = MlflowClient(searches["uri"])
    parent = client.search_runs(
        [client.get_experiment_by_name(NAME).experiment_id], "tags.`raysearch.role` = 'search'")[0]
    logged = [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    assert logged == ["report/report.html", "report/trials.csv"]

    with (folder / "trials.csv").open() as f:
        rows = {row["trial_id"]: row for row in csv.DictReader(f)}
    trials = trial_runs(searches["uri"], NAME)
    assert rows.keys() == trials.keys()
    for trial_id, trial in trials.items():
        row = rows[trial_id]
        history = [m.value for m in sorted(
            client.get_metric_history(trial.info.run_id, "val_nrmse"), key=lambda m: m.step)]
        assert row["run_id"] == trial.info.run_id
        assert row["state"] == trial.data.tags[tracking.STATE_TAG]
        assert float(row["val_nrmse_best"]) == pytest.approx(min(history))
        assert float(row["val_nrmse_last"]) == pytest.approx(history[-1])
        assert int(row["epochs"]) == len(history) and row["restarts"] == "0"
        assert float(row["params_total"]) == trial.data.metrics["params_total"]
        assert float(row["latency_ms"]) > 0
        for param, value in trial.data.params.items():  # sampled and fixed
            assert row[param] == value or float(row[param]) == pytest.approx(float(value))


def test_the_report_renders_its_plots_in_a_browser_with_no_network(searches, tmp_path):
    page = searches["storage"] / NAME / "report" / "report.html"
    # nothing fetched from a host: no script, style or image by URL (plotly.js, inlined, holds
    # links it draws only on demand)
    markup = re.sub(r"<script>.*?</script>", "", page.read_text(), flags=re.S)
    assert not re.search(r'(src|href)="(https?:)?//', markup) and "<script src" not in markup
    rendered = render_in_chromium(page, tmp_path / "report.png")
    assert rendered.console == []
    # every plotly figure drew its SVG; Optuna's plots are named by their titles
    assert rendered.dom.count('class="plotly-graph-div') == PLOTS
    assert rendered.dom.count('class="main-svg"') >= PLOTS
    for title in ("Optimization History Plot", "Intermediate Values Plot",
                  "Hyperparameter Importances", "Parallel Coordinate Plot", "Slice Plot"):
        assert title in rendered.dom
    assert "data:image/png;base64," in rendered.dom  # the champion's forecast
    assert rendered.screenshot.stat().st_size > 50_000


def test_report_compares_searches_on_one_data_set(searches, tmp_path):
    out = tmp_path / "compared"
    run = cli_here("report", NAME, SMALL, "--tracking-uri", searches["uri"], "--out",
                   str(out), "--format", "json")
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["comparison.html", "trials.json"]
    rows = json.loads((out / "trials.json").read_text())
    assert sorted({r["search"] for r in rows}) == [NAME, SMALL] and len(rows) == 8
    assert all(r["units"] <= 120 for r in rows if r["search"] == SMALL)
    rendered = render_in_chromium(out / "comparison.html", tmp_path / "comparison.png")
    assert rendered.console == []
    # best per search, against size, against latency, the curves side by side
    assert rendered.dom.count('class="plotly-graph-div') == 4
    assert rendered.dom.count('class="main-svg"') >= 4
    for name in (NAME, SMALL):
        assert name in rendered.dom


def test_report_of_a_search_the_store_does_not_hold_is_one_line_and_exit_2(searches, tmp_path):
    run = cli("report", "esn-mackey-glas", "--tracking-uri", searches["uri"], "--out",
              str(tmp_path / "out"))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "no search named 'esn-mackey-glas'" in run.stderr
    assert NAME in run.stderr and SMALL in run.stderr  # the searches it does hold
    assert not (tmp_path / "out").exists()


def test_searches_on_different_data_are_not_compared():
    digits = SearchInfo.of(load_spec(resolve_space("cnn")))
    esn = SearchInfo.of(load_spec(resolve_space("esn")))
    records = [SearchRecord(info, "run", "FINISHED", [], None, {}) for info in (esn, digits)]
    with pytest.raises(ReportError, match="ran on different data"):
        check_comparable(records)


def test_tensorboard_reads_every_trial_at_every_epoch_with_its_hyperparameters(searches):
    client = MlflowClient(searches["uri"])
    for trial_id, trial in trial_runs(searches["uri"], NAME).items():
        folder = searches["storage"] / NAME / f"{NAME}-{trial_id}"
        events = EventAccumulator(str(folder))
        events.Reload()
        logged = {int(m.step): m.value for m in client.get_metric_history(trial.info.run_id,
                                                                          "val_nrmse")}
        scalars = {e.step: e.value for e in events.Scalars("ray/tune/val_nrmse")}
        assert scalars.keys() == logged.keys()
        assert all(math.isclose(scalars[s], logged[s], rel_tol=1e-5) for s in logged)
        # the HParams tab: the trial's sampled and fixed params
        plugin = plugin_event_accumulator.EventAccumulator(str(folder))
        plugin.Reload()
        start = plugin_data_pb2.HParamsPluginData.FromString(
            plugin.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert hparams["ridge"].number_value == pytest.approx(float(trial.data.params["ridge"]))
        assert hparams["units"].number_value == int(trial.data.params["units"])


def test_the_live_view_keeps_the_running_and_the_best_trials_on_screen():
    spec = load_spec(resolve_space("esn"), ["search.trials=30"])
    states: dict[str, TrialState] = {}
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, color_system=None, width=200, height=20)
    view = Progress(spec, states, console, live=True, links=("MLflow: sqlite:///m.db",))
    trials = [Trial("esn", config={"units": 100 + i, "ridge": 1e-9}, trial_id=f"t{i:02d}",
                    stub=True) for i in range(30)]
    for i, trial in enumerate(trials):
        view.on_trial_start(0, trials, trial)
        for epoch in (1, 2):
            view.on_trial_result(0, trials, trial, {"epoch": epoch, "val_nrmse": 1.0 + i})
        if i < 28:  # two still run
            states[trial.trial_id] = TrialState.STOPPED_EARLY if i % 2 else TrialState.COMPLETED
            view.on_trial_complete(0, trials, trial)
    console.print(view.render())
    text = screen.getvalue()
    assert "esn-mackey-glass: 28/30 trials done, best val_nrmse 1 (trial t00)" in text
    assert "MLflow: sqlite:///m.db" in text
    shown = [m for line in text.splitlines() if line.startswith("│")
             for m in re.findall(r"^│ ?t(\d\d)\b", line)]
    assert shown[:3] == ["28", "29", "00"]  # running first, then the best
    assert "... and" in text and len(shown) < 20  # the rest fits the terminal's height
    assert "stopped early at epoch 2" in text and "1e-09" in text
