"""How a model family is trained inside a trial's workers: by gradient descent with DDP
(gradient.py), or an echo state network's readout by ridge regression (ridge.py). Both train
epoch by epoch from an optional saved state and hand every epoch to `TrialContext.report`."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class TrialContext:
    """What a fit needs of its trial besides the model, its hyperparameters and the data."""

    rank: int
    world: int
    device: torch.device
    epochs: int  # the scheduler's max_t
    metric: str  # the objective, to pick which of several reservoirs to checkpoint
    mode: str
    decoders: int  # processes that decode a streamed image split, beside the training one
    # one epoch's metrics, the model to checkpoint and what resuming needs -> whether to stop
    report: Callable[[dict[str, float], nn.Module, dict[str, Any]], bool]
