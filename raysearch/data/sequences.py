"""`sequences`: a user's set of sequences for classification, from one .npz file, or a folder
of .npy files of the same names (x.npy, y.npy, ...).

Arrays: `x` float (N, T, F); `y` int (N,) class ids 0..C-1; optional `lengths` int (N,), the
valid steps of each sequence (padded after them); optional `x_test`, `y_test`, `lengths_test`,
a held-out test split (otherwise `test_fraction` of the set is held out, by `split_seed`);
optional `classes`, text, the name of each class id (the champion's predictions and
diagnostics use them). The validation split is `val_fraction` of the training part. Whatever
the file holds after a sequence's valid steps, the splits hold NaN there (models/padding.py),
so the models read the valid steps alone.

A folder whose x.npy is over arrays.STREAM_BYTES (or with `stream: true`) is not loaded: its
splits are MappedArrays, read by each worker from the memory-mapped files.
"""

import contextlib
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.arrays import (
    STREAM_BYTES,
    Folder,
    MappedArrays,
    class_names,
    first_not_finite,
)
from raysearch.data.base import DataError, DataInfo, Split, split_indices


class SequencesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    path: str  # an .npz or a folder of .npy files, relative to the working directory
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)  # when the file has no x_test
    split_seed: int = 0
    stream: bool | None = None  # a folder's files read by the workers; default: by x's size


def _part(path: Path, arrays, suffix: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """x, y and lengths of the file's part `suffix` ('' or '_test'), checked (x as the file
    holds it: memory-mapped in a folder)."""
    x_key, y_key, n_key = f"x{suffix}", f"y{suffix}", f"lengths{suffix}"
    if x_key not in arrays and y_key not in arrays:
        return None
    for key in (x_key, y_key):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} beside {x_key if key == y_key else y_key}"
                            f" (it holds: {', '.join(arrays.files)})")
    x, y = arrays[x_key], np.asarray(arrays[y_key])
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
    n = np.asarray(arrays[n_key]) if n_key in arrays else None
    if n is not None:
        if n.shape != (len(x),) or not np.issubdtype(n.dtype, np.integer):
            raise DataError(f"{path}: {n_key} must be integers of shape ({len(x)},); it is "
                            f"{n.dtype} of shape {n.shape}")
        wrong = np.flatnonzero((n < 1) | (n > steps))
        if len(wrong):
            i = wrong[0]
            raise DataError(f"{path}: {n_key}[{i}] = {n[i]}: a sequence has 1 to {steps} valid "
                            f"steps (the steps of {x_key})")
    if bad := first_not_finite(x, n):
        (i, t, f), value = bad
        raise DataError(f"{path}: {x_key}[{i}, {t}, {f}] is {value}: the valid steps of a "
                        "sequence hold finite numbers")
    return x, y.astype(np.int64), n


def _padded(x: np.ndarray, n: np.ndarray | None) -> torch.Tensor:
    """x in memory as float32, NaN after each sequence's valid steps."""
    with np.errstate(over="ignore"):  # checked finite where it is read
        x = x.astype(np.float32, copy=True)
    if n is not None:
        x[np.arange(x.shape[1])[None, :] >= n[:, None]] = np.nan
    return torch.from_numpy(x)


def _open(path: Path):
    """The arrays of an .npz or of a folder of .npy files."""
    if path.is_dir():
        return contextlib.nullcontext(Folder(path))
    if not path.is_file():
        raise DataError(f"data.path: {path.resolve()}: no such file or folder")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"data.path: {path}: not an .npz of arrays ({e})") from None


def load(options: SequencesOptions) -> tuple[dict[str, Split], DataInfo]:
    path = Path(options.path).expanduser()
    with _open(path) as arrays:
        train = _part(path, arrays, "")
        if train is None:
            raise DataError(f"{path}: no arrays 'x' and 'y' (it holds: "
                            f"{', '.join(arrays.files)})")
        test = _part(path, arrays, "_test")
        names = class_names(path, arrays, int(train[1].max()) + 1)
        stream = options.stream
        if stream is None:
            stream = isinstance(arrays, Folder) and arrays.nbytes("x") > STREAM_BYTES
        if stream and not isinstance(arrays, Folder):
            raise DataError(f"data.stream: {path}: an .npz cannot be memory-mapped; save its "
                            "arrays as .npy files in a folder (x.npy, y.npy, ...)")
        y = torch.from_numpy(train[1])
        classes = int(y.max()) + 1 if names is None else len(names)
        if len(torch.unique(y)) < 2:
            raise DataError(f"{path}: y holds one class only; classification needs two or more")
        if test is not None:
            if test[0].shape[2] != train[0].shape[2]:
                raise DataError(f"{path}: x_test has {test[0].shape[2]} features per step and x "
                                f"{train[0].shape[2]}")
            unseen = sorted(set(test[1].tolist()) - set(train[1].tolist()))
            if unseen:
                raise DataError(f"{path}: y_test holds class {unseen[0]}, which y never does: a "
                                "class the model never saw in training")
        whole = (_mapped(path, "", train[2]) if stream
                 else (_padded(train[0], train[2]), y))
        held = (None if test is None else _mapped(path, "_test", test[2]) if stream
                else (_padded(test[0], test[2]), torch.from_numpy(test[1])))
    features = train[0].shape[2]
    if held is None:
        rest, out = split_indices(len(y), options.test_fraction, options.split_seed)
        held, whole = _take(whole, out), _take(whole, rest)
    fit, val = split_indices(len(whole[1]) if isinstance(whole, tuple) else len(whole),
                             options.val_fraction, options.split_seed)
    splits = {"train": _take(whole, fit), "val": _take(whole, val), "test": held}
    return splits, DataInfo(input_shape=(features,), num_outputs=classes, classes=names)


def _mapped(path: Path, suffix: str, lengths: np.ndarray | None) -> MappedArrays:
    return MappedArrays(str(path / f"x{suffix}.npy"), str(path / f"y{suffix}.npy"),
                        None if lengths is None else str(path / f"lengths{suffix}.npy"),
                        torch.arange(len(np.load(path / f"y{suffix}.npy", mmap_mode="r"))))


def _take(split: Split | MappedArrays, index: torch.Tensor) -> Split | MappedArrays:
    if isinstance(split, MappedArrays):
        return split.subset(index)
    return split[0][index], split[1][index]
