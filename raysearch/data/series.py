"""`series`: one measured, possibly multivariate series from a file, forecast `horizon` steps
ahead exactly as mackey_glass is: split in time (train, then validation, then test; never
shuffled), direct mode for every sequence family, generative mode for the ESN.

- CSV with a header row: `target` names the columns predicted, `inputs` those read (the
  targets when not given); `time` names a column that is only checked to increase (numbers, or
  ISO dates and times).
- .npy: a (steps,) or (steps, columns) array; its columns are named "0", "1", ...

Values are used as they are (not standardized), as mackey_glass's are: scale a series whose
values are far from 1, or use an ESN's input_scaling. Bad data (a missing column, a cell that
is not a finite number, time out of order, a series too short for its splits) is one line
naming the file, its line and column.
"""

import csv
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from raysearch.data.base import DataError, DataInfo, Split

MIN_STEPS = 10  # of the smallest split


class SeriesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    path: str  # relative to the working directory
    target: list[str] | None = None  # columns predicted; default: every column but `time`
    inputs: list[str] | None = None  # columns read; default: the targets
    time: str | None = None  # a column checked to increase, not read
    mode: Literal["direct", "generative"] = "direct"  # as mackey_glass's
    horizon: int = Field(1, ge=1)
    free_runs: int = Field(20, ge=1)
    warmup: int = Field(100, ge=0)
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)

    @model_validator(mode="after")
    def generative_reads_what_it_predicts(self) -> "SeriesOptions":
        if self.mode == "generative" and self.inputs is not None and self.inputs != self.target:
            raise ValueError("generative mode runs the model on its own output, so its inputs "
                             "are its targets: drop data.inputs")
        return self


def _instant(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        # a time without a zone read as UTC: in local time, the hour a clock is put back
        # repeats and correctly ordered steps would read as out of order
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def read_csv(path: Path, options: SeriesOptions) -> dict[str, np.ndarray]:
    """The columns the options name, checked cell by cell."""
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header:
            raise DataError(f"{path}: empty; a series CSV has a header row, then a row per step")
        header = [h.strip() for h in header]
        target = options.target or [h for h in header if h != options.time]
        if not target:
            raise DataError(f"{path}:1: no column to forecast besides the time column "
                            f"{options.time!r}")
        if options.time in [*target, *(options.inputs or [])]:
            raise DataError(f"{path}: column {options.time!r} is the time column (data.time) "
                            "and cannot also be read or forecast")
        wanted = [*target, *(options.inputs or []), *([options.time] if options.time else [])]
        for name in wanted:
            if name not in header:
                raise DataError(f"{path}:1: no column {name!r} (its columns: "
                                f"{', '.join(header)})")
        index = {name: header.index(name) for name in dict.fromkeys(wanted)}
        values: dict[str, list[float]] = {name: [] for name in index}
        lines: list[int] = []  # the file's line of each step
        last = None
        for line, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue  # a blank line, as at a file's end
            lines.append(line)
            for name, i in index.items():
                cell = row[i].strip() if i < len(row) else ""
                if name == options.time:
                    try:
                        instant = _instant(cell)
                    except ValueError:
                        raise DataError(f"{path}:{line}: column {name!r}: {cell!r} is neither "
                                        "a number nor an ISO date") from None
                    if last is not None and instant <= last:
                        raise DataError(f"{path}:{line}: column {name!r}: {cell!r} is not "
                                        "after the line before; a series must be in time "
                                        "order")
                    last = instant
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise DataError(f"{path}:{line}: column {name!r}: {cell!r} is not a "
                                    "number") from None
                if not math.isfinite(value):
                    raise DataError(f"{path}:{line}: column {name!r}: {cell} is not finite")
                values[name].append(value)
    with np.errstate(over="ignore"):  # a value beyond float32 is said below, with its line
        columns = {name: np.asarray(v, dtype=np.float32) for name, v in values.items()
                   if name != options.time}
    for name, column in columns.items():
        big = np.flatnonzero(~np.isfinite(column))
        if len(big):
            raise DataError(f"{path}:{lines[big[0]]}: column {name!r}: {values[name][big[0]]:g} "
                            "is too large for a 32-bit float")
    return columns


def read_npy(path: Path, options: SeriesOptions) -> dict[str, np.ndarray]:
    array = np.load(path, allow_pickle=False)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: a series .npy holds a (steps,) or (steps, columns) array of "
                        f"numbers; this one is {array.dtype} of shape {array.shape}")
    if options.time is not None:
        raise DataError(f"{path}: data.time names a CSV column; a .npy has no time column")
    if array.shape[1] == 0:
        raise DataError(f"{path}: the array has no columns: {array.shape}")
    with np.errstate(over="ignore"):  # beyond float32 is infinite: refused below
        cast = array.astype(np.float32)
    columns = {str(i): cast[:, i] for i in range(array.shape[1])}
    for name in [*(options.target or []), *(options.inputs or [])]:
        if name not in columns:
            raise DataError(f"{path}: no column {name!r} (a .npy's columns are named by "
                            f"index: {', '.join(columns)})")
    bad = np.argwhere(~np.isfinite(cast))
    if len(bad):
        step, column = bad[0]
        raise DataError(f"{path}: step {step}, column '{column}': {array[step, column]} is "
                        "not a finite 32-bit float")
    return columns


def load(options: SeriesOptions) -> tuple[dict[str, Split], DataInfo]:
    path = Path(options.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path: {path.resolve()}: no such file")
    if path.suffix.lower() not in (".csv", ".npy"):
        raise DataError(f"data.path: {path}: a series is a .csv or a .npy file")
    columns = read_csv(path, options) if path.suffix.lower() == ".csv" else read_npy(
        path, options)
    target = options.target or list(columns)
    inputs = options.inputs or target
    ahead = options.horizon if options.mode == "direct" else 1
    x = torch.from_numpy(np.stack([columns[c] for c in inputs], axis=1))
    t = torch.from_numpy(np.stack([columns[c] for c in target], axis=1))
    u, y = x[:-ahead], t[ahead:]
    n = len(u)
    n_val, n_test = int(n * options.val_fraction), int(n * options.test_fraction)
    n_train = n - n_val - n_test
    if min(n_train, n_val, n_test) < MIN_STEPS:
        raise DataError(f"{path}: {len(x)} steps are too few for a horizon of {ahead} and "
                        f"splits of {options.val_fraction:g} and {options.test_fraction:g} "
                        f"(each split needs {MIN_STEPS} steps)")
    if options.mode == "generative" and options.warmup + options.horizon > min(n_val, n_test):
        raise DataError(f"{path}: warmup ({options.warmup}) + horizon ({options.horizon}) is "
                        f"longer than the validation or test split ({min(n_val, n_test)} "
                        "steps): lower them, or give a longer series")
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
              "test": (n_train + n_val, n)}
    splits = {name: (u[lo:hi], y[lo:hi]) for name, (lo, hi) in bounds.items()}
    return splits, DataInfo(
        input_shape=(len(inputs),), num_outputs=len(target), task="forecasting",
        free_run=options.horizon if options.mode == "generative" else 0,
        free_runs=options.free_runs, free_run_warmup=options.warmup)
