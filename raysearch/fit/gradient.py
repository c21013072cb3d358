"""Gradient-trained models (CNN, ResNets, recurrent nets) with DDP across a trial's workers:
equal shards per rank, on-device augmentation for photos, bf16 + channels-last on a GPU."""

import contextlib
import math
import time
from typing import Any

import ray.train.torch
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from raysearch.data import DataInfo, Split
from raysearch.data.arrays import STREAMED
from raysearch.fit import TrialContext
from raysearch.metrics import (
    all_reduce_sum,
    classification_metrics,
    classification_sums,
    forecast_metrics,
    forecast_sums,
    not_finite,
    regression_metrics,
    regression_sums,
    stretch,
)


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


def windows(u: torch.Tensor, y: torch.Tensor, length: int) -> Split:
    """A series as overlapping training windows (half a window apart): (N, length, features)."""
    step = max(1, length // 2)
    return u.unfold(0, length, step).transpose(1, 2), y.unfold(0, length, step).transpose(1, 2)


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding and horizontal flip of a batch (N, C, H, W), on the
    batch's own device: a CPU DataLoader cannot feed a GPU that trains a ResNet-18 (DESIGN.md,
    measured anchors)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), generator=generator).to(x.device)
    flip = (torch.rand(n, 1, 1, 1, generator=generator) < 0.5).to(x.device)
    rows = torch.arange(h, device=x.device).view(1, 1, h, 1) + dy
    cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
    cols = torch.where(flip, w - 1 - cols, cols) + dx
    index = (rows * (w + 2 * pad) + cols).expand(n, x.shape[1], h, w)
    return padded.flatten(2).gather(2, index.flatten(2)).view_as(x)


def image_loader(files, batch: int, sampler, processes: int, device: torch.device
                 ) -> DataLoader:
    """Batches of a streamed split (ImageFiles: uint8 images; MappedArrays: rows of
    memory-mapped arrays) as drawn by `sampler`, read by `processes` more processes (0: this
    one), which stay up from one pass over the files to the next."""
    return DataLoader(files, batch_size=batch, sampler=sampler, num_workers=processes,
                      pin_memory=device.type == "cuda", persistent_workers=processes > 0)


@torch.no_grad()
def streamed_sums(model: nn.Module, loader: DataLoader, device: torch.device,
                  regression: bool = False) -> torch.Tensor:
    """classification_sums (regression_sums) over the batches of a streamed split."""
    sums_of = regression_sums if regression else classification_sums
    normalize = loader.dataset.normalizer(device)
    parts = [sums_of(model, normalize(x.to(device)), y.to(device)) for x, y in loader]
    if not parts:  # this rank's share of the split is empty
        return torch.zeros(5, dtype=torch.float64, device=device) if regression else torch.zeros(
            3, device=device)
    return torch.stack(parts).sum(0)


def streamed_metrics(sums: torch.Tensor, split: str, regression: bool) -> dict[str, float]:
    return (regression_metrics if regression else classification_metrics)(sums, split)


def fit_gradient(model: nn.Module, hp, splits: dict[str, Split], info: DataInfo,
                 trial: TrialContext, state: dict[str, Any] | None) -> str | None:
    """Trains epoch by epoch from `state` (a checkpoint's train state, None for a new trial)
    until the last epoch or the scheduler's stop; returns why it stopped on its own if a metric
    was not finite."""
    rank, world, device = trial.rank, trial.world, trial.device
    forecasting = info.task == "forecasting"
    batch = max(1, hp.batch_size // world)
    # On a GPU, convnets train in bf16 with channels-last tensors: about 2.5x the images/s of
    # fp32 on an H100 (DESIGN.md, measured anchors).
    fast = device.type == "cuda" and len(info.input_shape) == 3
    layout = torch.channels_last if fast else torch.contiguous_format
    streamed = isinstance(splits["train"], STREAMED)
    regression = info.task == "regression"
    if streamed:
        # DistributedSampler's drop_last gives every rank the same number of steps
        sampler = DistributedSampler(splits["train"], num_replicas=world, rank=rank,
                                     seed=hp.seed, drop_last=True)
        loader = image_loader(splits["train"], batch, sampler, trial.decoders, device)
        normalize = splits["train"].normalizer(device)
        steps = len(loader)
        # this rank's share of the validation images, every world-th
        val_loader = image_loader(splits["val"], batch, range(rank, len(splits["val"]), world),
                                  trial.decoders, device)
    else:
        x, y = splits["train"]
        if forecasting:  # a recurrent net learns a series from windows of it, every step a target
            x, y = windows(x, y, hp.window)
        # Equal shards keep every rank at the same number of steps, as DDP needs.
        per_rank = len(x) // world
        x, y = x[rank::world][:per_rank].to(device), y[rank::world][:per_rank].to(device)
        x = x.contiguous(memory_format=layout) if fast else x
        steps = math.ceil(per_rank / batch)
        u_val, y_val = (t.to(device) for t in splits["val"])

    def batches(epoch: int):
        if streamed:
            sampler.set_epoch(epoch)
            for images, labels in loader:
                images = images.to(device, non_blocking=True)
                yield (normalize(images).contiguous(memory_format=layout),
                       labels.to(device, non_blocking=True))
            return
        order = torch.randperm(per_rank, generator=torch.Generator().manual_seed(hp.seed + epoch))
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch].to(device)
            yield x[idx], y[idx]

    # a regression learns the standardized target: its loss is the MSE over the target's
    # variance on the training split (1 predicts its mean), whatever its units
    spread = info.target_scaling[1] ** 2 if info.target_scaling else 1.0

    def loss_of(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if forecasting or regression:
            return F.mse_loss(output, target) / spread
        return F.cross_entropy(output, target, label_smoothing=hp.label_smoothing)

    def val_metrics() -> dict[str, float]:
        if streamed:
            sums = streamed_sums(model, val_loader, device, regression)
            return streamed_metrics(all_reduce_sum(sums), "val", regression)
        if forecasting:
            lo, hi = stretch(0, len(u_val), rank, world)
            return forecast_metrics(
                all_reduce_sum(forecast_sums(model, u_val, y_val, lo, hi, hp.window)), "val")
        if regression:
            sums = regression_sums(model, u_val[rank::world], y_val[rank::world])
            return regression_metrics(all_reduce_sum(sums), "val")
        sums = classification_sums(model, u_val[rank::world], y_val[rank::world])
        return classification_metrics(all_reduce_sum(sums), "val")

    model = model.to(memory_format=layout)
    precision = (torch.autocast("cuda", dtype=torch.bfloat16) if fast
                 else contextlib.nullcontext())
    ddp_model = ray.train.torch.prepare_model(model, move_to_device=device)
    optimizer = make_optimizer(hp, ddp_model.parameters())
    schedule = make_schedule(hp, optimizer, trial.epochs * steps)
    start = 0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        if schedule:
            schedule.load_state_dict(state["schedule"])
        start = state["epoch"]

    for epoch in range(start, trial.epochs):
        began = time.perf_counter()
        ddp_model.train()
        loss_sum = torch.zeros((), device=device)
        # seeded per epoch and rank: a trial resumed at this epoch crops and flips as the
        # uninterrupted one would
        shuffle = torch.Generator().manual_seed(hp.seed + 1_000_003 * rank + epoch)
        for inputs, targets in batches(epoch):
            if info.augment:
                inputs = augment(inputs, shuffle)
            with precision:
                loss = loss_of(ddp_model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule:
                schedule.step()
            loss_sum += loss.detach()

        ddp_model.eval()
        train_loss = all_reduce_sum((loss_sum / steps)[None]).item() / world
        metrics = {"epoch": epoch + 1, "train_loss": train_loss, **val_metrics(),
                   "epoch_s": time.perf_counter() - began}
        if reason := not_finite(metrics):
            return reason
        train_state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(),
                       "schedule": schedule.state_dict() if schedule else {}}
        if trial.report(metrics, model, train_state):
            return None
    return None
