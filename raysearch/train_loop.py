"""What every Ray Train worker of a trial runs: build the model, train, report once per epoch.

Each report carries metrics over the whole validation set (every rank scores its shard, one
all-reduce sums them) and a checkpoint written by rank 0. A restarted worker group resumes from
the latest checkpoint. Gradient models train with DDP; echo state networks solve their readout
by ridge regression over X^T X and X^T Y summed across ranks.
"""

import math
import tempfile
import time
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from raysearch import checkpoint
from raysearch.data import DataInfo, Split
from raysearch.models import MODELS


def train_loop(config: dict[str, Any]) -> str | None:
    """Trains until the last epoch or ASHA's stop; returns why it stopped on its own if a metric
    was not finite (rank 0's return value reaches the trial as the Result's return_value)."""
    setup = config["setup"]
    family = MODELS[setup["model"]]
    hp = family.hyperparams(**config["hyper"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()

    # Loaded once by the driver, read from the node's object store: no trial pays for loading
    # it or for importing its loader.
    splits, info = ray.get(setup["data_ref"])
    torch.manual_seed(hp.seed)
    model = family.build(hp, info).to(device)
    resume = ray.train.get_checkpoint()
    if resume:
        with resume.as_directory() as folder:
            model.load_state_dict(checkpoint.load_weights(folder))
            state = checkpoint.load_train_state(folder)
    else:
        state = None

    fit = fit_ridge if family.fit == "ridge" else fit_gradient
    return fit(model, hp, splits, info, setup, state, rank, world, device)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def not_finite(metrics: dict[str, float]) -> str | None:
    """Why the trial cannot go on, if a metric is NaN or infinite. Every rank sees the same
    all-reduced values, so all ranks stop together."""
    for key, value in metrics.items():
        if not math.isfinite(value):
            return f"{key} is {value} at epoch {metrics['epoch']}"
    return None


def report(metrics: dict[str, float], setup: dict[str, Any], model: nn.Module, rank: int,
           train_state: dict[str, Any]) -> bool:
    """Every rank reports (it is a barrier); rank 0 alone writes the checkpoint. Returns whether
    ASHA stopped the trial, which every rank hears at its rungs before training further."""
    with tempfile.TemporaryDirectory() as folder:
        ckpt = None
        if rank == 0:
            checkpoint.save(folder, setup["model"], model, metrics, train_state)
            ckpt = ray.train.Checkpoint.from_directory(folder)
        ray.train.report(metrics, checkpoint=ckpt)
    if metrics["epoch"] in setup["rungs"]:
        return ray.get(setup["decisions"].wait.remote(setup["trial_id"], metrics["epoch"]))
    return False


# --- scoring: sums that add up across ranks, then the metrics from the totals -----------------


@torch.no_grad()
def classification_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return torch.stack([F.cross_entropy(logits, y, reduction="sum"),
                        (logits.argmax(1) == y).sum().float(), logits.new_tensor(float(len(y)))])


def classification_metrics(sums: torch.Tensor, split: str) -> dict[str, float]:
    loss, correct, n = sums.tolist()
    return {f"{split}_loss": loss / n, f"{split}_accuracy": correct / n}


@torch.no_grad()
def forecast_sums(model: nn.Module, u: torch.Tensor, y: torch.Tensor, lo: int, hi: int,
                  washout: int) -> torch.Tensor:
    states, targets = harvest(model, u, y, lo, hi, washout)
    err = (model.readout(states) - targets).double()
    t = targets.double()
    return torch.stack([(err * err).sum(), t.sum(), (t * t).sum(), t.new_tensor(float(t.numel()))])


def forecast_metrics(sums: torch.Tensor, split: str) -> dict[str, float]:
    """MSE, and NRMSE: the RMSE over the standard deviation of the targets."""
    sse, s1, s2, n = sums.tolist()
    mse, variance = sse / n, s2 / n - (s1 / n) ** 2
    return {f"{split}_mse": mse, f"{split}_nrmse": math.sqrt(mse / variance)}


# --- gradient-trained models -------------------------------------------------------------------


def make_optimizer(hp, params) -> torch.optim.Optimizer:
    if hp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum,
                               weight_decay=hp.weight_decay)
    cls = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=hp.lr, weight_decay=hp.weight_decay)


def make_schedule(hp, optimizer, total_steps: int):
    if hp.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if hp.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr,
                                                   total_steps=total_steps)
    return None


def fit_gradient(model: nn.Module, hp, splits: dict[str, Split], info: DataInfo,
                 setup: dict[str, Any], state: dict[str, Any] | None, rank: int, world: int,
                 device: torch.device) -> str | None:
    x, y = splits["train"]
    # Equal shards keep every rank at the same number of steps, as DDP needs.
    per_rank = len(x) // world
    x, y = x[rank::world][:per_rank].to(device), y[rank::world][:per_rank].to(device)
    x_val, y_val = (t[rank::world].to(device) for t in splits["val"])
    batch = max(1, hp.batch_size // world)
    steps = math.ceil(per_rank / batch)
    epochs = setup["max_t"]

    ddp_model = ray.train.torch.prepare_model(model)
    optimizer = make_optimizer(hp, ddp_model.parameters())
    schedule = make_schedule(hp, optimizer, epochs * steps)
    start = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        if schedule:
            schedule.load_state_dict(state["schedule"])
        start = state["epoch"]

    for epoch in range(start, epochs):
        began = time.perf_counter()
        ddp_model.train()
        order = torch.randperm(per_rank, generator=torch.Generator().manual_seed(hp.seed + epoch))
        loss_sum = torch.zeros((), device=device)
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch].to(device)
            loss = F.cross_entropy(ddp_model(x[idx]), y[idx], label_smoothing=hp.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule:
                schedule.step()
            loss_sum += loss.detach()

        ddp_model.eval()
        sums = torch.cat([classification_sums(ddp_model, x_val, y_val), (loss_sum / steps)[None]])
        sums = all_reduce_sum(sums)
        metrics = {"epoch": epoch + 1, "train_loss": sums[-1].item() / world,
                   **classification_metrics(sums[:-1], "val"),
                   "epoch_s": time.perf_counter() - began}
        if reason := not_finite(metrics):
            return reason
        train_state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                       "schedule": schedule.state_dict() if schedule else {}}
        if report(metrics, setup, model, rank, train_state):
            return None
    return None


# --- echo state networks -----------------------------------------------------------------------


def harvest(model: nn.Module, u: torch.Tensor, y: torch.Tensor, lo: int, hi: int,
            washout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """States and targets for steps [lo, hi) of one series.

    The reservoir starts from zero `washout` steps before `lo` (earlier data, where there is any)
    and those states are dropped, so a stretch cut out of a long series scores every step of it;
    the series' own first `washout` steps are never scored.
    """
    start = max(0, lo - washout)
    first = max(lo, washout)
    if first >= hi:
        return u.new_zeros(0, model.state_size), y[:0]
    states = model.states(u[None, start:hi])[0]
    return states[first - start:], y[first:hi]


def stretch(lo: int, hi: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous share of steps [lo, hi)."""
    return lo + (hi - lo) * rank // world, lo + (hi - lo) * (rank + 1) // world


def fit_ridge(model: nn.Module, hp, splits: dict[str, Split], info: DataInfo,
              setup: dict[str, Any], state: dict[str, Any] | None, rank: int, world: int,
              device: torch.device) -> str | None:
    u, y = (t.to(device) for t in splits["train"])
    u_val, y_val = (t.to(device) for t in splits["val"])
    if hp.washout >= len(u_val):
        raise ValueError(f"washout ({hp.washout}) leaves no step of the validation series "
                         f"({len(u_val)} steps) to score")
    chunks = min(hp.chunks or setup["max_t"], setup["max_t"], len(u))
    bounds = [len(u) * k // chunks for k in range(chunks + 1)]
    d, o = model.state_size + 1, info.num_outputs
    # X^T X, X^T Y, sum Y^2 and the count, flat: the one tensor that is all-reduced
    sums = torch.zeros(d * d + d * o + o + 1, dtype=torch.float64, device=device)
    start = 0
    if state:
        sums, start = state["sums"].to(device), state["chunk"]

    for k in range(start, chunks):
        began = time.perf_counter()
        states, targets = harvest(model, u, y, *stretch(bounds[k], bounds[k + 1], rank, world),
                                  hp.washout)
        x = torch.cat([states, states.new_ones(len(states), 1)], dim=1).double()
        t = targets.double()
        local = torch.cat([(x.T @ x).flatten(), (x.T @ t).flatten(), (t * t).sum(0),
                           x.new_tensor([len(x)])])
        sums += all_reduce_sum(local)
        xtx, xty = sums[:d * d].view(d, d), sums[d * d:d * d + d * o].view(d, o)
        yty, n = sums[d * d + d * o:-1], sums[-1]
        w = torch.linalg.solve(xtx + hp.ridge * torch.eye(d, dtype=xtx.dtype, device=device), xty)
        with torch.no_grad():
            model.readout.weight.copy_(w[:-1].T)
            model.readout.bias.copy_(w[-1])
        train_sse = yty.sum() - 2 * (w * xty).sum() + (w * (xtx @ w)).sum()

        val = forecast_sums(model, u_val, y_val, *stretch(0, len(u_val), rank, world), hp.washout)
        metrics = {"epoch": k + 1, "train_loss": float(train_sse / (n * o)),
                   **forecast_metrics(all_reduce_sum(val), "val"),
                   "epoch_s": time.perf_counter() - began}
        if reason := not_finite(metrics):
            return reason
        if report(metrics, setup, model, rank, {"sums": sums.cpu(), "chunk": k + 1}):
            return None
    return None


def evaluate(setup: dict[str, Any], hyper: dict[str, Any], folder: str, split: str = "test"
             ) -> dict[str, float]:
    """A saved model's metrics on one split, in this process (the driver scores the champion)."""
    family = MODELS[setup["model"]]
    hp = family.hyperparams(**hyper)
    splits, _ = ray.get(setup["data_ref"])
    model = checkpoint.load(folder)
    x, y = splits[split]
    if family.fit == "ridge":
        return forecast_metrics(forecast_sums(model, x, y, 0, len(x), hp.washout), split)
    return classification_metrics(classification_sums(model, x, y), split)
