"""The champion's diagnostics on the test split, as files for MLflow (computed by the driver):
- a classifier: scikit-learn's confusion matrix (confusion_matrix.png) and per-class
  precision, recall and F1 (classification_report.txt);
- a regression: scikit-learn's predicted-against-actual plot (prediction_error.png);
- a forecaster: its prediction against the truth over a stretch of the split (forecast.png);
  a generative ESN: its free runs against the true series (free_runs.png).
"""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raysearch import checkpoint
from raysearch.data.arrays import STREAMED, MappedArrays
from raysearch.data.base import ImageFiles, Split
from raysearch.fit.gradient import image_loader
from raysearch.job import SearchSetup
from raysearch.models import hyperparams_of

STRETCH = 500  # steps of a forecast plotted
FREE_RUNS = 3  # free runs plotted
MATRIX_VALUES = 30  # classes up to which the confusion matrix shows its counts and labels


def diagnose(setup: SearchSetup, data: tuple, hyper: dict[str, Any], folder: str, out: Path,
             split: str = "test") -> list[Path]:
    """Writes the diagnostics of the model saved in `folder` (trained with `hyper`) on one
    split of `data` (the search's splits and DataInfo) into `out`; the files written. Figures
    are drawn without pyplot, so the caller's matplotlib backend is left as it was."""
    family, hp = hyperparams_of(hyper, setup.model)
    splits, info = data
    model = checkpoint.load(folder)
    out.mkdir(parents=True, exist_ok=True)
    if info.task == "classification":
        labels, predicted = class_predictions(model, splits[split])
        return classification_files(labels, predicted, info.num_outputs, out, split,
                                    info.classes)
    if isinstance(splits[split], MappedArrays):  # a regression on a streamed table
        return [regression_plot(model, *splits[split].rows(), out, split)]
    u, y = splits[split]
    if info.task == "regression":
        return [regression_plot(model, u, y, out, split)]
    if info.free_run:
        warmup = max(hp.washout, info.free_run_warmup)
        return [free_run_plot(model, u, warmup, info.free_run, out, split)]
    warm = hp.washout if family.fit == "ridge" else hp.window
    return [forecast_plot(model, u, y, warm, out, split)]


@torch.no_grad()
def class_predictions(model: nn.Module, data: Split | ImageFiles | MappedArrays
                      ) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted class of every example of a split (tensors, or streamed files)."""
    if isinstance(data, STREAMED):
        cpu = torch.device("cpu")
        normalize = data.normalizer(cpu)
        pairs = [(labels, model(normalize(images)).argmax(1))
                 for images, labels in image_loader(data, 256, None, 0, cpu)]
        return (torch.cat([p[0] for p in pairs]).numpy(), torch.cat([p[1] for p in pairs]).numpy())
    x, y = data
    predicted = torch.cat([model(x[i:i + 1024]).argmax(1) for i in range(0, len(x), 1024)])
    return y.numpy(), predicted.numpy()


def classification_files(labels: np.ndarray, predicted: np.ndarray, classes: int, out: Path,
                         split: str, names: tuple[str, ...] | None = None) -> list[Path]:
    """`names`: the classes' names, where the data set gives them."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay, classification_report

    report = out / "classification_report.txt"
    report.write_text(classification_report(labels, predicted, labels=list(range(classes)),
                                            target_names=names, digits=4, zero_division=0))
    side = min(16, 1.5 + 0.5 * classes)  # inches: a thousand classes still make one page
    figure = Figure(figsize=(side, side))
    axes = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(labels, predicted, labels=list(range(classes)),
                                            ax=axes, colorbar=classes > MATRIX_VALUES,
                                            display_labels=names,
                                            include_values=classes <= MATRIX_VALUES)
    if classes > MATRIX_VALUES:
        axes.set_xticks([])
        axes.set_yticks([])
    axes.set_title(f"{split} split: {len(labels)} examples")
    matrix = out / "confusion_matrix.png"
    figure.savefig(matrix, dpi=100, bbox_inches="tight")
    return [report, matrix]


@torch.no_grad()
def regression_plot(model: nn.Module, x: torch.Tensor, y: torch.Tensor, out: Path, split: str
                    ) -> Path:
    from matplotlib.figure import Figure
    from sklearn.metrics import PredictionErrorDisplay

    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    PredictionErrorDisplay.from_predictions(y[:, 0].numpy(), model(x)[:, 0].numpy(),
                                            kind="actual_vs_predicted", ax=axes)
    axes.set_title(f"{split} split: {len(y)} examples")
    path = out / "prediction_error.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


@torch.no_grad()
def forecast_plot(model: nn.Module, u: torch.Tensor, y: torch.Tensor, warm: int, out: Path,
                  split: str) -> Path:
    """The model reads the split from its start; its first `warm` steps only warm it up."""
    from matplotlib.figure import Figure

    n = min(len(u), warm + STRETCH)
    predicted = model(u[None, :n])[0].numpy()
    truth = y[:n].numpy()
    figure = Figure(figsize=(10, 2.5 * predicted.shape[-1]))
    axes = figure.subplots(predicted.shape[-1], 1, squeeze=False)
    for k, ax in enumerate(axes[:, 0]):
        ax.plot(truth[:, k], label="truth", color="black", linewidth=1)
        ax.plot(predicted[:, k], label="prediction", color="tab:orange", linewidth=1)
        ax.axvspan(0, warm, color="grey", alpha=0.15, label="warm-up (not scored)")
        ax.set_xlabel(f"{split} step")
    axes[0, 0].legend(loc="upper right")
    path = out / "forecast.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


@torch.no_grad()
def free_run_plot(model: nn.Module, u: torch.Tensor, warmup: int, steps: int, out: Path,
                  split: str) -> Path:
    """Free runs as the free-run metrics make them: `warmup` true steps read, then `steps` on
    the model's own output."""
    from matplotlib.figure import Figure

    starts = torch.linspace(warmup, len(u) - steps, FREE_RUNS).long()
    figure = Figure(figsize=(10, 2.5 * len(starts)))
    axes = figure.subplots(len(starts), 1, squeeze=False)
    for p, ax in zip(starts.tolist(), axes[:, 0], strict=True):
        run = model.generate(u[None, p - warmup:p], steps)[0, :, 0].numpy()
        ax.plot(u[p:p + steps, 0].numpy(), label="series", color="black", linewidth=1)
        ax.plot(run, label="free run", color="tab:orange", linewidth=1)
        ax.set_xlabel(f"steps after {split} step {p}")
    axes[0, 0].legend(loc="upper right")
    path = out / "free_runs.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path
