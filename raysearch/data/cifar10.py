"""CIFAR-10 through torchvision, from a copy on disk (`data.root`, RAYSEARCH_DATA, ./data).

It is downloaded only when the machine is online; otherwise the error says which file to put
where. Held in memory as normalized tensors (50,000 x 3 x 32 x 32 floats, 600 MB), so a GPU
worker keeps its shard on the device and augments there.
"""

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.base import (
    DataError,
    DataInfo,
    Split,
    data_root,
    download_or_say,
    normalized,
    split_indices,
)

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MEAN = torch.tensor([0.4914, 0.4822, 0.4465])
STD = torch.tensor([0.2470, 0.2435, 0.2616])


class Cifar10Options(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    root: str | None = None
    val_fraction: float = Field(0.1, gt=0, lt=0.5)  # of the 50,000 training images
    split_seed: int = 0
    augment: bool = True


def _dataset(root, train: bool):
    from torchvision.datasets import CIFAR10

    try:
        return CIFAR10(str(root), train=train, download=False)
    except RuntimeError:
        pass
    made = not root.exists()  # torchvision makes the folder before it downloads
    try:
        with download_or_say(
                f"cifar10: no copy in {root.resolve()} and the download failed ({{reason}}); "
                f"put cifar-10-python.tar.gz (from {URL}) or its extracted folder "
                "cifar-10-batches-py/ there, or point data.root or RAYSEARCH_DATA at the folder "
                "that holds it"):
            return CIFAR10(str(root), train=train, download=True)
    except DataError:
        if made and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        raise

def load(options: Cifar10Options) -> tuple[dict[str, Split], DataInfo]:
    root = data_root(options.root)
    train, test = _dataset(root, True), _dataset(root, False)

    def tensors(ds) -> Split:
        x = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2)
        return normalized(x, MEAN, STD), torch.tensor(ds.targets, dtype=torch.long)

    (x, y), test_split = tensors(train), tensors(test)
    fit, val = split_indices(len(x), options.val_fraction, options.split_seed)
    splits = {"train": (x[fit], y[fit]), "val": (x[val], y[val]), "test": test_split}
    return splits, DataInfo(input_shape=(3, 32, 32), num_outputs=10, augment=options.augment,
                            photos=(tuple(MEAN.tolist()), tuple(STD.tolist())))
