"""A user's data set as a folder of `.npy` files (`x.npy`, `y.npy`, ...), and the split that a
set too large to hold becomes: `MappedArrays`, which every worker reads from the memory-mapped
files as it draws its batches, sharded by rank (like a streamed image folder, the files must be
on storage every node mounts).

A folder is checked as a file is, but chunk by chunk (CHUNK_BYTES at a time), so a set many
times the driver's memory is read once and never held.
"""

import functools
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from raysearch.data.base import DataError, ImageFiles

STREAM_BYTES = 4 * 2**30  # an `x.npy` larger than this is streamed, unless `stream:` says
CHUNK_BYTES = 64 * 2**20  # what a check reads at a time


class Folder:
    """The `.npy` arrays of a folder by name (`x` for x.npy), memory-mapped: the interface of
    an .npz file's arrays (`files`, `in`, `[]`), so one check reads either."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files = sorted(p.stem for p in path.glob("*.npy"))

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def __getitem__(self, name: str) -> np.ndarray:
        file = self.path / f"{name}.npy"
        try:
            return np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{file}: not a .npy array ({str(e).splitlines()[0]})") from None

    def nbytes(self, name: str) -> int:
        return (self.path / f"{name}.npy").stat().st_size


def first_not_finite(x: np.ndarray, lengths: np.ndarray | None = None
                     ) -> tuple[tuple[int, ...], float] | None:
    """The index and value of x's first value that is not a finite float32 (of a sequence's
    valid steps only, given `lengths`), reading CHUNK_BYTES at a time."""
    rows = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
    for start in range(0, len(x), rows):
        part = np.asarray(x[start:start + rows])
        with np.errstate(over="ignore"):  # beyond float32 is infinite: refused
            bad = ~np.isfinite(part.astype(np.float32))
        if lengths is not None:
            steps = np.arange(x.shape[1])[None, :] < lengths[start:start + rows, None]
            bad &= steps.reshape(*steps.shape, *(1,) * (x.ndim - 2))
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            return (start + at[0], *at[1:]), part[at]
    return None


def column_moments(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and std of each column of x (N, F) over `rows`, reading CHUNK_BYTES at a
    time: what the MLP standardizes a table by."""
    rows = np.sort(rows)
    step = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
    s1 = np.zeros(x.shape[1:], dtype=np.float64)
    s2 = np.zeros_like(s1)
    for start in range(0, len(rows), step):
        part = np.asarray(x[rows[start:start + step]], dtype=np.float64)
        s1 += part.sum(0)
        s2 += (part * part).sum(0)
    mean = s1 / len(rows)
    std = np.sqrt(np.maximum(s2 / len(rows) - mean * mean, 0))
    return mean, np.where(std > 0, std, 1.0)


@functools.cache
def _mapped(path: str) -> np.ndarray:
    """One mapping per process of each file (a DataLoader's processes map their own)."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file on {socket.gethostname()}: a streamed data set "
                        "must be on storage every node mounts (as for --storage)") from None


@dataclass(frozen=True)
class MappedArrays:
    """A split of a set of arrays too large to hold, read from memory-mapped .npy files as
    batches are drawn: a map-style data set of (x, y) for a DataLoader. A sequence's steps past
    its `lengths` read as NaN, as an in-memory set holds them (models/padding.py)."""

    x: str  # the .npy of inputs: (N, T, F) sequences or (N, F) table rows
    y: str  # the .npy of targets: (N,) class ids, or (N,) values to regress
    lengths: str | None  # the .npy of each sequence's valid steps
    index: torch.Tensor  # the rows of the files in this split
    regression: bool = False

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.rows(self.index[i:i + 1])
        return x[0], y[0]

    def rows(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of these rows of the files (default: the whole split)."""
        rows = (self.index if index is None else index).numpy()
        x = torch.from_numpy(np.array(_mapped(self.x)[rows], dtype=np.float32))
        if self.lengths is not None:
            steps = torch.from_numpy(np.asarray(_mapped(self.lengths)[rows]))
            x[torch.arange(x.shape[1])[None, :] >= steps[:, None]] = torch.nan
        y = np.asarray(_mapped(self.y)[rows])
        y = (torch.from_numpy(y.astype(np.float32))[:, None] if self.regression
             else torch.from_numpy(y.astype(np.int64)))
        return x, y

    def batches(self, rows: int = 1024) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in order, `rows` at a time."""
        for start in range(0, len(self.index), rows):
            yield self.rows(self.index[start:start + rows])

    def subset(self, index: torch.Tensor) -> "MappedArrays":
        return replace(self, index=self.index[index])

    def normalizer(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """As ImageFiles': the batches are model inputs already."""
        return lambda x: x


def class_names(path: Path, arrays, needed: int) -> tuple[str, ...] | None:
    """The names in the file's `classes` array, one per class id up to `needed` at least."""
    if "classes" not in arrays:
        return None
    names = np.asarray(arrays["classes"])
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


STREAMED = (ImageFiles, MappedArrays)  # splits read from files as batches are drawn
