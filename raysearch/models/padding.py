"""Variable-length sequences travel as one (batch, time, features) tensor padded with NaN after
each sequence's valid steps (the `sequences` data set pads them so, whatever its file held
there; an input to a registered model follows the same rule). A model finds the valid steps
from the NaNs and reads only those: no padding value can change a prediction."""

import torch


def valid_steps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`x` with its padding set to 0, and the (batch, time) mask of its valid steps; None for
    the mask when every step is valid (a fixed-length set: the fast path, unchanged)."""
    padded = torch.isnan(x).any(dim=-1)
    if not padded.any():
        return x, None
    return x.masked_fill(padded[..., None], 0.0), ~padded


def lengths(valid: torch.Tensor) -> torch.Tensor:
    """Valid steps per sequence (at least one: the data set refuses an empty sequence)."""
    return valid.sum(dim=1).clamp(min=1)
