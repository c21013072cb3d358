"""Several searches on one data set side by side (an ESN, an LSTM and a GRU search, say):
comparison.html with the best objective of each, the objective against each trial's parameter
count and latency, and the learning curves of each search."""

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from raysearch.report import html
from raysearch.report.records import ReportError, SearchRecord
from raysearch.report.single import summary

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f")


def check_comparable(records: list[SearchRecord]) -> None:
    """One data set and one objective, or the comparison would mean nothing."""
    first = records[0].info
    for record in records[1:]:
        info = record.info
        if (info.data, info.data_options) != (first.data, first.data_options):
            raise ReportError(f"searches {first.name!r} and {info.name!r} ran on different data "
                              f"({first.data} {first.data_options} and {info.data} "
                              f"{info.data_options}); compare searches on one data set")
        if (info.metric, info.mode) != (first.metric, first.mode):
            raise ReportError(f"searches {first.name!r} and {info.name!r} have different "
                              f"objectives ({first.mode} {first.metric} and {info.mode} "
                              f"{info.metric})")


def best_per_search(records: list[SearchRecord]) -> go.Figure:
    names, values, labels = [], [], []
    for record in records:
        ranked = record.ranked()
        if ranked:
            names.append(record.info.name)
            values.append(ranked[0].best(record.info.mode)[1])
            labels.append(f"{record.info.model}, trial {ranked[0].trial_id}")
    metric = records[0].info.metric
    fig = go.Figure(go.Bar(x=names, y=values, text=labels,
                        marker_color=[COLOURS[i % len(COLOURS)] for i in range(len(names))]))
    html.log_scale_if_wide(fig, values)
    return fig.update_layout(title=f"best {metric} per search", yaxis_title=metric)


def against(records: list[SearchRecord], cost: str, title: str) -> go.Figure:
    """Each trial's best objective against one of its cost metrics, a colour per search."""
    fig = go.Figure()
    metric = records[0].info.metric
    for i, record in enumerate(records):
        trials = [t for t in record.ranked() if cost in t.costs]
        fig.add_trace(go.Scatter(
            x=[t.costs[cost] for t in trials], y=[t.best(record.info.mode)[1] for t in trials],
            mode="markers", name=record.info.name,
            marker={"color": COLOURS[i % len(COLOURS)], "size": 8},
            hovertext=[f"trial {t.trial_id} ({t.state})" for t in trials]))
    html.log_scale_if_wide(fig, [v for r in records for t in r.ranked()
                                 for v in [t.best(r.info.mode)[1]]])
    return fig.update_layout(title=title, xaxis_title=cost, yaxis_title=metric,
                             xaxis_type="log")


def curves_side_by_side(records: list[SearchRecord]) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(records), shared_yaxes=True,
                        subplot_titles=[r.info.name for r in records])
    for i, record in enumerate(records, start=1):
        html.curves(fig, record.trials, row=1, col=i, legend=i == 1)
    metric = records[0].info.metric
    fig.update_layout(title=f"{metric} by epoch, coloured by how each trial ended")
    fig.update_yaxes(title_text=metric, row=1, col=1)
    html.log_scale_if_wide(fig, [v for r in records for t in r.trials for _, v in t.curve])
    return fig


def write(records: list[SearchRecord], out: Path) -> Path:
    """`out`/comparison.html of `records` (checked comparable first)."""
    check_comparable(records)
    info = records[0].info
    rows = []
    for record in records:
        ranked = record.ranked()
        best = ranked[0] if ranked else None
        rows.append([record.info.name, record.info.model, len(record.trials),
                     best.best(info.mode)[1] if best else None,
                     best.trial_id if best else "",
                     best.costs.get("params_total") if best else None,
                     best.costs.get("latency_ms") if best else None])
    sections = [
        html.section("The searches", html.table(
            ["search", "model", "trials", f"best {info.metric}", "best trial", "its params_total",
             "its latency_ms"], rows), *[f"<p>{html.escape(r.info.name)}: "
                                         f"{html.escape(summary(r))}</p>" for r in records]),
        html.section("Best per search", html.figure(best_per_search(records))),
        html.section("Objective against size", html.figure(against(
            records, "params_total", f"{info.metric} against weights (each trial's best epoch)"))),
        html.section("Objective against latency", html.figure(against(
            records, "latency_ms", f"{info.metric} against latency per input (ms)"))),
        html.section("Learning curves", html.figure(curves_side_by_side(records))),
    ]
    path = out / "comparison.html"
    names = ", ".join(r.info.name for r in records)
    path.write_text(html.page(f"raysearch: {names}", f"{len(records)} searches on {info.data}, "
                              f"objective {info.metric} ({info.mode}).", sections))
    return path
