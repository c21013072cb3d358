"""`sequences`: a user's set of sequences for classification, from one .npz file.

Arrays: `x` float (N, T, F); `y` int (N,) class ids 0..C-1; optional `lengths` int (N,), the
valid steps of each sequence (padded after them); optional `x_test`, `y_test`, `lengths_test`,
a held-out test split (otherwise `test_fraction` of the set is held out, by `split_seed`);
optional `classes`, text, the name of each class id (the champion's predictions and
diagnostics use them). The
validation split is `val_fraction` of the training part. Whatever the file holds after a
sequence's valid steps, the splits hold NaN there (models/padding.py), so the models read the
valid steps alone.
"""

from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.base import DataError, DataInfo, Split, split_indices


class SequencesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    path: str  # relative to the working directory
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)  # when the file has no x_test
    split_seed: int = 0


def _part(path: Path, arrays, suffix: str) -> tuple[np.ndarray, np.ndarray] | None:
    """x and y of the file's part `suffix` ('' or '_test'), checked and NaN-padded."""
    x_key, y_key, n_key = f"x{suffix}", f"y{suffix}", f"lengths{suffix}"
    if x_key not in arrays and y_key not in arrays:
        return None
    for key in (x_key, y_key):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} beside {x_key if key == y_key else y_key}"
                            f" (it holds: {', '.join(arrays.files)})")
    x, y = arrays[x_key], arrays[y_key]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: {x_key} must be numbers of shape (sequences, steps, "
                        f"features); it is {x.dtype} of shape {x.shape}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {y_key} must be integer class ids of shape (sequences,); it "
                        f"is {y.dtype} of shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: {x_key} has {len(x)} sequences and {y_key} {len(y)}")
    if y.min(initial=0) < 0:
        raise DataError(f"{path}: {y_key} holds {y.min()}; class ids are 0, 1, 2, ...")
    steps = x.shape[1]
    n = arrays[n_key] if n_key in arrays else np.full(len(x), steps)
    if n.shape != (len(x),) or not np.issubdtype(n.dtype, np.integer):
        raise DataError(f"{path}: {n_key} must be integers of shape ({len(x)},); it is "
                        f"{n.dtype} of shape {n.shape}")
    wrong = np.flatnonzero((n < 1) | (n > steps))
    if len(wrong):
        i = wrong[0]
        raise DataError(f"{path}: {n_key}[{i}] = {n[i]}: a sequence has 1 to {steps} valid "
                        f"steps (the steps of {x_key})")
    with np.errstate(over="ignore"):  # beyond float32 is infinite: refused below
        x = x.astype(np.float32, copy=True)
    valid = np.arange(steps)[None, :] < n[:, None]
    bad = np.argwhere(~np.isfinite(x) & valid[..., None])
    if len(bad):
        i, t, f = bad[0]
        raise DataError(f"{path}: {x_key}[{i}, {t}, {f}] is {x[i, t, f]}: the valid steps of "
                        "a sequence hold finite numbers")
    x[~valid] = np.nan
    return x, y.astype(np.int64)


def load(options: SequencesOptions) -> tuple[dict[str, Split], DataInfo]:
    path = Path(options.path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path: {path.resolve()}: no such file")
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"data.path: {path}: not an .npz of arrays ({e})") from None
    with arrays:
        train = _part(path, arrays, "")
        if train is None:
            raise DataError(f"{path}: no arrays 'x' and 'y' (it holds: "
                            f"{', '.join(arrays.files)})")
        test = _part(path, arrays, "_test")
        names = _names(path, arrays, int(train[1].max()) + 1)
    x, y = (torch.from_numpy(a) for a in train)
    classes = int(y.max()) + 1 if names is None else len(names)
    if len(torch.unique(y)) < 2:
        raise DataError(f"{path}: y holds one class only; classification needs two or more")
    if test is None:
        rest, held = split_indices(len(x), options.test_fraction, options.split_seed)
        x_test, y_test = x[held], y[held]
        x, y = x[rest], y[rest]
    else:
        x_test, y_test = (torch.from_numpy(a) for a in test)
        if x_test.shape[2] != x.shape[2]:
            raise DataError(f"{path}: x_test has {x_test.shape[2]} features per step and x "
                            f"{x.shape[2]}")
        unseen = sorted(set(y_test.tolist()) - set(y.tolist()))
        if unseen:
            raise DataError(f"{path}: y_test holds class {unseen[0]}, which y never does: a "
                            "class the model never saw in training")
    fit, val = split_indices(len(x), options.val_fraction, options.split_seed)
    splits = {"train": (x[fit], y[fit]), "val": (x[val], y[val]), "test": (x_test, y_test)}
    return splits, DataInfo(input_shape=(x.shape[2],), num_outputs=classes, classes=names)


def _names(path: Path, arrays, needed: int) -> tuple[str, ...] | None:
    """The file's class names, one per class id."""
    if "classes" not in arrays:
        return None
    names = arrays["classes"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{path}: classes must be the names of the classes, text of shape "
                        f"(classes,); it is {names.dtype} of shape {names.shape}")
    if len(names) < needed:
        raise DataError(f"{path}: classes names {len(names)} classes but y holds class id "
                        f"{needed - 1}")
    names = tuple(n.decode(errors="replace") if isinstance(n, bytes) else str(n)
                  for n in names.tolist())
    if len(set(names)) != len(names):
        raise DataError(f"{path}: classes names a class twice")
    return names
