"""MLflow, from the driver only: a parent run per search, a child run per trial, the registry.

Workers never open an MLflow client, so a search of 100 trials holds one client, not
100 x workers. Ray's MLflowLoggerCallback is not used: it makes no nested runs, writes one row
per metric per call, drops `checkpoint_path` and logs numeric-looking strings as metrics
(FACTS.md); this callback writes each report as one batch and keys runs by trial id.
"""

import contextlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from ray import tune

from raysearch import checkpoint, serving
from raysearch.job import ENDED, TIME_LIMITED, TrialState, Unsaved
from raysearch.outbox import Outbox
from raysearch.resume import home
from raysearch.storage import first_line

TRIAL_TAG = "raysearch.trial_id"
STATE_TAG = "raysearch.state"  # a TrialState
ERROR_TAG = "raysearch.error"  # a failed trial's reason: its error's last line
PARETO_TAG = "raysearch.pareto"  # several objectives: whether the trial is on the front
RESTARTS_TAG = "raysearch.restarts"  # worker-group restarts after a failure (a lost worker)
CHAMPION = "champion"
SHA256_TAG = "sha256"  # a model version's tag per file: sha256.model.pt, sha256.config.json


def tracking_uri(cli_value: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else an SQLite file in the working directory
    or RAYSEARCH_HOME (MLflow 3 refuses its old ./mlruns folder store)."""
    return (cli_value or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{home() / 'mlflow.db'}")


def start_search(client: MlflowClient, name: str, spec_file: Path, settings: dict[str, Any]
                 ) -> tuple[str, str]:
    """The search's experiment and its parent run, with the spec file as an artifact."""
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=name, tags={"raysearch.role": "search"})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in settings.items()])
    client.log_artifact(run.info.run_id, str(spec_file))
    return experiment_id, run.info.run_id


def metrics_now(values: dict[str, float], step: int = 0) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]


def finish_search(client: MlflowClient, run_id: str, best: Any, metric: str,
                  status: str = "FINISHED") -> None:
    """The best trial's (a search.Best) params and value on the search's run, and its end."""
    if best:
        client.log_batch(run_id, metrics=metrics_now({f"best_{metric}": best.value}),
                         params=[Param(f"best.{k}", str(v)) for k, v in best.config.items()],
                         tags=[RunTag("best_trial_id", best.trial_id)])
    client.set_terminated(run_id, status)


def tag_front(client: MlflowClient, runs: dict[str, str], on_front: set[str]) -> None:
    """`raysearch.pareto` on the ended trials' runs (`runs`: trial id -> run id): "true" for
    those of the Pareto front, "false" for the others (a resumed search's front may differ)."""
    for trial_id, run_id in runs.items():
        client.set_tag(run_id, PARETO_TAG, str(trial_id in on_front).lower())


def last_line(error: str) -> str:
    """The line of an error's text that says what went wrong: its last, without the exception's
    module path (Ray wraps a trial's error in tracebacks of the actors it passed through)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = lines[-1] if lines else "unknown error"
    return re.sub(r"^(?:\w+\.)+(?=\w+: )", "", line)


class MLflowTrials(tune.Callback):
    """Each Tune trial as a child run of the search's run: params, per-epoch metrics, end state.
    Every write goes through the outbox, so a tracking server that is away holds up nothing.

    Each epoch is logged once: a trial that goes on from its checkpoint reports again the
    epochs that checkpoint holds (a killed driver may have lost them), and those already in
    the store, or sent by this driver, are not logged twice. A trial a killed driver's Tune had
    saved as ended before its run heard so is ended on resume from `history(trial_id)` (the
    metrics of each epoch its checkpoint holds, and whether the scheduler stopped it early):
    Tune does not run it again. So is a trial of `unsaved` (ended in the search's study in the
    second before the driver died, before Tune saved that it exists) whose run had not heard,
    its run made if the store was away then; one that Tune's restored trials hold after all
    (Tune's saved files, copied one by one, may be of two saves) leaves `unsaved`.
    """

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str,
                 metrics: tuple[str, ...], stopped_early: set[str] | None = None,
                 outbox: Outbox | None = None,
                 history: Callable[[str], tuple[list[dict], bool]] = lambda t: ([], False),
                 unsaved: dict[str, Unsaved] | None = None):
        self.client, self.experiment_id, self.parent = client, experiment_id, parent_run_id
        self.metrics = metrics
        # trial ids stopped before max_t: by the scheduler (its set), or past max_trial_s
        self.stopped_early = stopped_early if stopped_early is not None else set()
        self.history = history
        self.unsaved = unsaved if unsaved is not None else {}  # filled as Tune restores
        self.settled = False
        self.outbox = outbox or Outbox(client.tracking_uri)
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.before: set[str] = set()  # trials whose runs an earlier driver made
        self.states: dict[str, TrialState] = {}  # trial id -> how it ended
        self.sent: dict[str, set[int]] = {}  # trial id -> the epochs this driver logged
        # trial id -> the epochs the store held when this driver first wrote to a run an
        # earlier driver made (a resumed search runs unfinished trials again)
        self.stored: dict[str, set[int]] = {}
        self.errors: dict[str, str] = {}  # trial id -> why it failed, in the order they failed
        self.restarts: dict[str, int] = {}
        self.live: set[str] = set()  # trials started and not ended
        self.unfinished: list[str] = []  # at the experiment's end: trials that did not end

    def setup(self, **info: Any) -> None:
        # A restored search finds its trials' runs again instead of making second ones.
        for run in self.client.search_runs(
                [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent}'"):
            trial_id = run.data.tags[TRIAL_TAG]
            self.runs[trial_id] = run.info.run_id
            self.before.add(trial_id)
            if run.data.tags.get(STATE_TAG) in ENDED:
                self.states[trial_id] = TrialState(run.data.tags[STATE_TAG])
            if run.data.tags.get(ERROR_TAG):
                self.errors[trial_id] = run.data.tags[ERROR_TAG]

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self.settle(iteration, trials)

    def settle(self, iteration: int, trials: list) -> None:
        """Ends the runs of restored trials Tune had ended; Tune hands a resumed search's
        trials to its callbacks only at a step, or at the end when all had ended."""
        if self.settled:
            return
        self.settled = True
        for trial in trials:
            if trial.trial_id in self.states:
                continue
            if trial.status == "ERROR":
                self.on_trial_error(iteration, trials, trial)
            elif trial.status == "TERMINATED":
                self.replay(iteration, trials, trial, None)
        for trial in trials:
            self.unsaved.pop(trial.trial_id, None)
        for trial_id, unsaved in self.unsaved.items():
            if trial_id not in self.states and (trial_id in self.runs or unsaved.config):
                self.replay(iteration, trials, unsaved, unsaved.state == TrialState.STOPPED_EARLY)

    def replay(self, iteration: int, trials: list, trial: Any, stopped: bool | None) -> None:
        """Logs the epochs the trial's checkpoint holds and ends its run: stopped early as
        `stopped` says, or, when None, as its checkpoint folder's marker does."""
        try:
            history, marked = self.history(trial.trial_id)
        except (checkpoint.CheckpointError, OSError) as e:
            # what the store holds of its epochs stays; the trial still ends
            print(f"warning: trial {trial.trial_id}: its last epochs could not be read "
                  f"back ({first_line(str(e))})", file=sys.stderr)
            history, marked = [], False
        for entry in history:
            self.on_trial_result(iteration, trials, trial, entry)
        self.end(trial, marked if stopped is None else stopped)

    def run_id(self, trial: Any) -> str:
        """The trial's run, made at its first write (writes run in order, so a run that could
        not be made yet is made before anything is logged to it)."""
        if trial.trial_id not in self.runs:
            run = self.client.create_run(
                self.experiment_id, run_name=str(trial),
                tags={"mlflow.parentRunId": self.parent, TRIAL_TAG: trial.trial_id})
            self.runs[trial.trial_id] = run.info.run_id
            self.client.log_batch(run.info.run_id,
                                  params=[Param(k, str(v)) for k, v in trial.config.items()])
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.live.add(trial.trial_id)
        if trial.trial_id in self.runs:  # a resumed trial: its run was left KILLED or RUNNING
            run_id = self.runs[trial.trial_id]
            self.outbox.send(lambda: self.client.update_run(run_id, "RUNNING"))
        else:
            self.outbox.send(lambda: self.run_id(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        if result.get(TIME_LIMITED):  # stopped by its pool past scheduler.max_trial_s
            self.stopped_early.add(trial.trial_id)
        sent = self.sent.setdefault(trial.trial_id, set())
        epoch = int(result["epoch"])
        values = {k: result[k] for k in self.metrics if isinstance(result.get(k), (int, float))
                  and epoch not in sent}
        sent.add(epoch)
        metrics = metrics_now(values, epoch)  # stamped now, even if sent later
        tags = []
        restarts = result.get("restarts", 0)
        if restarts > self.restarts.get(trial.trial_id, 0):
            self.restarts[trial.trial_id] = restarts
            tags = [RunTag(RESTARTS_TAG, str(restarts))]

        def write() -> None:
            run_id = self.run_id(trial)
            new = metrics if epoch not in self.epochs_stored(trial.trial_id, run_id) else []
            if new or tags:
                self.client.log_batch(run_id, metrics=new, tags=tags)

        self.outbox.send(write)

    def epochs_stored(self, trial_id: str, run_id: str) -> set[int]:
        """The epochs a run made by an earlier driver held when this one first wrote to it
        (read once, when the store is reachable: the write waits in the outbox till then)."""
        if trial_id in self.before and trial_id not in self.stored:
            self.stored[trial_id] = {int(m.step) for m in self.client.get_metric_history(
                run_id, "epoch")}
        return self.stored.get(trial_id, set())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial, trial.trial_id in self.stopped_early)

    def end(self, trial: Any, early: bool) -> None:
        self.live.discard(trial.trial_id)
        state = self.states[trial.trial_id] = (TrialState.STOPPED_EARLY if early
                                               else TrialState.COMPLETED)
        self.outbox.send(lambda: self.end_run(self.run_id(trial), state,
                                              "KILLED" if early else "FINISHED"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.live.discard(trial.trial_id)
        # the trial's error file on this machine: the copy in storage is written later
        local = Path(trial.error_file) if trial.error_file else None
        local = local if local and local.exists() else None
        text = local.read_text() if local else trial.get_error()
        self.states[trial.trial_id] = TrialState.FAILED
        reason = self.errors[trial.trial_id] = last_line(text) if text else "unknown error"

        def write() -> None:
            run_id = self.run_id(trial)
            if local:  # the whole traceback, beside the run's metrics
                self.client.log_artifact(run_id, str(local))
            self.end_run(run_id, TrialState.FAILED, "FAILED", {ERROR_TAG: reason})

        self.outbox.send(write)

    def end_run(self, run_id: str, state: TrialState, status: str,
                tags: dict[str, str] | None = None) -> None:
        tags = {STATE_TAG: state.value, **(tags or {})}
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """After Ctrl-C Tune stops the running trials without ending them: those, and trials
        never started, are what a resume will run."""
        self.settle(-1, trials)
        self.unfinished = [t.trial_id for t in trials
                           if t.trial_id in self.live or t.status in ("PENDING", "PAUSED")]
        by_id = {t.trial_id: t for t in trials}
        for trial_id in self.live:
            trial = by_id[trial_id]
            self.outbox.send(lambda t=trial: self.end_run(
                self.run_id(t), TrialState.INTERRUPTED, "KILLED"))
        # A driver killed within a second of starting a trial dies before Tune saves that the
        # trial exists: the resumed search never runs it (Optuna suggests another instead).
        for trial_id, run_id in list(self.runs.items()):
            if trial_id not in by_id and trial_id not in self.states:
                self.outbox.send(lambda r=run_id: self.end_run(r, TrialState.DISCARDED,
                                                               "KILLED"))


@dataclass
class Promotion:
    version: str
    champion: bool  # whether the alias moved to this version
    previous: str | None  # the champion version before, if any


def better(value: float, than: float, mode: str) -> bool:
    return value < than if mode == "min" else value > than


PYFUNC_MODEL = Path(__file__).parent / "pyfunc_model.py"  # the model's code, for MLflow


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """Without what MLflow prints while it saves a model (progress bars, INFO lines): a
    search's output says what matters."""
    logger = logging.getLogger("mlflow")
    level, bar = logger.level, os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    logger.setLevel(logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        logger.setLevel(level)
        if bar is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = bar


def log_model(client: MlflowClient, run_id: str, checkpoint_dir: str, example: np.ndarray
              ) -> str:
    """The checkpoint's model as an MLflow model, artifact `model` of run `run_id`: a pyfunc
    logged as code that rebuilds it from config.json + model.pt (nothing pickled), with the
    signature and input example `example` gives; its artifact URI."""
    with tempfile.TemporaryDirectory() as tmp:
        # The model alone: the optimizer and ridge sums in the checkpoint are for resuming.
        folder = Path(tmp) / "model"
        folder.mkdir()
        for file in checkpoint.MODEL_FILES:
            shutil.copy(Path(checkpoint_dir) / file, folder / file)
        model = checkpoint.load(folder)
        task = checkpoint.read_config(folder).get("task", "classification")
        with quietly():
            mlflow.pyfunc.save_model(
                Path(tmp) / "mlflow", python_model=str(PYFUNC_MODEL),
                artifacts={"model": str(folder)}, input_example=example,
                signature=serving.signature(example, serving.predict(model, example, task)),
                # what serving it in a fresh environment installs (--env-manager virtualenv)
                pip_requirements=[f"raysearch=={version('raysearch')}",
                                  f"torch=={version('torch').split('+')[0]}"])
        client.log_artifacts(run_id, str(Path(tmp) / "mlflow"), artifact_path="model")
    return f"{client.get_run(run_id).info.artifact_uri}/model"


def log_diagnostics(client: MlflowClient, run_ids: Collection[str], files: list[Path]) -> None:
    for run_id in run_ids:
        for file in files:
            client.log_artifact(run_id, str(file), artifact_path="diagnostics")


def promote(client: MlflowClient, name: str, run_id: str, checkpoint_dir: str, metric: str,
            mode: str, value: float, tags: dict[str, Any], example: np.ndarray) -> Promotion:
    """Register the checkpoint as a new version of model `name` (an MLflow model, see
    log_model); move `champion` to it only if it beats the current champion on the same
    metric."""
    sums = {f"{SHA256_TAG}.{name}": digest
            for name, digest in checkpoint.checksums(checkpoint_dir).items()}
    source = log_model(client, run_id, checkpoint_dir, example)
    try:
        client.create_registered_model(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        name, source, run_id=run_id,
        tags={"metric": metric, "mode": mode, "value": repr(value), **sums, **tags}).version
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    wins = current is None or (
        current.tags.get("metric") == metric
        and not math.isnan(value)
        and better(value, float(current.tags["value"]), mode))
    if wins:
        client.set_registered_model_alias(name, CHAMPION, version)
    return Promotion(str(version), wins, current.version if current else None)


def resolve(client: MlflowClient, ref: str) -> Any:
    """NAME@alias, NAME/version, or NAME alone (its champion, else its latest version)."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        return client.get_model_version(name, version)
    try:
        return client.get_model_version_by_alias(ref, CHAMPION)
    except MlflowException:
        versions = client.search_model_versions(f"name = '{ref}'")
        if not versions:
            raise
        return max(versions, key=lambda v: int(v.version))


def pull(client: MlflowClient, ref: str, out: str | Path) -> tuple[Path, Any]:
    """Download the model version `ref` names into folder `out` (an MLflow model folder, or
    for a version registered before raysearch logged MLflow models, config.json + model.pt),
    after checking each model file against the SHA-256 recorded when it was registered
    (nothing is written if one differs)."""
    version = resolve(client, ref)
    expected = {key.removeprefix(f"{SHA256_TAG}."): digest
                for key, digest in version.tags.items() if key.startswith(f"{SHA256_TAG}.")}
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp,
                                                    tracking_uri=client.tracking_uri)
        inside = checkpoint.model_folder(local)
        bad = checkpoint.damaged(inside, expected)
        if bad:
            where = (inside / bad[0]).relative_to(local).as_posix()
            raise checkpoint.CheckpointError(
                f"{version.source}/{where}: not the file registered as {version.name} version "
                f"{version.version} (its SHA-256 differs or it is missing); nothing was written "
                f"to {out}")
        out.mkdir(parents=True, exist_ok=True)
        # a plain version pulled where an MLflow model was: load would find the old one inside
        stale = [] if (Path(local) / checkpoint.MLFLOW_MODEL).exists() else [
            out / checkpoint.MLFLOW_MODEL, out / checkpoint.IN_MLFLOW_MODEL.parts[0]]
        for item in [*stale, *(out / item.name for item in Path(local).iterdir())]:
            if item.is_dir():
                shutil.rmtree(item)
            elif item.exists():
                item.unlink()
        for item in Path(local).iterdir():
            shutil.move(str(item), out / item.name)
    return out, version
