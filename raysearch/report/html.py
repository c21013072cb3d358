"""One self-contained HTML page: plotly.js inlined once, figures as plotly divs, images as data
URIs. It opens offline and requests nothing from any host."""

import base64
import math
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from raysearch import progress
from raysearch.job import TrialState

STATE_COLOURS = {TrialState.COMPLETED.value: "#1f77b4", TrialState.STOPPED_EARLY.value: "#ff7f0e",
                 TrialState.FAILED.value: "#d62728"}
OTHER_COLOUR = "#7f7f7f"  # running, interrupted, discarded

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.text { text-align: left; }
.note { color: #666; font-style: italic; } pre { background: #f8f8f8; padding: 1em; }
img { max-width: 100%; } .wide { overflow-x: auto; }
"""


def fmt(value: Any) -> str:
    """A value as a table shows it: floats to 4 significant digits (1e-09, not 0)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10_000:
        value = int(value)  # a count MLflow stored as a float (params_total)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return progress.fmt(value)


def figure(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", margin={"t": 50, "b": 40})
    return fig.to_html(full_html=False, include_plotlyjs=False, default_height="460px",
                       config={"displaylogo": False})


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="text">{escape(fmt(v))}</td>' if isinstance(v, str)
            else f"<td>{escape(fmt(v))}</td>" for v in row) + "</tr>"
        for row in rows)
    return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'


def image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def section(title: str, *parts: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{''.join(parts)}</section>"


def page(title: str, intro: str, sections: Iterable[str]) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><h1>{escape(title)}</h1>"
            f"<p>{escape(intro)}</p>{''.join(sections)}</body></html>")


def log_scale_if_wide(fig: go.Figure, values: Iterable[float]) -> None:
    """A log y axis for values over more than two orders of magnitude (an NRMSE from 100 to
    1e-4: on a linear axis every good trial lies on zero)."""
    values = [v for v in values if math.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        fig.update_yaxes(type="log")


def curves(fig: go.Figure, trials: Iterable[Any], row: int | None = None,
           col: int | None = None, legend: bool = True) -> None:
    """Each trial's objective by epoch into `fig` (at subplot row, col), coloured by how the
    trial ended; one legend entry per end state."""
    shown: set[str] = set()
    for trial in trials:
        if not trial.curve:
            continue
        epochs, values = zip(*trial.curve, strict=True)
        fig.add_trace(go.Scatter(
            x=epochs, y=values, mode="lines+markers", name=trial.state,
            legendgroup=trial.state, showlegend=legend and trial.state not in shown,
            line={"color": STATE_COLOURS.get(trial.state, OTHER_COLOUR), "width": 1.5},
            marker={"size": 4}, hovertext=f"trial {trial.trial_id}", hoverinfo="text+x+y"),
            row=row, col=col)
        shown.add(trial.state)
