"""A folder of class folders (torchvision's ImageFolder layout): root/<class>/<image>.

Split by seed, or, where root holds train/ and val/ (and test/) folders, by those. Images are
resized and center-cropped to `image_size` and held in memory as tensors; class names are the
folder names, in sorted order.
"""

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.base import DataError, DataInfo, Split, data_root, normalized, split_indices

MEAN = torch.tensor([0.485, 0.456, 0.406])  # ImageNet's
STD = torch.tensor([0.229, 0.224, 0.225])


class ImageFolderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    root: str | None = None
    image_size: int = Field(64, ge=8)
    val_fraction: float = Field(0.2, gt=0, lt=0.5)  # when there is no val/ folder
    test_fraction: float = Field(0.1, ge=0, lt=0.5)  # when there is no test/ folder
    split_seed: int = 0
    augment: bool = True


def _read(folder: Path, size: int) -> tuple[Split, list[str]]:
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    shape = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size),
                                transforms.PILToTensor()])
    try:
        ds = ImageFolder(str(folder), transform=lambda im: shape(im.convert("RGB")))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"imagefolder: {folder}: {str(e).splitlines()[0]} (expected one "
                        "folder per class, images inside)") from None
    images = torch.stack([image for image, _ in ds])
    return (normalized(images, MEAN, STD), torch.tensor(ds.targets)), ds.classes


def load(options: ImageFolderOptions) -> tuple[dict[str, Split], DataInfo]:
    root = data_root(options.root)
    if not root.is_dir():
        raise DataError(f"imagefolder: {root.resolve()} is not a folder (set data.root)")
    size = options.image_size
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, classes = _read(root / "train", size)
        val, val_classes = _read(root / "val", size)
        if val_classes != classes:
            raise DataError(f"imagefolder: {root}/val has classes {val_classes}, train has "
                            f"{classes}")
        test = _read(root / "test", size)[0] if (root / "test").is_dir() else val
        splits = {"train": train, "val": val, "test": test}
    else:
        (x, y), classes = _read(root, size)
        rest, test = split_indices(len(x), options.test_fraction, options.split_seed)
        fit, val = split_indices(len(rest), options.val_fraction / (1 - options.test_fraction),
                                 options.split_seed + 1)
        fit, val = rest[fit], rest[val]
        splits = {"train": (x[fit], y[fit]), "val": (x[val], y[val]),
                  "test": (x[test], y[test]) if len(test) else (x[val], y[val])}
    return splits, DataInfo(input_shape=(3, size, size), num_outputs=len(classes),
                            augment=options.augment)
