"""What a spec's params and fixed values must be, against the model families they are for.

A search may search the family itself (`params.model`, a categorical of family names): then each
param is sampled only for the families its conditions allow (`when: {model: [lstm, gru]}`, or
a condition on a param that is itself only some families'), and must be one every such family
takes, with values each accepts.
"""

from typing import Any, get_args

from pydantic import BaseModel

from raysearch.job import FAMILY
from raysearch.models import MODELS
from raysearch.spec.errors import Key, Problem, hint, listed, validated
from raysearch.spec.params import CategoricalParam, FloatParam, Param
from raysearch.spec.sections import Bound, Resources


def check_families(model: str | None, params: dict[str, Param]) -> tuple[str, ...]:
    """The families the search trains: `model`, or the choices of `params.model`."""
    searched = params.get(FAMILY)
    if searched is None:
        if model is None:
            raise Problem(("model",), "missing required key (a model family, or params.model "
                          "to search across families)")
        if model not in MODELS:
            raise Problem(("model",), f"unknown model {model!r}{hint(model, list(MODELS))} "
                          f"(known: {listed(MODELS)})")
        return (model,)
    path = ("params", FAMILY)
    if model is not None:
        raise Problem(("model",), "params.model searches the model family: give either model "
                      "or params.model")
    if not isinstance(searched, CategoricalParam):
        raise Problem(path + ("type",), "the model family is searched as a categorical "
                      "(type: categorical, choices: [esn, lstm, ...])")
    if searched.when:
        raise Problem(path + ("when",), "every trial has a model family: it cannot depend on "
                      "another param")
    for i, choice in enumerate(searched.choices):
        if choice not in MODELS:
            raise Problem(path + ("choices", i), f"unknown model {choice!r}"
                          f"{hint(str(choice), list(MODELS))} (known: {listed(MODELS)})")
    return tuple(searched.choices)


def family_path(model: str | None, params: dict[str, Param], family: str) -> Key:
    """Where the spec names `family`, for a problem with it."""
    if model is not None:
        return ("model",)
    return ("params", FAMILY, "choices", params[FAMILY].choices.index(family))


def families_of(name: str, params: dict[str, Param], families: tuple[str, ...]
                ) -> tuple[str, ...]:
    """The families whose trials sample param `name` (the conditions are checked already)."""
    found = set(families)
    for other, allowed in (params[name].when or {}).items():
        if other == FAMILY:
            found &= set(allowed if isinstance(allowed, list) else [allowed])
        else:
            found &= set(families_of(other, params, families))
    return tuple(f for f in families if f in found)


def check_hyperparams(families: tuple[str, ...], params: dict[str, Param],
                      fixed: dict[str, Any]) -> None:
    """Every name is one the families it is for take, and every value a param can take is one
    each accepts. A fixed value goes to the families that take it."""
    takes = {f: MODELS[f].hyperparams for f in families}
    known = list(dict.fromkeys(n for cls in takes.values() for n in cls.model_fields))
    which = f"model '{families[0]}'" if len(families) == 1 else f"models {listed(families)}"
    for section, names in (("params", params), ("fixed", fixed)):
        for name in names:
            if section == "params" and name == FAMILY:
                continue
            if name in Resources.model_fields:
                raise Problem((section, name), f"'{name}' is a key of resources, not a "
                              "hyperparameter: a search's trials share its warm workers, so "
                              "they all have its one resources shape (run one search per shape)")
            if name not in known:
                raise Problem((section, name), f"unknown hyperparameter for {which}"
                              f"{hint(name, known)} (known: {listed(known)})")
    for name in fixed:
        if name in params:
            raise Problem(("fixed", name), "also in params: a hyperparameter is either "
                          "searched or fixed")
    for cls in takes.values():
        validated(cls, {k: v for k, v in fixed.items() if k in cls.model_fields}, ("fixed",))
    for name, param in params.items():
        if name == FAMILY:
            continue
        scope = families_of(name, params, families)
        if not scope:
            raise Problem(("params", name, "when"), "no model family of the search samples it "
                          "(its conditions exclude every one)")
        lacking = [f for f in scope if name not in takes[f].model_fields]
        if lacking:
            able = [f for f in families if name in takes[f].model_fields]
            raise Problem(("params", name), f"model '{lacking[0]}' does not take '{name}': "
                          f"limit it with when: {{model: [{listed(able)}]}}")
        for family in scope:
            _check_values(takes[family], name, param)


def _check_values(cls: type[BaseModel], name: str, param: Param) -> None:
    path = ("params", name)
    if isinstance(param, CategoricalParam):
        for i, choice in enumerate(param.choices):
            validated(cls, {name: choice}, path + ("choices", i), one_value=True)
        return
    kinds = {cls.model_fields[name].annotation, *get_args(cls.model_fields[name].annotation)}
    if float not in kinds and (int not in kinds or isinstance(param, FloatParam)):
        fit = "int" if int in kinds else "categorical"
        raise Problem(path + ("type",), f"'{name}' does not take {param.type} values: "
                      f"use type: {fit}")
    for end in ("low", "high"):
        validated(cls, {name: getattr(param, end)}, path + (end,), one_value=True)


def check_objectives(spec: Any, reported: tuple[str, ...], data: str) -> None:
    """Each objective, constraint and the champion's metric is one the trials report, and the
    sampler can search several objectives when there are several. `spec`: the Spec."""
    one = len(spec.objective) == 1
    seen: list[str] = []
    for i, objective in enumerate(spec.objective):
        path = ("objective",) if one else ("objective", i)
        if objective.metric not in reported:
            raise Problem(path + ("metric",), f"data set '{data}' does not report "
                          f"{objective.metric!r} (it reports: {listed(reported)})")
        if objective.metric in seen:
            raise Problem(path + ("metric",), f"{objective.metric!r} is an objective already")
        seen.append(objective.metric)
    if not one and spec.search.sampler == "cmaes":
        raise Problem(("search", "sampler"), "cmaes searches one objective; for several use "
                      "tpe, nsga2, gp, random or qmc")
    if not one and spec.search.warm_start is not None:
        raise Problem(("search", "warm_start"), "a warm start reads earlier searches of one "
                      "objective; a search of several starts without one")
    if spec.constraints and spec.search.warm_start is not None:
        raise Problem(("search", "warm_start"), "a warm start's earlier trials carry no "
                      "constraint values, which the sampler needs of every trial: drop "
                      "constraints or the warm start")
    for section, texts in (("constraints", spec.constraints),
                           ("champion", spec.champion.where or [])):
        for i, text in enumerate(texts):
            path = (section, i) if section == "constraints" else ("champion", "where", i)
            try:
                bound = Bound.parse(text)
            except ValueError as e:
                raise Problem(path, str(e)) from None
            if bound.metric not in reported:
                raise Problem(path, f"trials do not report {bound.metric!r}"
                              f"{hint(bound.metric, reported)} (they report: {listed(reported)})")
    metric = spec.champion.metric
    if metric is not None and metric not in seen:
        raise Problem(("champion", "metric"), f"{metric!r} is not an objective (objectives: "
                      f"{listed(seen)}): the champion is one of the Pareto front, best on one "
                      "of them")


def check_causal(params: dict[str, Param], fixed: dict[str, Any]) -> None:
    """A forecaster reads only the past: a bidirectional recurrent layer's backward direction
    would read, at each step, the very values it is to predict."""
    param = params.get("bidirectional")
    if fixed.get("bidirectional") is True:
        path: Key = ("fixed", "bidirectional")
    elif isinstance(param, CategoricalParam) and True in param.choices:
        path = ("params", "bidirectional", "choices", param.choices.index(True))
    else:
        return
    raise Problem(path, "a bidirectional model reads the steps after the one it forecasts, "
                  "which hold its targets; forecasting takes bidirectional: false")


def check_conditions(params: dict[str, Param]) -> None:
    """`when:` names another categorical param and some of its choices, and no cycle."""
    for name, param in params.items():
        for other, allowed in (param.when or {}).items():
            path = ("params", name, "when", other)
            target = params.get(other)
            if other == name:
                raise Problem(path, "a param cannot depend on itself")
            if target is None:
                raise Problem(path, f"no param named {other!r}{hint(other, list(params))} "
                              f"(params: {listed(params)})")
            if not isinstance(target, CategoricalParam):
                raise Problem(path, f"'{other}' is of type {target.type}; `when` needs a "
                              "categorical param")
            values = allowed if isinstance(allowed, list) else [allowed]
            if not values:
                raise Problem(path, f"names no choice of '{other}'")
            wrong = [v for v in values if v not in target.choices]
            if wrong:
                raise Problem(path, f"{wrong[0]!r} is not a choice of '{other}' "
                              f"(choices: {listed(target.choices)})")
    for name in params:
        cycle = _cycle_from(name, params, [])
        if cycle:
            raise Problem(("params", name, "when"), "conditions go round in a circle: "
                          + " -> ".join(cycle))


def _cycle_from(name: str, params: dict[str, Param], trail: list[str]) -> list[str] | None:
    if name in trail:
        return [*trail[trail.index(name):], name]
    for other in params[name].when or {}:
        cycle = _cycle_from(other, params, [*trail, name])
        if cycle:
            return cycle
    return None
