"""An echo state network's readout by ridge regression on its reservoir's states: each rank
harvests its share of a chunk, one all-reduce sums X^T X and X^T Y, every rank solves the same
system. One iteration absorbs one more chunk, so ASHA can stop a poor reservoir early."""

import time
from typing import Any

import torch
import torch.nn.functional as F

from raysearch.data import DataInfo, Split
from raysearch.data.arrays import MappedArrays
from raysearch.fit import TrialContext
from raysearch.metrics import (
    all_reduce_sum,
    classification_metrics,
    classification_sums,
    forecast_metrics,
    forecast_sums,
    free_run_metrics,
    not_finite,
    stretch,
)
from raysearch.models.esn import ESN, harvest


def fit_ridge(model: ESN, hp, splits: dict[str, Split], info: DataInfo, trial: TrialContext,
              state: dict[str, Any] | None) -> str | None:
    """Absorbs chunk after chunk from `state` (a checkpoint's train state, None for a new trial)
    and solves again after each; returns why it stopped on its own if a metric was not finite.

    With `seeds` > 1 the trial fits that many reservoirs (seeds seed, seed+1, ...) and reports
    each metric averaged over them, as the ESN literature scores a set of hyperparameters; the
    checkpoint holds the reservoir that scored best.
    """
    rank, world, device = trial.rank, trial.world, trial.device
    if isinstance(splits["train"], MappedArrays):
        return fit_streamed(model, hp, splits, info, trial, state)
    x, y = (t.to(device) for t in splits["train"])
    x_val, y_val = (t.to(device) for t in splits["val"])
    chunks = min(hp.chunks or trial.epochs, trial.epochs, len(x))
    o = info.num_outputs
    models = reservoirs(model, hp, device)
    if hp.center:  # before the ranks take their shares: every rank sees the same mean
        for m in models:
            m.center_on(x)

    if info.task == "forecasting":
        if hp.washout >= len(x_val):
            raise ValueError(f"washout ({hp.washout}) leaves no step of the validation series "
                             f"({len(x_val)} steps) to score")
        bounds = [len(x) * k // chunks for k in range(chunks + 1)]

        def chunk(m: ESN, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            lo, hi = stretch(bounds[k], bounds[k + 1], rank, world)
            return harvest(m, x, y, lo, hi, hp.washout, hp.parallel_pieces)

        def val_metrics(m: ESN) -> dict[str, float]:
            if info.free_run:
                return free_run_metrics(m, x_val, info, hp.washout, rank, world)
            lo, hi = stretch(0, len(x_val), rank, world)
            return forecast_metrics(all_reduce_sum(forecast_sums(
                m, x_val, y_val, lo, hi, hp.washout, hp.parallel_pieces)), "val")
    else:  # one pooled state per sequence, one-hot targets; this rank's share of the sequences
        x, y, x_val, y_val = x[rank::world], y[rank::world], x_val[rank::world], y_val[rank::world]
        bounds = [len(x) * k // chunks for k in range(chunks + 1)]

        def chunk(m: ESN, k: int) -> tuple[torch.Tensor, torch.Tensor]:
            part = slice(bounds[k], bounds[k + 1])
            return m.features(x[part]), F.one_hot(y[part], o).to(x.dtype)

        def val_metrics(m: ESN) -> dict[str, float]:
            return classification_metrics(
                all_reduce_sum(classification_sums(m, x_val, y_val)), "val")

    return solve(models, hp, info, trial, state, chunks, chunk, val_metrics)


def reservoirs(model: ESN, hp, device: torch.device) -> list[ESN]:
    """The trial's `seeds` reservoirs: `model` and those of the next seeds."""
    return [model, *(ESN(**{**model.kwargs, "seed": hp.seed + i}).to(device)
                     for i in range(1, hp.seeds))]


def fit_streamed(model: ESN, hp, splits: dict, info: DataInfo, trial: TrialContext,
                 state: dict[str, Any] | None) -> str | None:
    """fit_ridge on a classification set read from memory-mapped files (MappedArrays): a
    chunk of this rank's share of the sequences at a time, never the whole split."""
    rank, world, device = trial.rank, trial.world, trial.device
    train, val = splits["train"], splits["val"]
    chunks = min(hp.chunks or trial.epochs, trial.epochs, len(train))
    models = reservoirs(model, hp, device)
    if hp.center:  # the mean of every valid step of the training split, as center_on takes it
        total, count = 0.0, 0
        for x, _ in train.batches():
            steps = x.reshape(-1, x.shape[-1])
            steps = steps[~torch.isnan(steps).any(dim=1)].double()
            total, count = total + steps.sum(0), count + len(steps)
        for m in models:
            m.input_center.copy_(total / count)
    mine = train.subset(torch.arange(rank, len(train), world))
    val = val.subset(torch.arange(rank, len(val), world))
    bounds = [len(mine) * k // chunks for k in range(chunks + 1)]

    def chunk(m: ESN, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = mine.rows(mine.index[bounds[k]:bounds[k + 1]])
        return m.features(x.to(device)), F.one_hot(y.to(device), info.num_outputs).float()

    def val_metrics(m: ESN) -> dict[str, float]:
        sums = sum((classification_sums(m, x.to(device), y.to(device)) for x, y in val.batches()),
                   torch.zeros(3, device=device))
        return classification_metrics(all_reduce_sum(sums), "val")

    return solve(models, hp, info, trial, state, chunks, chunk, val_metrics)


def solve(models: list[ESN], hp, info: DataInfo, trial: TrialContext,
          state: dict[str, Any] | None, chunks: int, chunk, val_metrics) -> str | None:
    """Chunk after chunk: every reservoir's sums of this rank's `chunk(m, k)` (features,
    targets), all-reduced, its readout solved, `val_metrics(m)` scored, the epoch reported."""
    model, device, o = models[0], trial.device, info.num_outputs
    d = model.state_size + 1
    size = d * d + d * o + o + 1  # X^T X, X^T Y, sum Y^2 and the count of one reservoir
    # every reservoir's sums, flat: the one tensor that is all-reduced
    sums = torch.zeros(len(models) * size, dtype=torch.float64, device=device)
    start = 0
    if state:
        sums, start = state["sums"].to(device), state["chunk"]

    for k in range(start, chunks):
        began = time.perf_counter()
        local = []
        for m in models:
            features, targets = chunk(m, k)
            a = torch.cat([features, features.new_ones(len(features), 1)], dim=1).double()
            t = targets.double()
            local += [(a.T @ a).flatten(), (a.T @ t).flatten(), (t * t).sum(0),
                      a.new_tensor([len(a)])]
        sums += all_reduce_sum(torch.cat(local))
        scores = []
        for i, m in enumerate(models):
            own = sums[i * size:(i + 1) * size]
            xtx, xty = own[:d * d].view(d, d), own[d * d:d * d + d * o].view(d, o)
            yty, n = own[d * d + d * o:-1], own[-1]
            eye = torch.eye(d, dtype=xtx.dtype, device=device)
            w = torch.linalg.solve(xtx + hp.ridge * eye, xty)
            with torch.no_grad():
                m.readout.weight.copy_(w[:-1].T)
                m.readout.bias.copy_(w[-1])
            train_sse = yty.sum() - 2 * (w * xty).sum() + (w * (xtx @ w)).sum()
            scores.append({"train_loss": float(train_sse / (n * o)), **val_metrics(m)})

        metrics = {"epoch": k + 1, **{key: sum(s[key] for s in scores) / len(scores)
                                      for key in scores[0]},
                   "epoch_s": time.perf_counter() - began}
        if reason := not_finite(metrics):
            return reason
        pick = min if trial.mode == "min" else max
        best = pick(range(len(models)), key=lambda i: scores[i][trial.metric])
        if trial.report(metrics, models[best], {"sums": sums.cpu(), "chunk": k + 1}):
            return None
    return None
