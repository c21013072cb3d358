"""The sections of a search-space file below its top level: objective, search, scheduler,
resources, data."""

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from raysearch.spec.errors import Problem
from raysearch.spec.params import Strict


class Objective(Strict):
    metric: str
    mode: Literal["min", "max"]


_BOUND = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*(\S+)\s*")


@dataclass(frozen=True)
class Bound:
    """A constraint on a reported metric, written `METRIC <= NUMBER` or `METRIC >= NUMBER`."""

    metric: str
    op: str  # "<=" or ">="
    value: float

    @classmethod
    def parse(cls, text: Any) -> "Bound":
        match = _BOUND.fullmatch(text) if isinstance(text, str) else None
        try:
            value = float(match.group(3)) if match else math.nan
        except ValueError:
            value = math.nan
        if match is None or not math.isfinite(value):
            raise ValueError(f"expected 'METRIC <= NUMBER' or 'METRIC >= NUMBER' (e.g. "
                             f"'params_total <= 2e6'), got {text!r}")
        return cls(match.group(1), match.group(2), value)

    def excess(self, metrics: dict[str, float]) -> float:
        """How far `metrics` are past the bound (Optuna's constraint value: <= 0 is met); a
        metric not reported fails it."""
        value = metrics.get(self.metric, math.nan)
        if not math.isfinite(value):
            return math.inf
        return value - self.value if self.op == "<=" else self.value - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


class Champion(Strict):
    """Which trial of a search with several objectives becomes the champion: of the Pareto
    front, those meeting `where` (default: the spec's constraints), the best on `metric`
    (default: the first objective)."""

    metric: str | None = None
    where: list[str] | None = None


class WarmStart(Strict):
    """Earlier searches (in the same tracking store) whose trials this one starts from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
    from_: list[str] = Field(alias="from", min_length=1)
    top: int = Field(3, ge=0)  # their best configurations, run first


class Search(Strict):
    trials: int = Field(10, ge=1)
    sampler: Literal["tpe", "nsga2", "random", "cmaes", "gp", "qmc"] = "tpe"
    seed: int | None = 0
    max_concurrent: int = Field(1, ge=1)
    # the Optuna study's SQL storage (optuna-dashboard reads it); default: an SQLite file in
    # <--storage>/<name>/optuna.db, which a bucket storage cannot hold
    storage: str | None = None
    # seconds from the search's start (a resumed one's: from its resume) after which no trial
    # starts; the running ones finish and the best found is promoted as usual
    time_budget_s: float | None = Field(None, gt=0)
    warm_start: WarmStart | None = None


class Scheduler(Strict):
    type: Literal["asha", "none"] = "asha"
    max_t: int = Field(10, ge=1)  # epochs (ASHA iterations) of a trial that is never stopped
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(3, gt=1)
    # a trial is stopped (as ASHA stops one) at its first epoch report past this many seconds
    # of its own (its `trial_s`, from its start in a pool)
    max_trial_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def check_grace(self) -> "Scheduler":
        if self.grace_period > self.max_t:
            raise Problem(("grace_period",),
                          f"grace_period ({self.grace_period}) exceeds max_t ({self.max_t})")
        return self


class Resources(Strict):
    workers: int = Field(2, ge=1)
    gpus_per_worker: float = Field(0, ge=0)
    cpus_per_worker: float = Field(1, gt=0)
    max_failures: int = Field(2, ge=0)  # restarts of a failed worker group, per trial
    # How long a trial waits for its workers before it fails: long enough for an autoscaler to
    # bring up a GPU node, short enough that a trial that can never start says so.
    start_timeout_s: float = Field(300, gt=0)
    # Trials run one after another on workers kept up for the whole search; false gives every
    # trial a fresh TorchTrainer (new processes, 10-30 s each to start)
    reuse_workers: bool = True


class DataSpec(Strict):
    """`data:` in the file is flat (name + the data set's keys); the keys live in `options`,
    validated and with defaults filled in."""
    name: str
    options: dict[str, Any] = {}

