"""A search survives its driver: Ctrl-C saves it, SIGKILL loses nothing finished, and
`raysearch tune --resume` goes on with it on a real Ray cluster and a real MLflow store."""

import json
import os
import signal
import subprocess
import sys

import helpers
import optuna
import pytest
import torch
from mlflow import MlflowClient

from raysearch import search, tracking
from raysearch.job import TrialState
from raysearch.spec import load_spec
from raysearch.tracking import TRIAL_TAG

SPACE = """\
    name: resumable
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 4, sampler: tpe, seed: 0, max_concurrent: 1}
    scheduler: {type: none, max_t: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: float, low: 1e-3, high: 1e-1, log: true}
    fixed: {channels: 8, optimizer: adam, batch_size: 64}
"""


def start(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raysearch", "tune", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def wait_for_a_completed_trial(process: subprocess.Popen) -> None:
    """Reads the search's output up to its first `trial ... completed` line: the moment a
    trial has ended, in MLflow too (its run is ended before the line is printed). Its trials
    take under a second on the warm pool: a poll of the store would see several end."""
    for line in process.stdout:
        if line.startswith("trial ") and " completed:" in line:
            return
    out, err = process.communicate()
    raise AssertionError(f"ended before a trial completed ({process.returncode}): "
                         f"{out[-2000:]}{err[-2000:]}")


def trial_runs(client: MlflowClient) -> dict[str, object]:
    runs = helpers.trial_runs(client, "resumable")
    return {run.data.tags[tracking.TRIAL_TAG]: run for run in runs}


def history(client: MlflowClient, run) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_accuracy")]


def agree_with_the_study(client: MlflowClient, storage: str, at_least: int,
                         discarded: int | None = None, unheard: int = 0) -> None:
    """The search's Optuna study (optuna.load_study on the storage it printed) holds each
    completed run's trial, COMPLETE with the value and epochs the run logged, and up to
    `unheard` COMPLETE trials more (told just before a kill that beat their runs' MLflow
    writes); with `discarded`, exactly the runs' trials and that many FAIL ones (asked just
    before a kill, never saved by Tune)."""
    study = optuna.load_study(study_name="resumable",
                              storage=f"sqlite:///{storage}/resumable/optuna.db")
    completed = [run for run in trial_runs(client).values()
                 if run.data.tags.get(tracking.STATE_TAG) == "completed"]
    assert len(completed) >= at_least
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) <= len(done) <= len(completed) + unheard
    for run in completed:
        (trial,) = [t for t in done
                    if t.params["lr"] == pytest.approx(float(run.data.params["lr"]))]
        assert sorted(trial.intermediate_values.items()) == history(client, run)
        assert trial.value == history(client, run)[-1][1]
    if discarded is not None:
        states = [t.state for t in study.trials]
        assert states.count(optuna.trial.TrialState.FAIL) == discarded
        assert len(states) == len(completed) + discarded


def test_interrupted_and_killed_searches_resume_without_loss(ray_cluster, tmp_path,
                                                             tracking_uri, write_spec):
    space = write_spec(SPACE)
    storage = str(tmp_path / "results")
    env = {"RAY_ADDRESS": ray_cluster.address_info["address"]}
    client = MlflowClient(tracking_uri)

    # Ctrl-C once: Tune stops, saves its state, and the command says how to go on.
    first = start("--space", str(space), "--tracking-uri", tracking_uri, "--storage", storage,
                  env=env)
    wait_for_a_completed_trial(first)
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 130, out + err
    assert f"raysearch tune --resume resumable --storage {storage}" in err
    assert helpers.own_tracebacks(err) == [], err

    # `--resume` alone takes the last search; then the driver dies without a word, as soon as
    # a trial of its own has completed.
    second = start("--resume", "--storage", storage, env=env)
    wait_for_a_completed_trial(second)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=60)
    before = {trial: history(client, run) for trial, run in trial_runs(client).items()
              if run.data.tags.get(tracking.STATE_TAG) == "completed"}
    assert len(before) >= 2
    # the study holds every trial that finished, as its run does, whatever the kill cut short
    # (the study hears a trial end before its run does: the kill may fall in between)
    agree_with_the_study(client, storage, at_least=len(before), unheard=1)

    third = start("--resume", "resumable", "--storage", storage, env=env)
    out, err = third.communicate(timeout=600)
    assert third.returncode == 0, out + err
    assert "trials: 4 completed" in out, out[-3000:] + err[-3000:]

    runs = trial_runs(client)
    # A trial started in the second before the kill, before Tune saved that it exists, is not
    # run on resume; its run says so.
    discarded = {t for t, run in runs.items()
                 if run.data.tags[tracking.STATE_TAG] == "discarded"}
    assert len(discarded) <= 1
    assert all(runs[t].info.status == "KILLED" for t in discarded)
    runs = {t: run for t, run in runs.items() if t not in discarded}
    assert len(runs) == 4  # one child run per trial, however often the search was resumed
    for trial, run in runs.items():
        assert run.data.tags[tracking.STATE_TAG] == "completed"
        steps = [step for step, _ in history(client, run)]
        assert sorted(set(steps)) == [1, 2]
        if trial in before:  # finished before the kill: not trained again
            assert history(client, run) == before[trial]
    # Optuna went on from its saved state: four trials, four different suggestions
    assert len({run.data.params["lr"] for run in runs.values()}) == 4
    # and its Optuna study agrees: the same four trials, none counted twice, none lost
    agree_with_the_study(client, storage, at_least=4, discarded=len(discarded))
    experiment = client.get_experiment_by_name("resumable")
    parents = client.search_runs([experiment.experiment_id], "tags.`raysearch.role` = 'search'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert client.get_model_version_by_alias("resumable", "champion")


LOST_REPORT = """\
    name: lost-report
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 1, sampler: random, seed: 0}
    scheduler: {type: asha, max_t: 3, grace_period: 1, reduction_factor: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: float, low: 1e-3, high: 1e-2, log: true}
    fixed: {channels: 8, optimizer: adam, batch_size: 64}
"""
# A driver killed the moment Tune hands it the trial's epoch-2 result, before raysearch's MLflow
# callback has seen it: the epoch-2 checkpoint is in storage, its metrics nowhere else.
DIES_AT_EPOCH_2 = """\
import os, signal, sys
import ray
from ray import tune
from raysearch import search
from raysearch.spec import load_spec

class DieAtEpoch2(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)

ray.init(address=sys.argv[4])
search.run(load_spec(sys.argv[1]), sys.argv[2], sys.argv[3], callbacks=(DieAtEpoch2(),))
"""


def test_an_epoch_whose_report_died_with_the_driver_is_logged_once_on_resume(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    storage = tmp_path / "results"
    space = write_spec(LOST_REPORT)
    killed = subprocess.run(
        [sys.executable, "-c", DIES_AT_EPOCH_2, str(space), tracking_uri,
         str(storage), ray_cluster.address_info["address"]],
        capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    (run,) = helpers.trial_runs(client, "lost-report")
    assert [step for step, _ in history(client, run)] == [1]  # epoch 2 died with the driver

    resumed = search.run(load_spec(space), tracking_uri, str(storage), resuming=True)
    assert resumed.count(TrialState.COMPLETED) == 1

    (run,) = helpers.trial_runs(client, "lost-report")
    logged = history(client, run)
    assert [step for step, _ in logged] == [1, 2, 3]  # each epoch once, epoch 2 included
    # with the values the trial reported: those its last checkpoint holds
    trial_dir = storage / "lost-report" / "train" / f"lost-report-{run.data.tags[TRIAL_TAG]}"
    last = max(trial_dir.glob("checkpoint_*"))
    kept = torch.load(last / "train_state.pt", weights_only=True)["history"]
    assert logged == [(entry["epoch"], entry["val_accuracy"]) for entry in kept]
    # Tune, and so ASHA (it sees every result before the callbacks), heard of epoch 2 and
    # judged the trial at that rung: the result the dead driver never logged is in Tune's log
    (results,) = (storage / "lost-report").glob(f"*{run.data.tags[TRIAL_TAG]}*/result.json")
    epochs = [json.loads(line)["epoch"] for line in results.read_text().splitlines()]
    assert 2 in epochs


ENDED_UNHEARD = """\
    name: ended-unheard
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 2, sampler: random, seed: 0, max_concurrent: 1}
    scheduler: {type: none, max_t: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: float, low: 1e-3, high: 1e-2, log: true}
    fixed: {channels: 8, optimizer: adam, batch_size: 64}
"""
# A driver killed after Tune saved its first trial as ended, before that trial's run heard of
# it (the MLflow writes go through an outbox that a kill can beat): a resumed Tune never runs
# or reports that trial again.
DIES_AFTER_TUNE_SAVED_AN_END = """\
import json, os, signal, sys, threading, time
from pathlib import Path
import ray
from raysearch import search, tracking
from raysearch.spec import load_spec

def saved_as_ended(folder, trial_id):
    for path in Path(folder).glob("experiment_state-*.json"):
        try:
            trials = json.loads(path.read_text())["trial_data"]
        except ValueError:  # caught while being written
            continue
        for state, _ in trials:
            state = json.loads(state)
            if state["trial_id"] == trial_id and state["status"] == "TERMINATED":
                return True
    return False

def kill_once_saved(trial_id):
    while not saved_as_ended(Path(sys.argv[3]) / "ended-unheard", trial_id):
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)

heard = tracking.MLflowTrials.on_trial_complete

def first_unheard(self, iteration, trials, trial, **info):
    if self.live == {trial.trial_id} and not self.states:
        self.live.clear()
        threading.Thread(target=kill_once_saved, args=(trial.trial_id,)).start()
    else:
        heard(self, iteration, trials, trial, **info)

tracking.MLflowTrials.on_trial_complete = first_unheard
ray.init(address=sys.argv[4])
search.run(load_spec(sys.argv[1]), sys.argv[2], sys.argv[3])
"""


def test_a_trial_tune_saved_as_ended_before_its_run_heard_is_ended_on_resume(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    storage = tmp_path / "results"
    space = write_spec(ENDED_UNHEARD)
    killed = subprocess.run(
        [sys.executable, "-c", DIES_AFTER_TUNE_SAVED_AN_END, str(space),
         tracking_uri, str(storage), ray_cluster.address_info["address"]],
        capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    first = min(helpers.trial_runs(client, "ended-unheard"), key=lambda r: r.info.start_time)
    assert tracking.STATE_TAG not in first.data.tags

    resumed = search.run(load_spec(space), tracking_uri, str(storage), resuming=True)
    assert resumed.count(TrialState.COMPLETED) == 2

    # a trial started just before the kill, before Tune saved that it exists, is a run of its
    # own, ended as discarded (the resumed search runs another in its place)
    runs = {run.data.tags[TRIAL_TAG]: run for run in helpers.trial_runs(client, "ended-unheard")
            if run.data.tags.get(tracking.STATE_TAG) != "discarded"}
    assert len(runs) == 2
    for run in runs.values():
        assert run.data.tags[tracking.STATE_TAG] == "completed"
        assert run.info.status == "FINISHED"
    trial = first.data.tags[TRIAL_TAG]
    logged = history(client, runs[trial])
    trial_dir = storage / "ended-unheard" / "train" / f"ended-unheard-{trial}"
    kept = torch.load(max(trial_dir.glob("checkpoint_*")) / "train_state.pt",
                      weights_only=True)["history"]
    assert logged == [(entry["epoch"], entry["val_accuracy"]) for entry in kept]
    assert [step for step, _ in logged] == [1, 2]


UNSAVED = """\
    name: unsaved
    model: cnn
    data: {name: digits}
    objective: {metric: val_accuracy, mode: max}
    search: {trials: 2, sampler: random, seed: 10, max_concurrent: 1}
    scheduler: {type: none, max_t: 2}
    resources: {workers: 2, cpus_per_worker: 1}
    params:
      lr: {type: categorical, choices: [1.0e-5, 3.0e-2]}
    fixed: {channels: 8, optimizer: adam, batch_size: 64}
"""
# Tune saves its experiment once, at its first step (its period an hour here, a second in a
# search), and the driver is killed as the second trial ends: the study has heard of that end,
# Tune's saved experiment never held the trial, and its run never heard (a trial of a warm pool
# can start and end within a second). The sampler's seed gives the second trial the good lr.
DIES_AS_AN_UNSAVED_TRIAL_ENDS = """\
import os, signal, sys
import ray
from ray import tune
from raysearch import search
from raysearch.spec import load_spec

class DieAtTheSecondEnd(tune.Callback):
    ended = 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended += 1
        if self.ended == 2:
            os.kill(os.getpid(), signal.SIGKILL)

os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "3600"
ray.init(address=sys.argv[4])
search.run(load_spec(sys.argv[1]), sys.argv[2], sys.argv[3], callbacks=(DieAtTheSecondEnd(),))
"""


def test_a_trial_that_ended_before_tune_saved_it_counts_and_competes_on_resume(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    space, storage = write_spec(UNSAVED), tmp_path / "results"
    killed = subprocess.run(
        [sys.executable, "-c", DIES_AS_AN_UNSAVED_TRIAL_ENDS, str(space), tracking_uri,
         str(storage), ray_cluster.address_info["address"]],
        capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    second = max(helpers.trial_runs(client, "unsaved"), key=lambda r: r.info.start_time)
    assert tracking.STATE_TAG not in second.data.tags
    assert float(second.data.params["lr"]) == 3e-2
    url = f"sqlite:///{storage}/unsaved/optuna.db"
    told = optuna.load_study(study_name="unsaved", storage=url).trials
    assert [t.state for t in told] == [optuna.trial.TrialState.COMPLETE] * 2

    outcome = search.run(load_spec(space), tracking_uri, str(storage), resuming=True)
    # the search's two trials, not a third in the second's place
    assert outcome.count(TrialState.COMPLETED) == 2 and len(outcome.states) == 2
    runs = {run.data.tags[TRIAL_TAG]: run for run in helpers.trial_runs(client, "unsaved")}
    assert len(runs) == 2
    assert all(run.data.tags[tracking.STATE_TAG] == "completed" for run in runs.values())
    assert all(run.info.status == "FINISHED" for run in runs.values())
    # the second's run has the epochs its checkpoint holds, and it is the champion
    trial = second.data.tags[TRIAL_TAG]
    trial_dir = storage / "unsaved" / "train" / f"unsaved-{trial}"
    kept = torch.load(max(trial_dir.glob("checkpoint_*")) / "train_state.pt",
                      weights_only=True)["history"]
    assert history(client, runs[trial]) == [(e["epoch"], e["val_accuracy"]) for e in kept]
    assert outcome.best.trial_id == trial
    assert outcome.promotion and outcome.promotion.champion
    study = optuna.load_study(study_name="unsaved", storage=url).trials
    assert [(t.state, t.value) for t in study] == [(t.state, t.value) for t in told]
