"""What every data set declares, so a spec can be checked before anything runs."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel

Split = tuple[torch.Tensor, torch.Tensor]

CLASSIFICATION_METRICS = ("val_accuracy", "val_loss")
FORECASTING_METRICS = ("val_nrmse", "val_mse")


@dataclass(frozen=True)
class DataInfo:
    input_shape: tuple[int, ...]  # one example: (C, H, W) images, (features,) per step sequences
    num_outputs: int  # classes, or forecast dimensions


@dataclass(frozen=True)
class DataSet:
    name: str
    options: type[BaseModel]  # the data set's own keys under `data:`, with defaults
    kind: Literal["image", "sequence"]
    task: Literal["classification", "forecasting"]
    metrics: tuple[str, ...]  # what a trial on it reports, besides `epoch` and `train_loss`
    load: Callable[[BaseModel], tuple[dict[str, Split], DataInfo]]  # splits "train", "val", "test"
