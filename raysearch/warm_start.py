"""`search.warm_start: {from: [SEARCH, ...], top: K}`: a search that starts from earlier ones in
the same tracking store. Their ended trials, read back from MLflow as the report reads them
(report/records.py, report/study.py), are given to this search's study as finished trials, so
the sampler models them from its first suggestion; and their best K completed configurations
are enqueued, so they are this search's first trials.

Only searches of the same space qualify: the same searched params with the same distributions,
the same objective; otherwise one line names the search and the first param (or key) that
differs, before anything starts.
"""

from dataclasses import dataclass

import optuna
from mlflow import MlflowClient

from raysearch.report.records import ReportError, load
from raysearch.report.study import study_of
from raysearch.space import distribution
from raysearch.spec import Spec, SpecError


@dataclass(frozen=True)
class WarmTrials:
    trials: list[optuna.trial.FrozenTrial]  # every ended trial of the earlier searches
    first: list[dict]  # the params of their best `top`, best first


def _describe(d: optuna.distributions.BaseDistribution | None) -> str:
    return "not searched" if d is None else repr(d)


def warm_trials(spec: Spec, tracking_uri: str) -> WarmTrials | None:
    """The earlier searches' trials for `spec`, checked against its space. Raises SpecError."""
    warm = spec.search.warm_start
    if warm is None:
        return None
    client = MlflowClient(tracking_uri)
    ours = {name: distribution(p) for name, p in spec.params.items()}
    key = f"{spec.source}: search.warm_start.from"
    trials: list[optuna.trial.FrozenTrial] = []
    for name in warm.from_:
        try:
            record = load(client, name)
        except ReportError as e:
            raise SpecError(f"{key}: {e}") from None
        info = record.info
        if (info.metric, info.mode) != (spec.ranking().metric, spec.ranking().mode):
            raise SpecError(f"{key}: search {name!r} searched for {info.mode} {info.metric}, "
                            f"this one for {spec.ranking().mode} {spec.ranking().metric}: "
                            "their values do not compare")
        for param in sorted(set(ours) | set(info.distributions)):
            theirs, mine = info.distributions.get(param), ours.get(param)
            if theirs != mine:
                raise SpecError(f"{key}: search {name!r} and this one search params.{param} "
                                f"differently ({_describe(theirs)} there, {_describe(mine)} "
                                "here): only a search of the same space can warm-start one")
        for trial in study_of(record).trials:
            trial.user_attrs["search"] = name  # beside its trial_id and run_id there
            trials.append(trial)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    done.sort(key=lambda t: t.value, reverse=spec.ranking().mode == "max")
    return WarmTrials(trials, [dict(t.params) for t in done[:warm.top]])
