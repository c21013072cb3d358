"""What every Ray Train worker of a trial runs: build the model, train, report once per epoch.

Each report carries metrics over the whole validation set (every rank scores its shard, one
all-reduce sums them) and a checkpoint written by rank 0. A restarted worker group resumes from
the latest checkpoint. Gradient models train with DDP; echo state networks solve their readout
by ridge regression over X^T X and X^T Y summed across ranks.
"""

import contextlib
import logging
import math
import tempfile
import time
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F
from ray.train.v2._internal.execution import context as train_context
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from raysearch import checkpoint
from raysearch.data import DataInfo, Split
from raysearch.data.base import ImageFiles
from raysearch.models import MODELS
from raysearch.models.esn import ESN


def train_loop(config: dict[str, Any]) -> str | None:
    """Trains until the last epoch or ASHA's stop; returns why it stopped on its own if a metric
    was not finite (rank 0's return value reaches the trial as the Result's return_value)."""
    # Ray Train logs its per-report INFO line under its source file's path, not under
    # `ray.train`, so the RunConfig's LoggingConfig (trial.py) misses that one logger
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    setup = config["setup"]
    family = MODELS[setup["model"]]
    hp = family.hyperparams(**config["hyper"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Ray gives a worker on a fake GPU node (cluster/local.yaml) a GPU id but no device
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")

    # Loaded once by the driver, read from the node's object store: no trial pays for loading
    # it or for importing its loader.
    splits, info = ray.get(setup["data_ref"])
    torch.manual_seed(hp.seed)
    model = family.build(hp, info).to(device)
    resume = ray.train.get_checkpoint()
    state = None
    if resume:
        with resume.as_directory() as folder:
            state = checkpoint.load_train_state(folder)
            # A reservoir is rebuilt from its seed and its readout solved again from the saved
            # sums; only gradient-trained weights come from the checkpoint.
            if family.fit == "gradient":
                model.load_state_dict(checkpoint.load_weights(folder))

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
    err = (predictions - targets).double()
    t = targets.double()
    return torch.stack([(err * err).sum(), t.sum(), (t * t).sum(), t.new_tensor(float(t.numel()))])


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
        sums = torch.stack([(err * err).sum(), err.new_tensor(float(err.numel()))])
    else:
        sums = torch.zeros(2, dtype=torch.float64, device=u.device)
    sse, n = all_reduce_sum(sums).tolist()
    mse = sse / n
    return {"val_mse": mse, "val_nrmse": math.sqrt(mse / u.double().var(unbiased=False).item())}


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


def image_loader(files: ImageFiles, batch: int, sampler, processes: int,
                 device: torch.device) -> DataLoader:
    """Batches of uint8 images as drawn by `sampler`, decoded by `processes` more processes
    (0: this one), which stay up from one pass over the files to the next."""
    return DataLoader(files, batch_size=batch, sampler=sampler, num_workers=processes,
                      pin_memory=device.type == "cuda", persistent_workers=processes > 0)


@torch.no_grad()
def streamed_sums(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    """classification_sums over the batches of a streamed split."""
    sums = torch.zeros(3, device=device)
    normalize = loader.dataset.normalizer(device)
    for images, labels in loader:
        sums += classification_sums(model, normalize(images.to(device)), labels.to(device))
    return sums


def fit_gradient(model: nn.Module, hp, splits: dict[str, Split], info: DataInfo,
                 setup: dict[str, Any], state: dict[str, Any] | None, rank: int, world: int,
                 device: torch.device) -> str | None:
    forecasting = info.task == "forecasting"
    batch = max(1, hp.batch_size // world)
    epochs = setup["max_t"]
    # On a GPU, convnets train in bf16 with channels-last tensors: about 2.5x the images/s of
    # fp32 on an H100 (DESIGN.md, measured anchors).
    fast = device.type == "cuda" and len(info.input_shape) == 3
    layout = torch.channels_last if fast else torch.contiguous_format
    streamed = isinstance(splits["train"], ImageFiles)
    if streamed:
        decoders = max(0, int(setup["resources"]["cpus_per_worker"]) - 1)  # the other CPUs
        # DistributedSampler's drop_last gives every rank the same number of steps
        sampler = DistributedSampler(splits["train"], num_replicas=world, rank=rank,
                                     seed=hp.seed, drop_last=True)
        loader = image_loader(splits["train"], batch, sampler, decoders, device)
        normalize = splits["train"].normalizer(device)
        steps = len(loader)
        # this rank's share of the validation images, every world-th
        val_loader = image_loader(splits["val"], batch, range(rank, len(splits["val"]), world),
                                  decoders, device)
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

    def loss_of(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if forecasting:
            return F.mse_loss(output, target)
        return F.cross_entropy(output, target, label_smoothing=hp.label_smoothing)

    def val_metrics() -> dict[str, float]:
        if streamed:
            sums = streamed_sums(model, val_loader, device)
            return classification_metrics(all_reduce_sum(sums), "val")
        if forecasting:
            lo, hi = stretch(0, len(u_val), rank, world)
            return forecast_metrics(
                all_reduce_sum(forecast_sums(model, u_val, y_val, lo, hi, hp.window)), "val")
        sums = classification_sums(model, u_val[rank::world], y_val[rank::world])
        return classification_metrics(all_reduce_sum(sums), "val")

    model = model.to(memory_format=layout)
    precision = (torch.autocast("cuda", dtype=torch.bfloat16) if fast
                 else contextlib.nullcontext())
    shuffle = torch.Generator().manual_seed(hp.seed + 1_000_003 * rank)
    ddp_model = ray.train.torch.prepare_model(model, move_to_device=device)
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
        loss_sum = torch.zeros((), device=device)
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
        if report(metrics, setup, model, rank, train_state):
            return None
    return None


# --- echo state networks -----------------------------------------------------------------------


def harvest(model: ESN, u: torch.Tensor, y: torch.Tensor, lo: int, hi: int, washout: int,
            pieces: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """States and targets for steps [lo, hi) of one series.

    The reservoir starts from zero `washout` steps before `lo` (earlier data, where there is any)
    and those states are dropped, so a stretch cut out of a long series scores every step of it;
    the series' own first `washout` steps are never scored. With `pieces` > 1 the stretch is cut
    into that many pieces, each started the same way, and they run side by side as one batch:
    after the washout a reservoir has forgotten its start (the echo state property), so the
    states match the sequential ones while the step loop is `pieces` times shorter.
    """
    first = max(lo, washout)
    if first >= hi:
        return u.new_zeros(0, model.state_size), y[:0]
    cuts = [first + (hi - first) * i // pieces for i in range(pieces + 1)]
    cuts = sorted(set(cuts))
    starts = [max(0, a - washout) for a in cuts[:-1]]
    longest = max(b - s for s, b in zip(starts, cuts[1:], strict=True))
    batch = u.new_zeros(len(starts), longest, u.shape[-1])
    for i, (s, b) in enumerate(zip(starts, cuts[1:], strict=True)):
        batch[i, :b - s] = u[s:b]  # padded at the end: later steps cannot change earlier states
    states = model.states(batch)
    kept = [states[i, a - s:b - s] for i, (s, a, b) in
            enumerate(zip(starts, cuts[:-1], cuts[1:], strict=True))]
    return torch.cat(kept), y[first:hi]


def stretch(lo: int, hi: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous share of steps [lo, hi)."""
    return lo + (hi - lo) * rank // world, lo + (hi - lo) * (rank + 1) // world


def fit_ridge(model: ESN, hp, splits: dict[str, Split], info: DataInfo, setup: dict[str, Any],
              state: dict[str, Any] | None, rank: int, world: int, device: torch.device
              ) -> str | None:
    """Ridge regression of the readout on reservoir features. Each iteration absorbs one more
    chunk of the training data into X^T X and X^T Y (one all-reduce) and solves again.

    With `seeds` > 1 the trial fits that many reservoirs (seeds seed, seed+1, ...) and reports
    each metric averaged over them, as the ESN literature scores a set of hyperparameters; the
    checkpoint holds the reservoir that scored best.
    """
    x, y = (t.to(device) for t in splits["train"])
    x_val, y_val = (t.to(device) for t in splits["val"])
    chunks = min(hp.chunks or setup["max_t"], setup["max_t"], len(x))
    o = info.num_outputs
    models = [model, *(ESN(**{**model.kwargs, "seed": hp.seed + i}).to(device)
                       for i in range(1, hp.seeds))]
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
        pick = min if setup["mode"] == "min" else max
        best = pick(range(len(models)), key=lambda i: scores[i][setup["metric"]])
        if report(metrics, setup, models[best], rank, {"sums": sums.cpu(), "chunk": k + 1}):
            return None
    return None


def evaluate(setup: dict[str, Any], hyper: dict[str, Any], folder: str, split: str = "test"
             ) -> dict[str, float]:
    """A saved model's metrics on one split, in this process (the driver scores the champion)."""
    family = MODELS[setup["model"]]
    hp = family.hyperparams(**hyper)
    splits, info = ray.get(setup["data_ref"])
    model = checkpoint.load(folder)
    if isinstance(splits[split], ImageFiles):
        cpu = torch.device("cpu")  # the driver decodes in its own process
        sums = streamed_sums(model, image_loader(splits[split], 256, None, 0, cpu), cpu)
        return classification_metrics(sums, split)
    x, y = splits[split]
    if info.free_run:
        scores = free_run_metrics(model, x, info, hp.washout)
        return {f"{split}_{key.removeprefix('val_')}": v for key, v in scores.items()}
    if info.task == "forecasting":
        warm = hp.washout if family.fit == "ridge" else hp.window
        return forecast_metrics(forecast_sums(model, x, y, 0, len(x), warm), split)
    return classification_metrics(classification_sums(model, x, y), split)
