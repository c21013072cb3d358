"""Scores as sums that add up across ranks, and the metrics from the totals.

Every rank scores its share of a split; one all-reduce of the sums gives each rank the metric of
the whole split, so rank 0's report covers every validation example and all ranks stop together
when a metric is not finite.
"""

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from raysearch.data import DataInfo
from raysearch.models.esn import ESN, harvest


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def not_finite(metrics: dict[str, float]) -> str | None:
    """Why the trial cannot go on, if a metric is NaN or infinite."""
    for key, value in metrics.items():
        if not math.isfinite(value):
            return f"{key} is {value} at epoch {metrics['epoch']}"
    return None


def stretch(lo: int, hi: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous share of steps [lo, hi)."""
    return lo + (hi - lo) * rank // world, lo + (hi - lo) * (rank + 1) // world


@torch.no_grad()
def classification_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return torch.stack([F.cross_entropy(logits, y, reduction="sum"),
                        (logits.argmax(1) == y).sum().float(), logits.new_tensor(float(len(y)))])


def classification_metrics(sums: torch.Tensor, split: str) -> dict[str, float]:
    loss, correct, n = sums.tolist()
    return {f"{split}_loss": loss / n, f"{split}_accuracy": correct / n}


@torch.no_grad()
def regression_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared and absolute errors and the targets' sums, of targets y (N, 1)."""
    err = (model(x) - y).double()
    t = y.double()
    return torch.stack([(err * err).sum(), err.abs().sum(), t.sum(), (t * t).sum(),
                        t.new_tensor(float(len(y)))])


def regression_metrics(sums: torch.Tensor, split: str) -> dict[str, float]:
    """RMSE, MAE and R² (scikit-learn's r2_score: 1 - SSE / the targets' sum of squares about
    their mean) of a split."""
    sse, sae, s1, s2, n = sums.double().tolist()
    spread = s2 - s1 * s1 / n
    return {f"{split}_rmse": math.sqrt(sse / n), f"{split}_mae": sae / n,
            f"{split}_r2": 1 - sse / spread if spread > 0 else float(sse == 0)}


@torch.no_grad()
def forecast_sums(model: nn.Module, u: torch.Tensor, y: torch.Tensor, lo: int, hi: int,
                  washout: int, pieces: int = 1) -> torch.Tensor:
    """Squared error and target sums over steps [lo, hi) of one series, each step predicted by a
    model that has read at least `washout` steps before it (from a zero state)."""
    if isinstance(model, ESN):
        states, targets = harvest(model, u, y, lo, hi, washout, pieces)
        predictions = model.readout(states)
    else:
        start, first = max(0, lo - washout), max(lo, washout)
        targets = y[first:hi]
        predictions = model(u[None, start:hi])[0, first - start:] if first < hi else targets
    outputs = targets.shape[-1]
    err = (predictions - targets).double().reshape(-1, outputs)
    t = targets.double().reshape(-1, outputs)
    return torch.stack([(err * err).sum(0), t.sum(0), (t * t).sum(0),
                        t.new_full((outputs,), float(len(t)))])


def forecast_metrics(sums: torch.Tensor, split: str) -> dict[str, float]:
    """MSE, and NRMSE: the RMSE over the standard deviation of the targets; each per target
    (the last dimension of `sums`, one column per target), averaged over the targets."""
    sse, s1, s2, n = sums.double()
    mse = sse / n
    variance = s2 / n - (s1 / n) ** 2
    return {f"{split}_mse": mse.mean().item(),
            f"{split}_nrmse": (mse / variance).sqrt().mean().item()}


@torch.no_grad()
def free_run_metrics(model: ESN, u: torch.Tensor, info: DataInfo, washout: int,
                     rank: int = 0, world: int = 1) -> dict[str, float]:
    """Jaeger's protocol (NRMSE84 when info.free_run is 84): from info.free_runs starting points
    across the series, the reservoir reads info.free_run_warmup true steps (the `washout` if
    longer) from zero, then runs info.free_run steps on its own output; the error of the last,
    over the series' standard deviation. This rank scores its share of the runs; the sums are
    all-reduced."""
    warmup, steps = max(washout, info.free_run_warmup), info.free_run
    if warmup + steps > len(u):
        raise ValueError(f"the free runs' warm-up ({warmup} steps: data.warmup, or the washout "
                         f"if longer) + horizon ({steps}) is longer than the series "
                         f"({len(u)} steps)")
    starts = torch.linspace(warmup, len(u) - steps, info.free_runs).long()[rank::world]
    if len(starts):
        read = torch.stack([u[p - warmup:p] for p in starts])
        last = model.generate(read, steps)[:, -1]
        err = (last - torch.stack([u[p + steps - 1] for p in starts])).double()
        sums = torch.stack([(err * err).sum(0), err.new_full((err.shape[-1],), len(err))])
    else:
        sums = torch.zeros(2, u.shape[-1], dtype=torch.float64, device=u.device)
    sse, n = all_reduce_sum(sums)
    mse = sse / n  # per series of a multivariate one, each over its own variance, averaged
    return {"val_mse": mse.mean().item(),
            "val_nrmse": (mse / u.double().var(0, unbiased=False)).sqrt().mean().item()}
