"""One search's report.html: its top trials, every trial's learning curve, Optuna's plots of
its study, and the champion's diagnostics."""

import logging
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
import optuna.visualization as vis
import plotly.graph_objects as go
from mlflow import MlflowClient
from optuna.trial import TrialState as OptunaState

from raysearch.job import FAMILY, TrialState
from raysearch.report import html
from raysearch.report.records import SearchRecord
from raysearch.report.study import study_of

TOP = 10  # trials in the table of the best


def summary(record: SearchRecord) -> str:
    info, trials = record.info, record.trials
    counts = {s: sum(t.state == s.value for t in trials) for s in
              (TrialState.COMPLETED, TrialState.STOPPED_EARLY, TrialState.FAILED)}
    text = (f"{info.model} on {info.data}, {len(trials)} trials ("
            f"{counts[TrialState.COMPLETED]} completed, {counts[TrialState.STOPPED_EARLY]} "
            f"stopped early, {counts[TrialState.FAILED]} failed), objective {info.metric} "
            f"({info.mode}).")
    ranked = record.ranked()
    if ranked:
        epoch, value = ranked[0].best(info.mode)
        text += f" Best: {value:.6g}, trial {ranked[0].trial_id} at epoch {epoch}."
    return text


def top_table(record: SearchRecord) -> str:
    info = record.info
    ranked = record.ranked()[:TOP]
    params = list(info.distributions)
    costs = [c for c in ("params_total", "latency_ms") if any(c in t.costs for t in ranked)]
    rows = [[t.trial_id, t.state, *t.best(info.mode)[::-1], t.epochs,
             *[t.params.get(p) for p in params], *[t.costs.get(c) for c in costs]]
            for t in ranked]
    return html.table(["trial", "state", info.metric, "at epoch", "epochs", *params, *costs],
                      rows)


def family_table(record: SearchRecord) -> str | None:
    """A search across model families: each family's trials and its best, best family first;
    None for a search of one family."""
    info = record.info
    choices = getattr(info.distributions.get(FAMILY), "choices", None)
    if not choices:
        return None
    costs = [c for c in ("params_total", "latency_ms") if any(c in t.costs for t in record.trials)]
    ranked = record.ranked()  # best first: each family's first is its best
    tops = {t.params.get(FAMILY): t for t in reversed(ranked)}
    # the families with a best in rank order, then those without
    order = [f for f in dict.fromkeys(t.params.get(FAMILY) for t in ranked) if f in choices]
    rows = []
    for family in [*order, *(f for f in choices if f not in order)]:
        trials = [t for t in record.trials if t.params.get(FAMILY) == family]
        counts = [sum(t.state == s.value for t in trials) for s in
                  (TrialState.COMPLETED, TrialState.STOPPED_EARLY, TrialState.FAILED)]
        best = tops.get(family)
        epoch, value = best.best(info.mode) if best else (None, None)
        rows.append([family, len(trials), *counts, value, best and best.trial_id, epoch,
                     *[best and best.costs.get(c) for c in costs]])
    return html.table(["model", "trials", "completed", "stopped early", "failed",
                       f"best {info.metric}", "best trial", "at epoch", *costs], rows)


def pareto_section(record: SearchRecord) -> str | None:
    """Several objectives: Optuna's Pareto-front plot of the trials that ran to the end (at
    their last epoch) and the front's trials; None for one objective."""
    objectives = record.info.objectives
    if not objectives:
        return None
    metrics = [m for m, _ in objectives]
    study = optuna.create_study(directions=["minimize" if mode == "min" else "maximize"
                                            for _, mode in objectives])
    for t in record.trials:
        if t.state == TrialState.COMPLETED.value and all(
                math.isfinite(t.finals.get(m, math.nan)) for m in metrics):
            study.add_trial(optuna.trial.create_trial(
                values=[t.finals[m] for m in metrics], user_attrs={"trial_id": t.trial_id}))
    front = [t for t in record.trials if t.pareto]
    parts = [html.table(["trial", *metrics], [[t.trial_id, *[t.finals.get(m) for m in metrics]]
                                              for t in front])]
    if 2 <= len(metrics) <= 3 and study.trials:
        parts.append(html.figure(vis.plot_pareto_front(study, target_names=metrics)))
    return html.section(f"Pareto front ({len(front)} trials, tagged raysearch.pareto)", *parts)


def learning_curves(record: SearchRecord) -> go.Figure:
    fig = go.Figure()
    html.curves(fig, record.trials)
    fig.update_layout(title=f"{record.info.metric} by epoch, coloured by how each trial ended",
                      xaxis_title="epoch", yaxis_title=record.info.metric)
    html.log_scale_if_wide(fig, [v for t in record.trials for _, v in t.curve])
    return fig


def optuna_plots(study: optuna.Study, metric: str, values: list[float]) -> list[str]:
    """Optuna's plots of the study, each as a section; a plot the study cannot give yet (too
    few completed trials, one searched param) says why instead. `values`: every objective
    value reported, to choose the value axes' scale."""
    complete = len(study.get_trials(states=(OptunaState.COMPLETE,)))
    plots: list[tuple[str, Callable[[], go.Figure], str | None]] = [
        ("Optimization history",
         lambda: scaled(vis.plot_optimization_history(study, target_name=metric)),
         None if complete else "no trial completed"),
        ("Intermediate values (ASHA's stops: the curves that end early)",
         lambda: scaled(vis.plot_intermediate_values(study)),
         None if any(t.intermediate_values for t in study.trials) else "no epoch reported"),
        ("Parameter importances (fANOVA)",
         lambda: vis.plot_param_importances(
             study, target_name=metric,
             evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)),
         None if complete >= 2 else "needs two completed trials"),
        ("Parallel coordinates",
         lambda: vis.plot_parallel_coordinate(study, target_name=metric),
         None if complete else "no trial completed"),
        ("Slice", lambda: vis.plot_slice(study, target_name=metric),
         None if complete else "no trial completed"),
    ]
    def scaled(fig: go.Figure) -> go.Figure:
        html.log_scale_if_wide(fig, values)
        return fig

    sections = []
    for title, draw, missing in plots:
        if missing is None:
            try:
                sections.append(html.section(title, html.figure(draw())))
                continue
            except (ValueError, RuntimeError) as e:  # Optuna's refusals, e.g. one value only
                missing = str(e).splitlines()[0]
        sections.append(html.section(title, html.note(f"not drawn: {missing}")))
    return sections


def diagnostics(client: MlflowClient, record: SearchRecord) -> str:
    """The champion's diagnostics the search logged on its run, and its test metrics."""
    parts = []
    if record.test_metrics:
        parts.append(html.table(list(record.test_metrics), [list(record.test_metrics.values())]))
    if not any(a.path == "diagnostics" for a in client.list_artifacts(record.run_id)):
        return html.section("The champion on the test split",
                            *parts, html.note("no diagnostics were logged"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(client.download_artifacts(record.run_id, "diagnostics", tmp))
        for file in sorted(folder.iterdir()):
            if file.suffix == ".png":
                parts.append(html.image(file))
            elif file.suffix == ".txt":
                parts.append(f"<pre>{html.escape(file.read_text())}</pre>")
    title = (f"The champion (trial {record.best_trial_id}) on the test split"
             if record.best_trial_id else "The champion on the test split")
    return html.section(title, *parts)


def write(client: MlflowClient, record: SearchRecord, out: Path) -> Path:
    """`out`/report.html for `record`."""
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # no "A new study created in memory"
    try:
        study, front = study_of(record), pareto_section(record)
    finally:
        optuna_logger.setLevel(level)
    families = family_table(record)
    sections = [
        *([front] if front else []),
        *([html.section("Model families compared", families)] if families else []),
        html.section(f"Top {TOP} trials", top_table(record)),
        html.section("Learning curves", html.figure(learning_curves(record))),
        *optuna_plots(study, record.info.metric, [v for t in record.trials for _, v in t.curve]),
        diagnostics(client, record),
    ]
    path = out / "report.html"
    path.write_text(html.page(f"raysearch: {record.info.name}", summary(record), sections))
    return path
