"""A finished (or running) search as the MLflow store holds it: what its spec searched, and a
record per trial. Everything the report and `trials.csv` show is read from the store, so
`raysearch report` works from the tracking URI alone, on any machine."""

import csv
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from raysearch import tracking
from raysearch.costs import COST_METRICS
from raysearch.space import distribution
from raysearch.spec import Spec

SEARCH_FILE = "search.json"  # the search run's artifact that says what its spec searched


class ReportError(Exception):
    """A search the store does not hold, or searches that cannot be compared."""


@dataclass(frozen=True)
class SearchInfo:
    """What a report needs of a search's spec (with its --set and flags applied)."""

    name: str
    model: str
    data: str
    data_options: dict[str, Any]
    metric: str
    mode: str  # min | max
    max_t: int
    distributions: dict[str, optuna.distributions.BaseDistribution]  # the searched params
    fixed: dict[str, Any]
    # several objectives: each one's [metric, mode] (`metric` and `mode` above rank the trials)
    objectives: list[list[str]] = field(default_factory=list)

    @classmethod
    def of(cls, spec: Spec) -> "SearchInfo":
        return cls(spec.name, spec.models_text(), spec.data.name, dict(spec.data.options),
                   spec.ranking().metric, spec.ranking().mode, spec.scheduler.max_t,
                   {name: distribution(p) for name, p in spec.params.items()}, dict(spec.fixed),
                   [[o.metric, o.mode] for o in spec.objective] if spec.several() else [])

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "distributions": {
            name: optuna.distributions.distribution_to_json(d)
            for name, d in self.distributions.items()}}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "SearchInfo":
        return cls(**{**values, "distributions": {
            name: optuna.distributions.json_to_distribution(d)
            for name, d in values["distributions"].items()}})

    def parse(self, name: str, logged: str) -> Any:
        """A param's value as MLflow logged it (a string), as the value the trial had."""
        if name in self.fixed:
            return self.fixed[name]
        d = self.distributions.get(name)
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            return next((c for c in d.choices if str(c) == logged), logged)
        if isinstance(d, optuna.distributions.IntDistribution):
            return int(logged)
        if isinstance(d, optuna.distributions.FloatDistribution):
            return float(logged)
        return logged


@dataclass
class TrialRecord:
    trial_id: str
    run_id: str
    state: str  # a TrialState's value, or "running" while its run has none
    params: dict[str, Any]  # every sampled and fixed param
    curve: list[tuple[int, float]]  # (epoch, objective), by epoch
    restarts: int = 0
    costs: dict[str, float] = field(default_factory=dict)  # COST_METRICS, at its last epoch
    error: str = ""
    finals: dict[str, float] = field(default_factory=dict)  # each objective at its last epoch
    pareto: bool = False  # several objectives: on the Pareto front (raysearch.pareto)

    @property
    def epochs(self) -> int:
        return len(self.curve)

    @property
    def last(self) -> float | None:
        return self.curve[-1][1] if self.curve else None

    def best(self, mode: str) -> tuple[int, float] | None:
        """(epoch, value) of its best epoch; the first of equal ones."""
        finite = [(e, v) for e, v in self.curve if math.isfinite(v)]
        if not finite:
            return None
        return (min if mode == "min" else max)(finite, key=lambda ev: ev[1])


@dataclass
class SearchRecord:
    info: SearchInfo
    run_id: str  # the search's run
    status: str  # its MLflow status: RUNNING, FINISHED, KILLED, ...
    trials: list[TrialRecord]  # in the order they started
    best_trial_id: str | None
    test_metrics: dict[str, float]

    def ranked(self) -> list[TrialRecord]:
        """Trials with a finite objective, best first."""
        scored = [t for t in self.trials if t.best(self.info.mode)]
        return sorted(scored, key=lambda t: t.best(self.info.mode)[1],
                      reverse=self.info.mode == "max")


def log_info(client: MlflowClient, run_id: str, info: SearchInfo) -> None:
    client.log_dict(run_id, info.to_json(), SEARCH_FILE)


def load(client: MlflowClient, name: str, run_id: str | None = None) -> SearchRecord:
    """The search named `name` in the store of `client`: its run `run_id`, else its latest."""
    experiment = client.get_experiment_by_name(name)
    only = f" and attributes.run_id = '{run_id}'" if run_id else ""
    runs = [] if experiment is None else client.search_runs(
        [experiment.experiment_id], f"tags.`raysearch.role` = 'search'{only}",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        known = sorted(e.name for e in client.search_experiments() if e.name != "Default")
        raise ReportError(f"no search named {name!r} in the MLflow store "
                          f"{client.tracking_uri} (its searches: {', '.join(known) or 'none'})")
    run = runs[0]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, SEARCH_FILE, tmp)
        except (OSError, MlflowException):
            raise ReportError(f"search {name!r}: its run {run.info.run_id} has no "
                              f"{SEARCH_FILE} (it ran before raysearch recorded it); run it "
                              "again to report it") from None
        info = SearchInfo.from_json(json.loads(Path(path).read_text()))
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'",
        order_by=["attributes.start_time ASC"], max_results=50_000)
    trials = []
    for child in children:
        tags, metrics = child.data.tags, child.data.metrics
        history = client.get_metric_history(child.info.run_id, info.metric)
        curve = sorted({int(m.step): float(m.value) for m in history}.items())
        trials.append(TrialRecord(
            trial_id=tags.get(tracking.TRIAL_TAG, child.info.run_id),
            run_id=child.info.run_id,
            state=tags.get(tracking.STATE_TAG, "running"),
            params={k: info.parse(k, v) for k, v in child.data.params.items()},
            curve=curve, restarts=int(tags.get(tracking.RESTARTS_TAG, 0)),
            costs={k: metrics[k] for k in COST_METRICS if k in metrics},
            error=tags.get(tracking.ERROR_TAG, ""),
            finals={m: metrics[m] for m, _ in info.objectives if m in metrics},
            pareto=tags.get(tracking.PARETO_TAG) == "true"))
    test = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    return SearchRecord(info, run.info.run_id, run.info.status, trials,
                        run.data.tags.get("best_trial_id"), test)


def rows(record: SearchRecord) -> list[dict[str, Any]]:
    """A row per trial, as trials.csv and trials.json hold them."""
    metric, mode = record.info.metric, record.info.mode
    params = sorted({k for t in record.trials for k in t.params})
    out = []
    for t in record.trials:
        best = t.best(mode)
        out.append({
            "search": record.info.name, "trial_id": t.trial_id, "run_id": t.run_id,
            "state": t.state, "model": record.info.model,
            **{p: t.params.get(p) for p in params},
            f"{metric}_best": best[1] if best else None, "best_epoch": best[0] if best else None,
            f"{metric}_last": t.last, "epochs": t.epochs, "restarts": t.restarts,
            **({f"{m}_last": t.finals.get(m) for m, _ in record.info.objectives}
               | {"pareto": t.pareto} if record.info.objectives else {}),
            **{c: t.costs.get(c) for c in COST_METRICS}, "error": t.error})
    return out


def write_table(all_rows: list[dict[str, Any]], out: Path, fmt: str) -> Path:
    """`out`/trials.csv or trials.json; a CSV's columns are every key any row has."""
    if fmt == "json":
        path = out / "trials.json"
        path.write_text(json.dumps(all_rows, indent=1, default=str))
        return path
    path = out / "trials.csv"
    columns = list(dict.fromkeys(k for row in all_rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in all_rows)
    return path

