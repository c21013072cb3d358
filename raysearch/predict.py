"""`raysearch predict`: a registered model's predictions for the inputs in a file.

Inputs, as the model's signature shapes them:
- .npy: the array itself, (N, *shape) or one input of `shape`;
- .npz: its array `x`, or its only array;
- .csv (a header line is skipped when it is not numbers): for an image model each row is one
  flattened image (C*H*W values); for a sequence model the file is one sequence, a row per step
  and a column per feature; for a table model a row per example, its features (a table's
  numbers as they are, a categorical column one-hot) in the order it was trained on;
- a folder of image files (every PHOTO_SUFFIXES file under it, in sorted order), for a model
  trained on photos (imagefolder, cifar10): each read as its data set read them (RGB, resized
  and center-cropped, standardized per channel).
Outputs: .npy (the array predict returns) or .csv (classification: a row per input, `label` and
a probability per class, and `file` first for a folder; regression: a row per input,
`prediction`; forecasting: a row per step, `sequence`, `step` and a column per output), by the
--out file's suffix; CSV on stdout without --out.
"""

import csv
import io
import sys
from pathlib import Path

import numpy as np
import torch
from mlflow.models import Model

from raysearch import checkpoint, serving
from raysearch.data.base import normalized, read_photo

READABLE = (".npy", ".npz", ".csv")
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
WRITABLE = (".npy", ".csv")


class InputError(Exception):
    """An input file that cannot be read, or does not fit the model; the message names it."""


def expected_shape(folder: Path) -> tuple[int, ...] | None:
    """The shape of one input (-1 for a free length) from the model's signature; None for a
    version registered without one."""
    if not (folder / checkpoint.MLFLOW_MODEL).exists():
        return None
    signature = Model.load(folder).signature
    return tuple(signature.inputs.inputs[0].shape[1:]) if signature else None


def describe(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join("any" if d == -1 else str(d) for d in shape) + ")"


def read_csv(path: Path) -> np.ndarray:
    text = path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: empty")
    first = lines[0].split(",")
    try:
        [float(v) for v in first]
        header = False
    except ValueError:
        header = True
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1 if header else 0,
                          dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise InputError(f"{path}: not a table of numbers ({str(e).splitlines()[0]})") from None


def read_photos(folder: Path, photos: dict | None, shape: tuple[int, ...] | None
                ) -> tuple[np.ndarray, list[str]]:
    """The image files under `folder` as the model reads them, and their paths under it."""
    if photos is None:
        reads = f" (it reads {describe(shape)})" if shape else ""
        raise InputError(f"{folder}: a folder of images is read only by a model trained on "
                         f"photos (imagefolder, cifar10); this one is not{reads}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no image files ({', '.join(PHOTO_SUFFIXES)}) in it")
    images = []
    for file in files:
        try:
            images.append(read_photo(file, photos["size"]))
        except (OSError, ValueError) as e:  # PIL's for a file that is not an image it reads
            raise InputError(f"{file}: not a readable image ({str(e).splitlines()[0]})"
                             ) from None
    x = normalized(torch.stack(images), torch.tensor(photos["mean"]), torch.tensor(photos["std"]))
    return x.numpy(), [file.relative_to(folder).as_posix() for file in files]


def read_input(path: Path, shape: tuple[int, ...] | None) -> np.ndarray:
    """The inputs in `path` as a batch the model reads, checked against `shape` (one input's)."""
    if path.suffix not in READABLE:
        raise InputError(f"{path}: not a {', '.join(READABLE)} file")
    try:
        if path.suffix == ".csv":
            x = read_csv(path)
            if shape is not None and len(shape) == 2:  # one sequence: steps x features
                x = x[None]
            elif shape is not None and -1 not in shape and x.shape[1] == np.prod(shape):
                x = x.reshape(len(x), *shape)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                names = list(arrays.files)
                if "x" not in names and len(names) != 1:
                    raise InputError(f"{path}: holds {names}; name the inputs `x`")
                x = arrays["x" if "x" in names else names[0]]
        else:
            x = np.load(path, allow_pickle=False)
    except InputError:
        raise
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(f"{path}: holds {x.dtype} values, not numbers")
    x = x.astype(np.float32)
    if shape is None:
        return x
    given = x.shape
    if x.ndim == len(shape):  # a single input
        x = x[None]
    fits = x.ndim == len(shape) + 1 and all(
        d in (-1, n) for d, n in zip(shape, x.shape[1:], strict=True))
    if not fits:
        raise InputError(f"{path}: inputs of shape {given}; the model reads {describe(shape)}"
                         + (csv_layout(shape, given[-1]) if path.suffix == ".csv" else ""))
    return x


def csv_layout(shape: tuple[int, ...], columns: int) -> str:
    """How a CSV must be laid out for a model reading inputs of `shape`."""
    if len(shape) == 2:  # one sequence
        return (f" (a CSV is one sequence: a row per step, {shape[-1]} column(s) of features "
                f"per row; {columns} here)")
    return (f" (a CSV holds a flattened image per row: {int(np.prod(shape))} values per row; "
            f"{columns} here)")


def write(predictions: np.ndarray, task: str, out: Path | None,
          names: list[str] | None = None, classes: list[str] | None = None) -> None:
    """`names`: the inputs' files, the first column of a classifier's CSV; `classes`: the
    classes' names, where the model has them (its labels, and p_NAME columns)."""
    if out is not None and out.suffix == ".npy":
        np.save(out, predictions)
        return
    if task == "classification":
        label = classes or list(range(predictions.shape[1]))
        header = ["label", *(f"p_{c}" if classes else f"p{c}" for c in label)]
        rows = [[label[int(p.argmax())], *(f"{v:.6g}" for v in p)] for p in predictions]
        if names is not None:
            header, rows = ["file", *header], [[n, *r] for n, r in zip(names, rows, strict=True)]
    elif task == "regression":
        header, rows = ["prediction"], [[f"{p[0]:.6g}"] for p in predictions]
    else:  # (N, T, outputs): a row per step of each sequence
        header = ["sequence", "step", *(f"y{k}" for k in range(predictions.shape[2]))]
        rows = [[i, t, *(f"{v:.6g}" for v in step)]
                for i, sequence in enumerate(predictions) for t, step in enumerate(sequence)]
    target = open(out, "w", newline="") if out is not None else sys.stdout  # noqa: SIM115
    try:
        writer = csv.writer(target, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if out is not None:
            target.close()


def predict_file(folder: Path, path: Path, out: Path | None) -> np.ndarray:
    """The predictions of the model pulled into `folder` for the inputs in `path` (a file, or a
    folder of images), written to `out` (or stdout)."""
    if out is not None and out.suffix not in WRITABLE:
        raise InputError(f"{out}: write .npy or .csv")
    if out is not None and not out.parent.is_dir():
        raise InputError(f"{out}: no folder {out.parent} to write it in")
    shape = expected_shape(folder)
    config = checkpoint.read_config(folder)
    names = None
    if path.is_dir():
        x, names = read_photos(path, config.get("photos"), shape)
    else:
        x = read_input(path, shape)
    model = checkpoint.load(folder)
    task = config.get("task", "classification")
    try:
        predictions = serving.predict(model, x, task)
    except (RuntimeError, ValueError) as e:  # a version without a signature, a wrong shape
        raise InputError(f"{path}: inputs of shape {x.shape} do not fit the model "
                         f"({str(e).splitlines()[0]})") from None
    if predictions.ndim != (3 if task == "forecasting" else 2) or len(predictions) != len(x):
        raise InputError(f"{path}: inputs of shape {x.shape} are not a batch the model reads "
                         f"(it answered {predictions.shape})")
    try:
        write(predictions, task, out, names, config.get("classes"))
    except OSError as e:
        raise InputError(f"{out}: {e.strerror or e}") from None
    return predictions
