"""scikit-learn's bundled 8x8 handwritten digits: real data that needs no download. As images
(`digits`), or read row by row as sequences of 8 steps of 8 pixels (`seq_digits`), for the
recurrent models and echo state networks."""

import torch
from pydantic import BaseModel, ConfigDict, Field

from raysearch.data.base import DataInfo, Split


class DigitsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    split_seed: int = 0


def load(options: DigitsOptions) -> tuple[dict[str, Split], DataInfo]:
    # Imported here: scikit-learn costs about a second of import, which the Train workers (they
    # read the splits from the object store) need not pay.
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(options.split_seed))
    n_val, n_test = int(len(x) * options.val_fraction), int(len(x) * options.test_fraction)
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    splits = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
    return splits, DataInfo(input_shape=(1, 8, 8), num_outputs=10)


def load_sequences(options: DigitsOptions) -> tuple[dict[str, Split], DataInfo]:
    splits, _ = load(options)
    rows = {name: (x.reshape(-1, 8, 8), y) for name, (x, y) in splits.items()}
    return rows, DataInfo(input_shape=(8,), num_outputs=10)
