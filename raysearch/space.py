"""A spec's params as an Optuna define-by-run space, and its sampler.

A param with `when:` is suggested only when its condition holds, so Optuna never sees (and
MLflow never logs) a value that the trial does not use.
"""

from typing import Any

import optuna

from raysearch.models import MODELS
from raysearch.spec import FAMILY, CategoricalParam, FloatParam, IntParam, Param, Spec


def condition_holds(param: Param, values: dict[str, Any]) -> bool:
    for name, allowed in (param.when or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if name not in values or values[name] not in allowed:
            return False
    return True


def in_dependency_order(params: dict[str, Param]) -> list[str]:
    """Each param after those its `when:` names (the spec has no cycles)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name not in done:
            for dep in params[name].when or {}:
                visit(dep)
            done.append(name)

    for name in params:
        visit(name)
    return done


def suggest(trial: optuna.Trial, name: str, param: Param) -> Any:
    if isinstance(param, CategoricalParam):
        return trial.suggest_categorical(name, param.choices)
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, step=param.step or 1, log=param.log)
    assert isinstance(param, FloatParam)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def distribution(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution `suggest` samples `param` from."""
    if isinstance(param, CategoricalParam):
        return optuna.distributions.CategoricalDistribution(param.choices)
    if isinstance(param, IntParam):
        return optuna.distributions.IntDistribution(param.low, param.high, log=param.log,
                                                    step=param.step or 1)
    return optuna.distributions.FloatDistribution(param.low, param.high, log=param.log,
                                                  step=param.step)


class DefineByRun:
    """The search space as a callable of an Optuna trial. A class, not a closure: Tune pickles
    the searcher, space included, into the experiment state it resumes from."""

    def __init__(self, spec: Spec):
        self.params = spec.params
        self.order = in_dependency_order(spec.params)
        self.fixed = dict(spec.fixed)
        self.model = spec.model

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.order:
            if condition_holds(self.params[name], values):
                values[name] = suggest(trial, name, self.params[name])
        # OptunaSearch adds the suggested values itself
        return self.fixed_for(values)

    def fixed_for(self, values: dict[str, Any]) -> dict[str, Any]:
        """The fixed values of a trial whose params are `values`: of a search across families,
        those of its family (its MLflow run logs no other's). A trial's config is its params
        and these."""
        # (a space pickled by a search begun before spaces knew their model: all fixed values)
        family = values.get(FAMILY, getattr(self, "model", None))
        if family is None:
            return self.fixed
        takes = MODELS[family].hyperparams.model_fields
        return {name: value for name, value in self.fixed.items() if name in takes}


def make_sampler(spec: Spec) -> optuna.samplers.BaseSampler:
    seed, kind = spec.search.seed, spec.search.sampler
    # Optuna's 10 random start-up trials would leave a short search no model-based trials.
    startup = min(10, max(1, spec.search.trials // 3))
    if kind == "tpe":
        # multivariate + group: Optuna's advice for conditional (define-by-run) spaces
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                          group=True)
    if kind == "nsga2":
        # generations of a quarter of the search (Optuna's 50 would leave most searches with
        # one random generation alone)
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=min(50, max(4, spec.search.trials // 4)))
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup,
                                            warn_independent_sampling=False)
    if kind == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup,
                                         warn_independent_sampling=False)
    if kind == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True,
                                          warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {kind!r}")
