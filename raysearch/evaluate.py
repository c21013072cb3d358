"""The champion's scores on the test split, computed by the driver (not worker code), and an
example of what it reads, for its MLflow model's signature."""

from typing import Any

import numpy as np
import torch

from raysearch import checkpoint
from raysearch.data.arrays import STREAMED
from raysearch.data.base import DataInfo, sample_inputs
from raysearch.fit.gradient import image_loader, streamed_metrics, streamed_sums
from raysearch.job import SearchSetup
from raysearch.metrics import (
    classification_metrics,
    classification_sums,
    forecast_metrics,
    forecast_sums,
    free_run_metrics,
    regression_metrics,
    regression_sums,
)
from raysearch.models import hyperparams_of


def evaluate(setup: SearchSetup, data: tuple, hyper: dict[str, Any], folder: str,
             split: str = "test") -> dict[str, float]:
    """The metrics of the model saved in `folder` (trained with `hyper`) on one split of
    `data` (the search's splits and DataInfo)."""
    family, hp = hyperparams_of(hyper, setup.model)
    splits, info = data
    model = checkpoint.load(folder)
    if isinstance(splits[split], STREAMED):
        cpu = torch.device("cpu")  # the driver reads in its own process
        regression = info.task == "regression"
        sums = streamed_sums(model, image_loader(splits[split], 256, None, 0, cpu), cpu,
                             regression)
        return streamed_metrics(sums, split, regression)
    x, y = splits[split]
    if info.free_run:
        scores = free_run_metrics(model, x, info, hp.washout)
        return {f"{split}_{key.removeprefix('val_')}": v for key, v in scores.items()}
    if info.task == "forecasting":
        warm = hp.washout if family.fit == "ridge" else hp.window
        return forecast_metrics(forecast_sums(model, x, y, 0, len(x), warm), split)
    if info.task == "regression":
        return regression_metrics(regression_sums(model, x, y), split)
    return classification_metrics(classification_sums(model, x, y), split)


def input_example(splits: dict, info: DataInfo) -> np.ndarray:
    """What the champion's MLflow model records as its input example: two test inputs."""
    return sample_inputs(splits, info, "test", 2).numpy()
