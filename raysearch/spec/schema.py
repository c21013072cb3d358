"""The spec: a search-space file's top level, checked against the model and data registries."""

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from raysearch.costs import COST_METRICS
from raysearch.data import DATASETS
from raysearch.models import MODELS
from raysearch.spec.checks import (
    FAMILY,
    check_causal,
    check_conditions,
    check_families,
    check_hyperparams,
    check_objectives,
    family_path,
)
from raysearch.spec.errors import Problem, SpecError, hint, listed, validated
from raysearch.spec.params import Param, Strict
from raysearch.spec.sections import (
    Bound,
    Champion,
    DataSpec,
    Objective,
    Resources,
    Scheduler,
    Search,
)


class Spec(Strict):
    name: str
    model: str | None = None  # every trial's family; None when params.model searches it
    data: DataSpec
    # one objective, or several (a list): Optuna searches their Pareto front
    objective: list[Objective] = Field(min_length=1)
    # `METRIC <= NUMBER` or `>=`: given to the sampler (Optuna's Trial.set_constraint), and the
    # champion must meet them
    constraints: list[str] = []
    champion: Champion = Field(default_factory=Champion)
    search: Search = Field(default_factory=Search)
    scheduler: Scheduler = Field(default_factory=Scheduler)
    resources: Resources = Field(default_factory=Resources)
    params: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    source: Path = Field(Path("<spec>"), exclude=True)  # the file it came from; no user key

    @field_validator("name")
    @classmethod
    def check_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError("use only letters, digits, '_', '.' and '-' (it names the MLflow "
                             "experiment and registered model)")
        return name

    @field_validator("objective", mode="before")
    @classmethod
    def one_or_several(cls, objective: Any) -> Any:
        return [objective] if isinstance(objective, dict) else objective

    @model_validator(mode="after")
    def check_against_registries(self) -> "Spec":
        families = check_families(self.model, self.params)
        if self.data.name not in DATASETS:
            raise Problem(("data", "name"), f"unknown data set {self.data.name!r}"
                          f"{hint(self.data.name, list(DATASETS))} (known: {listed(DATASETS)})")
        dataset = DATASETS[self.data.name]
        known = ["name", *dataset.options.model_fields]
        for key in self.data.options:
            if key not in known:
                raise Problem(("data", key), f"unknown key for data set '{dataset.name}'"
                              f"{hint(key, known)} (known: {listed(known)})")
        self.data.options = validated(dataset.options, self.data.options, ("data",)).model_dump()
        tasks = self.tasks()
        metrics: dict[str, None] = {}
        for name in families:
            family, path = MODELS[name], family_path(self.model, self.params, name)
            if dataset.kind not in family.inputs or not tasks & family.tasks:
                needs = f"{listed(sorted(family.inputs))} data for {listed(sorted(family.tasks))}"
                raise Problem(path, f"model '{name}' needs {needs}; data set "
                              f"'{dataset.name}' is {dataset.kind} {listed(sorted(tasks))}")
            if self.data.options.get("mode") == "generative" and not family.generates:
                able = listed(name for name, f in MODELS.items() if f.generates)
                raise Problem(("data", "mode") if self.model else path, "generative mode runs "
                              f"a model on its own output; only model '{able}' does (use mode: "
                              "direct)")
            metrics |= dict.fromkeys(dataset.metrics(tasks & family.tasks))
        check_objectives(self, (*metrics, "train_loss", *COST_METRICS), dataset.name)
        check_conditions(self.params)
        check_hyperparams(families, self.params, self.fixed)
        if "forecasting" in tasks:
            check_causal(self.params, self.fixed)
        return self

    def ranking(self) -> Objective:
        """The objective trials are ranked by (for the champion, the checkpoints a trial keeps,
        the live view): the only one, or of several `champion.metric`'s (default the first)."""
        wanted = self.champion.metric or self.objective[0].metric
        return next(o for o in self.objective if o.metric == wanted)

    def several(self) -> bool:
        return len(self.objective) > 1

    def bounds(self) -> tuple[Bound, ...]:
        """The constraints, parsed."""
        return tuple(Bound.parse(text) for text in self.constraints)

    def champion_bounds(self) -> tuple[Bound, ...]:
        """What the champion must meet: `champion.where`, else the constraints."""
        where = self.champion.where
        return tuple(Bound.parse(t) for t in where) if where is not None else self.bounds()

    def families(self) -> tuple[str, ...]:
        """The model families its trials train: `model`, or those params.model searches."""
        return (self.model,) if self.model else tuple(self.params[FAMILY].choices)

    def models_text(self) -> str:
        """The family, or the searched ones ('esn | lstm | gru'), for what the user reads."""
        return " | ".join(self.families())

    def check_task(self, task: str) -> None:
        """Once the data is read (a table's task is known then), the objective is one it
        reports."""
        reported = (*DATASETS[self.data.name].metrics(frozenset({task})), "train_loss",
                    *COST_METRICS)
        for i, objective in enumerate(self.objective):
            if objective.metric not in reported:
                key = "objective.metric" if len(self.objective) == 1 else f"objective.{i}.metric"
                raise SpecError(f"{self.source}: {key}: {self.data.options.get('path')} is learnt "
                                f"for {task}, which reports {', '.join(reported)}, not "
                                f"{objective.metric!r} (or set data.task)")

    def tasks(self) -> frozenset[str]:
        """What the data set may be learnt for: a table's task when `data.task` names it."""
        declared = self.data.options.get("task")
        return frozenset({declared}) if declared else DATASETS[self.data.name].tasks

    def data_options(self) -> BaseModel:
        return DATASETS[self.data.name].options.model_validate(self.data.options)
