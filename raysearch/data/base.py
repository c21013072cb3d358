"""What every data set declares, so a spec can be checked before anything runs."""

import contextlib
import functools
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel

from raysearch.storage import first_line

Split = tuple[torch.Tensor, torch.Tensor]  # inputs and targets; or ImageFiles, streamed

CLASSIFICATION_METRICS = ("val_accuracy", "val_loss")
FORECASTING_METRICS = ("val_nrmse", "val_mse")
REGRESSION_METRICS = ("val_rmse", "val_mae", "val_r2")
TASK_METRICS = {"classification": CLASSIFICATION_METRICS, "forecasting": FORECASTING_METRICS,
                "regression": REGRESSION_METRICS}


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]  # one example: (C, H, W) images, (features,) per step sequences
    num_outputs: int  # classes, or forecast dimensions
    task: Literal["classification", "forecasting", "regression"] = "classification"
    augment: bool = False  # photos: random crop (4 px padding) and horizontal flip when training
    free_run: int = 0  # forecasting, generative: steps run on the model's own output, scored
    free_runs: int = 0  # ... from this many starting points across the split
    free_run_warmup: int = 0  # ... each after reading this many true steps from a zero state
    # photos (RGB files): the per-channel mean and std that standardize them once resized and
    # center-cropped to input_shape, so a trained model can read image files later
    photos: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    classes: tuple[str, ...] | None = None  # the class names, where the data names them
    # tables: each feature's mean and std on the training split, which the model standardizes
    # by; and a regression target's, which it answers in the units of
    scaling: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    target_scaling: tuple[float, float] | None = None

    def photo_reading(self) -> dict | None:
        """How a model of this data set reads an image file (checkpoint's `photos`)."""
        if self.photos is None:
            return None
        return {"size": self.input_shape[-1], "mean": list(self.photos[0]),
                "std": list(self.photos[1])}


class DataError(Exception):
    """A data set that cannot be loaded; the message says what to put where."""


@contextlib.contextmanager
def download_or_say(missing: str) -> Iterator[None]:
    """Around the download of a file that is not on disk: offline it fails in seconds instead
    of hanging, and any failure becomes a DataError whose message is `missing` (what is absent
    and where to put it) with `{reason}` replaced by the download error's first line."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(15)
    try:
        yield
    except Exception as e:  # noqa: BLE001  any failure means: no copy, and no way to get one
        raise DataError(missing.format(reason=first_line(e))) from None
    finally:
        socket.setdefaulttimeout(previous)


def data_root(option: str | None) -> Path:
    """`data.root`, else RAYSEARCH_DATA, else ./data."""
    return Path(option or os.environ.get("RAYSEARCH_DATA") or "data").expanduser()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation indices of n examples, shuffled with `seed`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(n * val_fraction)
    return order[n_val:], order[:n_val]


def normalized(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W) as floats standardized per channel."""
    x = x.float().div_(255)
    return (x - mean[:, None, None]) / std[:, None, None]


def read_photo(path: str | Path, size: int) -> torch.Tensor:
    """An image file as a uint8 RGB tensor (3, size, size), resized and center-cropped."""
    from PIL import Image

    with Image.open(path) as image:
        return _shaping(size)(image.convert("RGB"))


@functools.cache
def _shaping(size: int):
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                               transforms.PILToTensor()])


@dataclass(frozen=True)
class ImageFiles:
    """A split of images read from their files as batches are drawn, for folders too large to
    hold in memory: a map-style data set of (uint8 image (C, H, W), label) for a DataLoader. Every
    node reads the same paths, so they must be on storage every node mounts."""

    paths: tuple[str, ...]
    labels: torch.Tensor
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return read_photo(self.paths[i], self.size), int(self.labels[i])

    def subset(self, index: torch.Tensor) -> "ImageFiles":
        return replace(self, paths=tuple(self.paths[i] for i in index.tolist()),
                       labels=self.labels[index])

    def normalizer(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """Batches of uint8 images as the in-memory data sets hold them (see `normalized`), with
        the constants put on `device` once rather than with every batch."""
        mean, std = (torch.tensor(v, device=device) for v in (self.mean, self.std))
        return lambda images: normalized(images, mean, std)


STRETCH = 100  # steps of a series taken as one input, where a series is the data


def sample_inputs(splits: dict[str, Split], info: DataInfo, split: str, count: int
                  ) -> torch.Tensor:
    """Up to `count` inputs of a split as the model reads them: images normalized (N, C, H, W),
    sequences (N, T, features), or stretches of STRETCH steps of a series to forecast."""
    from raysearch.data.arrays import STREAMED

    data = splits[split]
    if isinstance(data, STREAMED):
        count = min(count, len(data))
        return data.normalizer(torch.device("cpu"))(torch.stack([data[i][0]
                                                                 for i in range(count)]))
    x = data[0]
    if info.task == "forecasting":
        length = min(STRETCH, len(x))
        starts = torch.linspace(0, len(x) - length, count).long().unique()
        return torch.stack([x[i:i + length] for i in starts.tolist()])
    return x[:count]


@dataclass(frozen=True)
class DataSet:
    name: str
    options: type[BaseModel]  # the data set's own keys under `data:`, with defaults
    kind: Literal["image", "sequence", "table"]
    tasks: frozenset[str]  # "classification", "forecasting", "regression": a table's by its target
    load: Callable[[BaseModel], tuple[dict[str, Split], DataInfo]]  # splits "train", "val", "test"
    user_file: bool = False  # reads one file of the user's: `raysearch validate` reads it too

    def metrics(self, tasks: frozenset[str] | None = None) -> tuple[str, ...]:
        """What a trial on it reports (for these of its tasks), besides `epoch` and
        `train_loss`."""
        return tuple(m for task in sorted(tasks or self.tasks) for m in TASK_METRICS[task])
