"""What a search shows while it runs, in place of Tune's per-trial tables.

In a terminal: one table that updates in place (rich's Live), a row per trial with its state,
sampled params, latest and best objective, epochs and time, the running and the best trials on
screen. Elsewhere (CI, a job's logs): one plain line per trial event (started, ended).
"""

import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from raysearch.job import TrialState
from raysearch.spec import Spec

RUNNING = "running"
# what header() says of the best trial, as `raysearch jobs` finds it in a job's logs
BEST = re.compile(r"trials done, best (\w+) (\S+) \(trial (\w+)\)")


def fmt(value: Any) -> str:
    """A value with 4 significant digits (a ridge of 1e-09 stays 1e-09, not 0)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass
class Row:
    trial_id: str
    params: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    state: str = RUNNING
    latest: float | None = None
    best: float | None = None
    epochs: int = 0

    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def status(self) -> str:
        if self.state == TrialState.STOPPED_EARLY:
            return f"stopped early at epoch {self.epochs}"
        return str(self.state)


class Progress(tune.Callback):
    """Tune callback, on the driver. `states` is how each trial ended, as raysearch's MLflow
    callback (called before this one) recorded it: completed, stopped early or failed."""

    def __init__(self, spec: Spec, states: Mapping[str, TrialState], console: Console,
                 live: bool, links: tuple[str, ...] = ()):
        self.name, self.total = spec.name, spec.search.trials
        self.metric, self.mode = spec.ranking().metric, spec.ranking().mode
        self.searched = list(spec.params)
        self.states, self.console, self.links = states, console, links
        self.rows: dict[str, Row] = {}
        # Tune's callbacks add rows while Live's thread draws them
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=2,
                         transient=False) if live else None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment's state; a resumed search brings its
        # own, so the terminal's handles need not travel
        return {**self.__dict__, "console": None, "live": None, "lock": None}

    def better(self, a: float, b: float | None) -> bool:
        return b is None or (a < b if self.mode == "min" else a > b)

    def setup(self, **info: Any) -> None:
        if self.live:
            self.live.start()

    def row(self, trial: Any) -> Row:
        if trial.trial_id not in self.rows:
            with self.lock:
                self.rows[trial.trial_id] = Row(trial.trial_id, {
                    k: trial.config[k] for k in self.searched if k in trial.config})
        return self.rows[trial.trial_id]

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # a resumed search's trials that had ended: rows for them, without lines
        for trial in trials:
            if trial.trial_id not in self.rows and trial.status in ("TERMINATED", "ERROR"):
                row = self.row(trial)
                row.ended = row.started
                self.ended(row, trial)
                row.epochs = int(trial.last_result.get("epoch", 0))
                value = trial.last_result.get(self.metric)  # its last epoch's: Tune keeps that
                if isinstance(value, (int, float)) and math.isfinite(value):
                    row.latest = row.best = float(value)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        row = self.row(trial)
        row.started, row.ended, row.state = time.monotonic(), None, RUNNING
        params = ", ".join(f"{k}={fmt(v)}" for k, v in row.params.items())
        self.line(f"trial {trial.trial_id} started" + (f": {params}" if params else ""))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        row = self.row(trial)
        row.epochs = max(row.epochs, int(result.get("epoch", 0)))
        value = result.get(self.metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            row.latest = float(value)
            if self.better(row.latest, row.best):
                row.best = row.latest

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end(trial)

    def ended(self, row: Row, trial: Any) -> None:
        failed = trial.status == "ERROR"
        row.state = self.states.get(trial.trial_id) or (
            TrialState.FAILED if failed else TrialState.COMPLETED)

    def end(self, trial: Any) -> None:
        row = self.row(trial)
        row.ended = time.monotonic()
        self.ended(row, trial)
        scores = f": {self.metric} {fmt(row.latest)} (best {fmt(row.best)})" if row.epochs else ""
        self.line(f"trial {trial.trial_id} {row.status()}{scores} in {row.elapsed():.1f} s"
                  f" · {self.header()}")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.live:
            self.live.refresh()
            self.live.stop()

    def line(self, text: str) -> None:
        if not self.live:
            self.console.print(text, highlight=False, markup=False)

    def snapshot(self) -> list[Row]:
        with self.lock:
            return list(self.rows.values())

    def leader(self) -> Row | None:
        best = None
        for row in self.snapshot():
            if row.best is not None and self.better(row.best, best.best if best else None):
                best = row
        return best

    def header(self) -> str:
        rows = self.snapshot()
        # and those Tune never saw: ended in the study in the second before a driver died
        done = (sum(row.state != RUNNING for row in rows)
                + len(set(self.states) - {row.trial_id for row in rows}))
        leader = self.leader()
        best = (f"best {self.metric} {fmt(leader.best)} (trial {leader.trial_id})" if leader
                else f"no {self.metric} yet")
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        return f"{done}/{self.total} trials done, {best}, {minutes}:{seconds:02d} elapsed"

    def render(self) -> Group:
        rows = self.snapshot()
        table = Table(title=None, expand=False, pad_edge=False)
        for column in ("trial", "state", *self.searched, f"latest {self.metric}",
                       f"best {self.metric}", "epochs", "time"):
            text = column in ("trial", "state")
            table.add_column(column, justify="left" if text else "right", no_wrap=text)
        sign = 1 if self.mode == "min" else -1
        ordered = sorted(rows, key=lambda r: (
            r.state != RUNNING, r.best is None, sign * (r.best or 0.0)))
        room = max(3, self.console.height - 8)  # the running and best trials stay on screen
        for row in ordered[:room]:
            table.add_row(row.trial_id, row.status(), *[fmt(row.params.get(k, ""))
                                                        for k in self.searched],
                          fmt(row.latest) if row.latest is not None else "",
                          fmt(row.best) if row.best is not None else "",
                          str(row.epochs), f"{row.elapsed():.0f} s")
        hidden = len(ordered) - room
        parts = [Text(f"{self.name}: {self.header()}", style="bold")]
        parts += [Text(link) for link in self.links]
        parts.append(table)
        if hidden > 0:
            parts.append(Text(f"... and {hidden} more trials", style="dim"))
        return Group(*parts)
