"""A search's Optuna study outlives it: a finished search given more trials runs them on the
same study, and a later search of the same space starts from its trials (its best first). A
real Ray cluster, 2 gloo workers per trial, a real SQLite MLflow store and Optuna storage."""

import json

import optuna
import pytest
from helpers import child_runs, cli_here, trial_runs
from mlflow import MlflowClient
from ray.tune.search import Searcher

from raysearch import search, tracking
from raysearch.job import TrialState, Unsaved
from raysearch.spec import load_spec

SPACE = """\
    name: {name}
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: {trials}, sampler: tpe, seed: {seed}, max_concurrent: 1{warm}}}
    scheduler: {{type: none, max_t: 1}}
    resources: {{workers: 2, cpus_per_worker: 1}}
    params:
      lr: {{type: float, low: {low}, high: 1.0e-1, log: true}}
    fixed: {{channels: 4, optimizer: adam}}
"""


def study(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{storage}/{name}/optuna.db")


def test_a_finished_search_runs_more_trials_and_a_later_one_starts_from_them(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    storage = str(tmp_path / "results")
    first = load_spec(write_spec(SPACE.format(name="first", trials=2, seed=0, warm="",
                                              low=1e-4), "first.yaml"))
    assert search.run(first, tracking_uri, storage).count("completed") == 2

    # more trials for the finished search: the same study and parent run
    more = cli_here("tune", "--resume", "first", "--trials", "3", "--storage", storage)
    assert more.returncode == 0, more.stdout[-3000:] + more.stderr[-3000:]
    assert "trials: 3 completed" in more.stdout, more.stdout[-3000:]
    client = MlflowClient(tracking_uri)
    runs = trial_runs(client, "first")
    assert len(runs) == 3 and len({r.data.tags["mlflow.parentRunId"] for r in runs}) == 1
    assert all(r.data.tags[tracking.STATE_TAG] == "completed" for r in runs)
    grown = study(storage, "first")
    assert [t.state for t in grown.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert sorted(t.params["lr"] for t in grown.trials) == pytest.approx(
        sorted(float(r.data.params["lr"]) for r in runs))
    state = json.loads((tmp_path / "results" / "first" / "raysearch.json").read_text())
    assert state["flags"] == {"trials": 3}  # kept for a later resume

    # a later search warm-started from it: its best two first, best first, and all three
    # in its study as finished trials the sampler learnt from
    ranked = sorted(runs, key=lambda r: -r.data.metrics["val_accuracy"])
    warm = load_spec(write_spec(SPACE.format(
        name="warm", trials=3, seed=1, low=1e-4, warm=", warm_start: {from: [first], top: 2}"),
        "warm.yaml"))
    outcome = search.run(warm, tracking_uri, storage)
    started = sorted(child_runs(client, outcome), key=lambda r: r.info.start_time)
    assert len(started) == 3
    assert [float(r.data.params["lr"]) for r in started[:2]] == pytest.approx(
        [float(r.data.params["lr"]) for r in ranked[:2]])
    trials = study(storage, "warm").trials
    earlier = [t for t in trials if t.user_attrs.get("search") == "first"]
    assert len(earlier) == 3 and len(trials) == 6
    assert sorted(t.value for t in earlier) == pytest.approx(
        sorted(r.data.metrics["val_accuracy"] for r in runs))

    # a search of another space cannot start from it: one line, before anything starts
    other = write_spec(SPACE.format(name="other", trials=3, seed=1, low=1e-5,
                                    warm=", warm_start: {from: [first]}"), "other.yaml")
    refused = cli_here("tune", "--space", str(other), "--tracking-uri", tracking_uri,
                       "--storage", storage)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert ("search.warm_start.from: search 'first' and this one search params.lr "
            "differently") in line
    assert not (tmp_path / "results" / "other").exists()


def test_a_trial_the_study_ended_before_a_kill_is_not_told_again_on_resume(tmp_path, write_spec):
    """The driver died after the study heard a trial end and before Tune saved its searcher:
    the resumed searcher runs the trial again (from its checkpoint), and its replayed reports
    leave the study's record of it as it was."""
    spec = load_spec(write_spec(SPACE.format(name="told", trials=2, seed=0, warm="", low=1e-4)))
    storage = str(tmp_path / "results")
    searcher = search.make_searcher(spec, storage, set(), resuming=False, warm=None)
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last save before the kill
    searcher.on_trial_result("t1", {"val_accuracy": 0.5, "epoch": 1})
    searcher.on_trial_complete("t1", {"val_accuracy": 0.5, "epoch": 1})

    resumed = search.make_searcher(spec, storage, set(), resuming=True, warm=None)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.on_trial_result("t1", {"val_accuracy": 0.4, "epoch": 1})
    resumed.on_trial_complete("t1", {"val_accuracy": 0.4, "epoch": 1})
    (trial,) = study(storage, "told").trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == 0.5 and trial.intermediate_values == {1: 0.5}


def test_a_trial_that_ended_before_tune_saved_it_exists_counts_on_resume(tmp_path, write_spec):
    """The driver died after a trial was asked and ended within the second since Tune last
    saved: the resumed searcher knows it from the study (its config, how it ended) and asks no
    more trials than the search has left."""
    spec = load_spec(write_spec(SPACE.format(name="unsaved", trials=2, seed=0, warm="",
                                             low=1e-4)))
    storage = str(tmp_path / "results")
    searcher = search.make_searcher(spec, storage, set(), resuming=False, warm=None)
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))  # Tune's last save before the kill
    config = searcher.suggest("t2")
    searcher.on_trial_complete("t2", {"val_accuracy": 0.7, "epoch": 1})

    resumed = search.make_searcher(spec, storage, set(), resuming=True, warm=None)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert resumed.unsaved == {"t2": Unsaved("t2", TrialState.COMPLETED, config)}
    assert resumed.suggest("t3") == Searcher.FINISHED  # t1 and t2 are the search's two
    assert [t.state for t in study(storage, "unsaved").trials] == [
        optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE]
