"""What a registered model answers, the same in `mlflow.pyfunc`, `mlflow models serve` and the
signature it is registered with: class probabilities for a classifier, a value per example for
a regression, a prediction per step for a forecaster."""

import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from torch import nn


def predict(model: nn.Module, x: np.ndarray, task: str) -> np.ndarray:
    """`x`: float32 images (N, C, H, W) normalized as the data set was, sequences
    (N, T, features) or table rows (N, features) -> (N, classes) probabilities, (N, 1) values,
    or (N, T, outputs) forecasts."""
    with torch.no_grad():
        out = model(torch.as_tensor(np.asarray(x, dtype=np.float32)))
    return (out.softmax(-1) if task == "classification" else out).numpy()


def signature(example: np.ndarray, prediction: np.ndarray) -> ModelSignature:
    """The shapes `example` and its `prediction` have, with any batch size; a sequence input
    (N, T, features) takes any length T, and a forecast (N, T, outputs) follows it (MLflow's
    inferred signature would fix T to the example's)."""
    sequences = example.ndim == 3

    def spec(a: np.ndarray, free_time: bool) -> Schema:
        shape = (-1, -1, *a.shape[2:]) if free_time else (-1, *a.shape[1:])
        return Schema([TensorSpec(a.dtype, shape)])

    return ModelSignature(spec(example, sequences),
                          spec(prediction, sequences and prediction.ndim == 3))
