"""What every Ray Train worker of a pool runs: trial after trial, take the next job, build its
model and this rank's data shard, train it epoch by epoch (fit/), report each epoch, free
everything, take the next one.

A trial in a warm pool reports exactly what it would in a fresh one: its seeds and torch's
flags are set when it starts, its model, optimizer and data views go when it ends. A trial
whose folder holds a checkpoint goes on from the latest one (its workers were lost, or the
search was resumed), after reporting again the epochs that checkpoint holds: the driver may
have lost them, and the trial's Tune actor and the MLflow callback drop what they have.
"""

import functools
import gc
import random
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import ray.util
import torch
from torch import nn

from raysearch import checkpoint
from raysearch.costs import EVAL_BATCH, Costs
from raysearch.data.base import DataInfo, sample_inputs
from raysearch.fit import TrialContext
from raysearch.fit.gradient import fit_gradient
from raysearch.fit.ridge import fit_ridge
from raysearch.job import End, Job, SearchSetup, Verdict
from raysearch.models import hyperparams_of
from raysearch.trial_checkpoints import TrialCheckpoints


def serve(setup: SearchSetup, dispatcher: "ray.actor.ActorHandle", pool: str,
          one_job: bool) -> None:
    """The pool's train function on every rank: jobs until the search ends (or one)."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    # Ray gives a worker on a fake GPU node (cluster/local.yaml) a GPU id but no device
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    # the ranks of one worker group share its placement group; a restarted group has a new one
    incarnation = ray.util.get_current_placement_group().id.hex()
    # Loaded once by the driver and read once per worker process from the node's object store
    splits, info = ray.get(setup.data_ref)

    # What rank 0 times each trial's model on (costs.py): the same inputs for every trial,
    # read by every rank within the first, before any collective: a streamed split the
    # workers cannot read fails that trial on every rank, and so fails it alone.
    @functools.cache
    def probe() -> torch.Tensor:
        return sample_inputs(splits, info, "val", EVAL_BATCH).to(device)

    release(device)
    after = -1
    while True:
        job = ray.get(dispatcher.take.remote(pool, rank, incarnation, after))
        if job is None:
            return
        after = job.seq
        run_job(job, setup, (splits, info), probe, dispatcher, rank, world, device)
        release(device)
        if one_job:
            return


def release(device: torch.device) -> None:
    """Free what the trial left (its model, optimizer, data views, CUDA blocks) before the next
    one. What survives the collection is frozen out of later ones: a full collection of a Train
    worker's heap (torch, Ray, pandas) took 0.33 s on 2 cores, which the next trial waited for;
    a frozen heap leaves only the last trial's objects to look at."""
    gc.collect()
    gc.freeze()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_job(job: Job, setup: SearchSetup, data: tuple, probe: Callable[[], torch.Tensor],
            dispatcher: "ray.actor.ActorHandle", rank: int, world: int,
            device: torch.device) -> None:
    """Trains one trial; rank 0 says how it ended. A trial that raises on every rank fails
    alone and the pool goes on; one that raises on some ranks only (the others wait in a
    collective), or whose checkpoint could not be written, takes the worker group down with
    it, and Ray Train starts a new one that goes on from the trial's last checkpoint."""
    try:
        reason = train(job, setup, data, probe, dispatcher, rank, world, device)
    except CheckpointNotWritten:
        raise
    except Exception:  # noqa: BLE001  any error of the trial's code fails the trial
        failed_alone = ray.get(dispatcher.raised.remote(job.trial_id, rank, world,
                                                        traceback.format_exc()))
        # NCCL runs DDP's all-reduces asynchronously: ranks that failed at different points
        # of a backward pass (out of memory, say) may leave one in flight, which the next
        # trial's first collective would meet. A new group is clean.
        if not failed_alone or device.type == "cuda":
            raise
        return
    if rank == 0:
        ray.get(dispatcher.end.remote(job.trial_id, End.DIVERGED if reason else End.DONE,
                                      reason or ""))


def fresh_start(seed: int) -> None:
    """What a trial finds when it starts, whatever ran in this process before it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # every device's generator
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = False
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def train(job: Job, setup: SearchSetup, data: tuple, probe: Callable[[], torch.Tensor],
          dispatcher: "ray.actor.ActorHandle", rank: int, world: int,
          device: torch.device) -> str | None:
    """Why the trial stopped on its own (a metric that is not finite), else None. `probe`:
    the inputs rank 0 times the model on."""
    splits, info = data
    inputs = probe()
    costs = Costs(device, inputs) if rank == 0 else None
    family, hp = hyperparams_of(job.config, setup.model)
    fresh_start(hp.seed)
    model = family.build(hp, info).to(device)
    store = TrialCheckpoints(setup.trial_dir(job.trial_id), setup.metric, setup.mode)
    state, history = None, []
    # rank 0 chooses, every rank follows: ranks that saw different checkpoints would replay
    # and resume apart
    latest = ray.get(dispatcher.start_from.remote(job.trial_id, rank,
                                                  store.latest() if rank == 0 else None))
    if latest:
        with store.local(latest) as folder:
            state = checkpoint.load_train_state(folder)
            # A reservoir is rebuilt from its seed and its readout solved again from the saved
            # sums; only gradient-trained weights come from the checkpoint.
            if state is not None and family.fit == "gradient":
                model.load_state_dict(checkpoint.load_weights(folder))
        history = state.pop("history", []) if state else []
    reports = Reports(job, setup, family.name, dispatcher, rank, store, history, info, costs)
    for entry in history:
        if reports.replay(entry):
            return None
    trial = TrialContext(rank, world, device, setup.max_t, setup.metric, setup.mode,
                         decoders=max(0, int(setup.cpus_per_worker) - 1), report=reports)
    fit = fit_ridge if family.fit == "ridge" else fit_gradient
    return fit(model, hp, splits, info, trial, state)


class Reports:
    """A trial's reports: rank 0 writes each epoch's checkpoint and tells the dispatcher, and
    every rank hears whether the trial stops (at a rung, after the scheduler has judged it)."""

    def __init__(self, job: Job, setup: SearchSetup, family: str,
                 dispatcher: "ray.actor.ActorHandle", rank: int, store: TrialCheckpoints,
                 history: list[dict[str, Any]], info: DataInfo, costs: Costs | None) -> None:
        """`family`: the trial's model family; `costs`: rank 0's, reported with every epoch's
        metrics."""
        self.job, self.setup, self.dispatcher, self.rank = job, setup, dispatcher, rank
        self.family = family
        self.store, self.info, self.costs = store, info, costs
        self.history = list(history)  # every epoch reported so far, as reported

    def __call__(self, metrics: dict[str, float], model: nn.Module,
                 train_state: dict[str, Any]) -> bool:
        epoch = metrics["epoch"]
        if self.rank == 0:
            metrics = {**metrics, **self.costs(model)}
            entry = {**metrics, "checkpoint_path": self.store.path(epoch)}
            self.history.append(entry)
            try:
                self.store.save(epoch, lambda folder: checkpoint.save(
                    folder, self.family, model, metrics,
                    {**train_state, "history": self.history}, self.info.task,
                    self.info.photo_reading(), self.info.classes), self.history)
            except OSError as e:  # pyarrow's: a full disk, a bucket that is away
                raise CheckpointNotWritten(f"{self.store.path(epoch)}: {e}") from e
            ray.get(self.dispatcher.report.remote(self.job.trial_id, entry))
        return self.stops(epoch)

    def replay(self, entry: dict[str, Any]) -> bool:
        if self.rank == 0:
            ray.get(self.dispatcher.report.remote(self.job.trial_id, entry))
        return self.stops(entry["epoch"])

    def stops(self, epoch: int) -> bool:
        verdict = ray.get(self.dispatcher.decide.remote(self.job.trial_id, epoch,
                                                        epoch in self.setup.rungs))
        if verdict == Verdict.FAIL:
            raise PeerFailed(f"another rank of trial {self.job.trial_id} failed")
        if verdict == Verdict.STOP and epoch in self.setup.rungs and self.rank == 0:
            # the scheduler's stop (only a rung's is), for a resumed driver that finds the
            # trial ended but its run not told (MLflowTrials.settle)
            self.store.mark_stopped()
        return verdict == Verdict.STOP


class CheckpointNotWritten(Exception):
    """The storage did not take an epoch's checkpoint: not the trial's fault, so its worker
    group starts again (counted against resources.max_failures) rather than failing it."""


class PeerFailed(Exception):
    """Another rank raised: this one fails the trial with it, at the same point."""
