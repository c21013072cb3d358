"""`table`: a user's table of examples, a row each, from a CSV (with a header row) or a Parquet
file; `target` names the column predicted.

Classification when the target is categorical (its cells are not all numbers, or it is named in
`categorical`, or `task: classification`), regression when it is numeric. Input columns (every
column but the target, unless `inputs` names them) are numbers, or categories when named in
`categorical`: categories one-hot in their sorted order (a category first seen outside the
training split all zeros), then every feature standardized on the training split by the model,
so the champion reads numbers as they are in the file. A regression target is standardized the
same way (the model answers in its units). Random splits by `split_seed`: `test_fraction` held
out, then `val_fraction` of the rest for validation.

A cell that is empty, not a number in a numeric column, or not finite is one line naming the
file, its line (a CSV's; a Parquet file's row) and column: raysearch does not impute.

A table too large to hold is a folder: x.npy (rows, features) of numbers, categories one-hot
already, and y.npy, read by each worker memory-mapped (arrays.py, `load_arrays`).
"""

import csv
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.arrays import (
    STREAM_BYTES,
    Folder,
    MappedArrays,
    class_names,
    column_moments,
    first_not_finite,
)
from raysearch.data.base import DataError, DataInfo, Split, split_indices

MIN_ROWS = 2  # in each split


class TableOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    path: str  # .csv, .parquet, or a folder of x.npy and y.npy, relative to the working dir
    target: str | None = None  # the column predicted (a folder's is y.npy)
    inputs: list[str] | None = None  # default: every column but the target
    categorical: list[str] = []  # columns of categories, even when they hold numbers
    task: Literal["classification", "regression"] | None = None  # default: by the target
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    split_seed: int = 0
    stream: bool | None = None  # a folder's files read by the workers; default: by x's size


def read(path: Path) -> tuple[list[str], dict[str, list], list[str]]:
    """The header, each column's cells and each row's place in the file."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
            where = [f"{path}, row {i + 1}" for i in range(len(frame))]
        else:
            # every cell as text, nothing read as missing: each is checked below with its line
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                                skip_blank_lines=True)
            where = [f"{path}:{i + 2}" for i in range(len(frame))]
    except (OSError, ValueError, ImportError) as e:  # pandas' and pyarrow's parse errors
        raise DataError(f"{path}: not a readable table ({str(e).splitlines()[0]})") from None
    header = [str(c).strip() for c in frame.columns]
    if path.suffix.lower() != ".parquet":  # pandas renames a CSV's repeated names (a.1)
        with path.open(newline="", errors="replace") as f:
            header = [c.strip() for c in next(csv.reader(f), [])]
    if len(set(header)) != len(header):
        twice = next(c for c in header if header.count(c) > 1)
        raise DataError(f"{path}:1: column {twice!r} appears twice")
    if len(header) != frame.shape[1]:
        raise DataError(f"{path}:1: the header names {len(header)} columns, the rows hold "
                        f"{frame.shape[1]}")
    return header, {h: frame.iloc[:, i].tolist() for i, h in enumerate(header)}, where


def numbers(name: str, cells: list, where: list[str], hint: str) -> np.ndarray:
    """A column's cells as finite float32 numbers; the first that is not one is refused."""
    out = np.empty(len(cells), dtype=np.float64)
    for i, cell in enumerate(cells):
        text = cell.strip() if isinstance(cell, str) else cell
        if _missing(text) or text == "":
            raise DataError(f"{where[i]}: column {name!r} is empty (raysearch does not impute "
                            "missing values: fill them or drop the row)")
        try:
            out[i] = float(text)
        except (TypeError, ValueError):
            raise DataError(f"{where[i]}: column {name!r}: {cell!r} is not a number{hint}"
                            ) from None
        if not np.isfinite(out[i]) or abs(out[i]) > np.finfo(np.float32).max:
            raise DataError(f"{where[i]}: column {name!r}: {cell} is not a finite 32-bit float")
    return out.astype(np.float32)


def categories(name: str, cells: list, where: list[str]) -> np.ndarray:
    """A column's cells as category names (text); empty ones are refused."""
    out = np.array(["" if _missing(c) else str(c).strip() for c in cells], dtype=object)
    empty = np.flatnonzero(out == "")
    if len(empty):
        raise DataError(f"{where[empty[0]]}: column {name!r} is empty (raysearch does not "
                        "impute missing values: fill them or drop the row)")
    return out


def sorted_names(values: np.ndarray) -> list[str]:
    """Category names in order: numerically when they all are numbers (2 before 10)."""
    names = sorted(set(values.tolist()))
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def split_rows(path: Path, n: int, options: TableOptions) -> dict[str, torch.Tensor]:
    """The rows of each split: `test_fraction` held out, then `val_fraction` of the rest."""
    rest, held = split_indices(n, options.test_fraction, options.split_seed)
    fit_at, val_at = split_indices(len(rest), options.val_fraction, options.split_seed)
    parts = {"train": rest[fit_at], "val": rest[val_at], "test": held}
    if min(len(p) for p in parts.values()) < MIN_ROWS:
        raise DataError(f"{path}: {n} rows are too few for splits of {options.val_fraction:g} "
                        f"and {options.test_fraction:g} (each split needs {MIN_ROWS} rows)")
    return parts


def load(options: TableOptions) -> tuple[dict[str, Split], DataInfo]:
    path = Path(options.path).expanduser()
    if path.is_dir():
        return load_arrays(path, options)
    if not path.is_file():
        raise DataError(f"data.path: {path.resolve()}: no such file or folder")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"data.path: {path}: a table is a .csv or a .parquet file, or a folder "
                        "of x.npy and y.npy")
    if options.target is None:
        raise DataError(f"data.target: name the column of {path} to predict")
    if options.stream:
        raise DataError(f"data.stream: {path}: a CSV or Parquet file is read whole; save a "
                        "table too large to hold as x.npy and y.npy in a folder")
    header, cells, where = read(path)
    inputs = options.inputs or [h for h in header if h != options.target]
    for name in [options.target, *inputs, *options.categorical]:
        if name not in header:
            raise DataError(f"{path}:1: no column {name!r} (its columns: {', '.join(header)})")
    if options.target in inputs:
        raise DataError(f"{path}: column {options.target!r} is the target (data.target) and "
                        "cannot also be an input")
    if not inputs:
        raise DataError(f"{path}:1: no column to read besides the target {options.target!r}")

    n = len(where)
    parts = split_rows(path, n, options)
    train = parts["train"].numpy()

    features: list[np.ndarray] = []
    hint = " (name the column in data.categorical if it holds categories)"
    for name in inputs:
        if name in options.categorical:
            values = categories(name, cells[name], where)
            names = sorted_names(values[train])
            features.append(values[:, None] == np.array(names, dtype=object)[None, :])
        else:
            features.append(numbers(name, cells[name], where, hint)[:, None])
    x = torch.from_numpy(np.concatenate(features, axis=1).astype(np.float32))
    if options.stream is None and x.numel() * 4 > STREAM_BYTES:
        raise DataError(f"{path}: {x.numel() * 4 / 2**30:.1f} GiB of features is more than a "
                        "search holds in memory; save them as x.npy and y.npy in a folder, "
                        "which the workers read memory-mapped")

    target = cells[options.target]
    task = options.task
    if task is None:
        numeric = options.target not in options.categorical and all(
            _is_number(c) for c in target)
        task = "regression" if numeric else "classification"
    if task == "regression":
        y = torch.from_numpy(numbers(options.target, target, where, " (a regression target "
                                     "is numeric; set data.task: classification for classes)"))
        y = y[:, None]
        classes = None
        scale = y[parts["train"]]
        target_scaling = (scale.mean().item(), _spread(scale).item())
    else:
        labels = categories(options.target, target, where)
        classes = sorted_names(labels[train])
        if len(classes) < 2:
            raise DataError(f"{path}: column {options.target!r} holds one class in the training "
                            "split; classification needs two or more")
        known = dict(zip(classes, range(len(classes)), strict=True))
        unseen = [(where[i], labels[i]) for i in range(n) if labels[i] not in known]
        if unseen:
            place, label = unseen[0]
            raise DataError(f"{place}: column {options.target!r}: class {label!r} is in no row "
                            "of the training split, so the model could never predict it: add "
                            "rows of it, or change data.split_seed")
        y = torch.tensor([known[label] for label in labels.tolist()])
        target_scaling = None

    fit = x[parts["train"]]
    mean, std = fit.mean(0), _spread(fit)
    splits = {name: (x[index], y[index]) for name, index in parts.items()}
    return splits, DataInfo(
        input_shape=(x.shape[1],), num_outputs=1 if task == "regression" else len(classes),
        task=task, classes=tuple(classes) if classes else None,
        scaling=(tuple(mean.tolist()), tuple(std.tolist())), target_scaling=target_scaling)


def load_arrays(path: Path, options: TableOptions) -> tuple[dict[str, Split], DataInfo]:
    """A table as a folder: x.npy (rows, features) of numbers, y.npy (rows,) class ids
    (integers) or values to regress (floats; or as `task` says), optional classes.npy; streamed
    (MappedArrays) when x.npy is over STREAM_BYTES or with `stream: true`."""
    for key, why in (("target", "is y.npy"), ("inputs", "are x.npy's columns"),
                     ("categorical", "must be one-hot in x.npy")):
        if getattr(options, key):
            raise DataError(f"data.{key}: {path} is a folder of arrays, whose {key} {why}")
    arrays = Folder(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: no {key}.npy (it holds: {', '.join(arrays.files)})")
    x, y = arrays["x"], np.asarray(arrays["y"])
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: x.npy must be numbers of shape (rows, features); it is "
                        f"{x.dtype} of shape {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: y.npy must be numbers of shape ({len(x)},); it is {y.dtype} "
                        f"of shape {y.shape}")
    if bad := first_not_finite(x):
        (i, j), value = bad
        raise DataError(f"{path}: x[{i}, {j}] is {value}: a table holds finite numbers")
    task = options.task or ("regression" if np.issubdtype(y.dtype, np.floating)
                            else "classification")
    n = len(x)
    parts = split_rows(path, n, options)
    train = parts["train"].numpy()
    classes, target_scaling = None, None
    if task == "regression":
        if bad := first_not_finite(y[:, None]):
            raise DataError(f"{path}: y[{bad[0][0]}] is {bad[1]}: a target to regress is a "
                            "finite number")
        target_scaling = (float(y[train].mean()), float(y[train].std() or 1.0))
    else:
        if not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0:
            raise DataError(f"{path}: y.npy must be class ids 0, 1, 2, ... to classify; it is "
                            f"{y.dtype} from {y.min()} (or set data.task: regression)")
        seen = set(np.unique(y[train]).tolist())
        if len(seen) < 2:
            raise DataError(f"{path}: y.npy holds one class in the training split; "
                            "classification needs two or more")
        unseen = sorted(set(np.unique(y).tolist()) - seen)
        if unseen:
            raise DataError(f"{path}: class {unseen[0]} of y.npy is in no row of the training "
                            "split, so the model could never predict it: add rows of it, or "
                            "change data.split_seed")
        classes = class_names(path, arrays, int(y.max()) + 1)
    mean, std = column_moments(x, train)
    stream = options.stream if options.stream is not None else arrays.nbytes("x") > STREAM_BYTES
    if stream:
        whole = MappedArrays(str(path / "x.npy"), str(path / "y.npy"), None, torch.arange(n),
                             regression=task == "regression")
        splits = {name: whole.subset(index) for name, index in parts.items()}
    else:
        xs = torch.from_numpy(np.asarray(x, dtype=np.float32))
        ys = (torch.from_numpy(y.astype(np.float32))[:, None] if task == "regression"
              else torch.from_numpy(y.astype(np.int64)))
        splits = {name: (xs[index], ys[index]) for name, index in parts.items()}
    outputs = 1 if task == "regression" else (len(classes) if classes else int(y.max()) + 1)
    return splits, DataInfo(
        input_shape=(x.shape[1],), num_outputs=outputs, task=task, classes=classes,
        scaling=(tuple(mean.tolist()), tuple(std.tolist())), target_scaling=target_scaling)


def _missing(cell) -> bool:
    """A cell a short CSV row or a Parquet null leaves."""
    return cell is None or (isinstance(cell, float) and np.isnan(cell))


def _is_number(cell) -> bool:
    try:
        return np.isfinite(float(cell))
    except (TypeError, ValueError):
        return False


def _spread(values: torch.Tensor) -> torch.Tensor:
    """Standard deviation per column; 1 for a constant one, which standardizing leaves as is."""
    std = values.std(0, unbiased=False)
    return torch.where(std > 0, std, torch.ones_like(std))
