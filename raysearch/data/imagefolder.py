"""A folder of class folders (torchvision's ImageFolder layout): root/<class>/<image>.

Split by seed, or, where root holds train/ and val/ (and test/) folders, by those. Images are
resized and center-cropped to `image_size`; class names are the folder names, in sorted order.
A folder of up to STREAM_ABOVE images is held in memory as tensors (on a GPU, the fast path);
a larger one, or any with `stream: true`, streams from its files through a DataLoader with a
DistributedSampler on each worker.
"""

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.base import (
    DataError,
    DataInfo,
    ImageFiles,
    Split,
    data_root,
    split_indices,
)

MEAN = torch.tensor([0.485, 0.456, 0.406])  # ImageNet's
STD = torch.tensor([0.229, 0.224, 0.225])
# 20,000 RGB images of 64 x 64 px as float tensors take 1 GB in every worker
STREAM_ABOVE = 20_000


class ImageFolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    root: str | None = None
    image_size: int = Field(64, ge=8)
    val_fraction: float = Field(0.2, gt=0, lt=0.5)  # when there is no val/ folder
    test_fraction: float = Field(0.1, ge=0, lt=0.5)  # when there is no test/ folder
    split_seed: int = 0
    augment: bool = True
    stream: bool | None = None  # None: stream when the folder holds more than STREAM_ABOVE


def _scan(folder: Path, size: int) -> tuple[ImageFiles, list[str]]:
    """The folder's images as files, not yet read."""
    from torchvision.datasets import ImageFolder

    try:
        # absolute: Ray Train runs each worker in its own folder
        ds = ImageFolder(str(folder.resolve()))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"imagefolder: {folder}: {str(e).splitlines()[0]} (expected one "
                        "folder per class, images inside)") from None
    return ImageFiles(tuple(path for path, _ in ds.samples), torch.tensor(ds.targets),
                      size, tuple(MEAN.tolist()), tuple(STD.tolist())), ds.classes


def _read(files: ImageFiles, stream: bool) -> Split | ImageFiles:
    if not len(files):
        raise DataError("imagefolder: a split has no images (a folder too small for "
                        "val_fraction / test_fraction)")
    if stream:
        return files
    images = torch.stack([files[i][0] for i in range(len(files))])
    return files.normalizer(torch.device("cpu"))(images), files.labels


def load(options: ImageFolderOptions) -> tuple[dict[str, Split], DataInfo]:
    root = data_root(options.root)
    if not root.is_dir():
        raise DataError(f"imagefolder: {root.resolve()} is not a folder (set data.root)")
    size = options.image_size
    if (root / "train").is_dir() and (root / "val").is_dir():
        found = {name: _scan(root / name, size) for name in ("train", "val", "test")
                 if (root / name).is_dir()}
        classes = found["train"][1]
        if found["val"][1] != classes:
            raise DataError(f"imagefolder: {root}/val has classes {found['val'][1]}, train has "
                            f"{classes}")
        files = {name: f for name, (f, _) in found.items()}
        files.setdefault("test", files["val"])
    else:
        every, classes = _scan(root, size)
        rest, test = split_indices(len(every), options.test_fraction, options.split_seed)
        fit, val = split_indices(len(rest), options.val_fraction / (1 - options.test_fraction),
                                 options.split_seed + 1)
        files = {"train": every.subset(rest[fit]), "val": every.subset(rest[val])}
        files["test"] = every.subset(test) if len(test) else files["val"]
    distinct = {id(f): f for f in files.values()}  # test may be the val split itself
    stream = options.stream
    if stream is None:
        stream = sum(len(f) for f in distinct.values()) > STREAM_ABOVE
    read = {key: _read(f, stream) for key, f in distinct.items()}
    splits = {name: read[id(f)] for name, f in files.items()}
    return splits, DataInfo(input_shape=(3, size, size), num_outputs=len(classes),
                            augment=options.augment,
                            photos=(tuple(MEAN.tolist()), tuple(STD.tolist())))
