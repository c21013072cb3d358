"""Where a short trial's time goes: raysearch on warm pools against what a user would run
instead, in one run, four columns.

All four run the same search: digits, the 3-block CNN, fixed hyperparameters (lr 0.01, Adam,
batch 64), no early stopping, one trial at a time.
- optuna loop: a plain Optuna study in one process without Ray (what a laptop user would pick
  instead): the same model and data, the whole training set in one process, timed from the
  process's start (its imports included);
- plain Ray: a Tune function trainable that starts a 2-worker gloo TorchTrainer with
  TuneReportCallback, every worker reporting each epoch and rank 0 writing a checkpoint, Ray's
  defaults otherwise (the pattern written the obvious way);
- raysearch cold: `search.run` with `resources.reuse_workers: false`, a fresh TorchTrainer of
  2 workers per trial;
- raysearch pools: `search.run` as shipped, trials on the search's warm pool of 2 workers.
The Ray columns share one local Ray instance (2 CPUs, dashboard on); `ray.init` is timed once.
Times are taken on the driver by a Tune callback (trial start, each report, trial end) and in
the workers (each epoch's compute, reported as `epoch_s`).

    .venv/bin/python benchmarks/trial_overhead.py [--trials 6] [--epochs 4] [--channels 8]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import ray  # noqa: E402
import ray.train  # noqa: E402
import ray.train.torch  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.integration.ray_train import TuneReportCallback  # noqa: E402


class Clock:
    """Wall times of every trial's start, reports and end, with each epoch's own compute."""

    def __init__(self) -> None:
        self.began = time.time()  # the search's start
        self.start: dict[str, float] = {}
        self.reports: dict[str, list[tuple[float, float]]] = {}  # (time, epoch_s)
        self.end: dict[str, float] = {}

    def figures(self, wall: float) -> dict[str, float]:
        trials = sorted(self.start, key=self.start.get)
        first = [self.reports[t][0][0] - self.reports[t][0][1] - self.start[t]
                 for t in trials if t in self.reports]
        # Over a trial's reports after the first: the time they took beyond the epochs' own
        # compute, per report (single intervals mislead where arrivals are quantized by polls).
        per_report = [(r[-1][0] - r[0][0] - sum(s for _, s in r[1:])) / (len(r) - 1)
                      for r in (self.reports.get(t, []) for t in trials) if len(r) > 1]
        gaps = [self.start[b] - self.end[a] for a, b in pairwise(trials) if a in self.end]
        compute = sum(s for t in trials for _, s in self.reports.get(t, []))
        # up to the first trial's first training step: the search's fixed cost; after the
        # last trial's end: choosing, scoring and registering the champion, stopping the pools
        fixed = self.reports[trials[0]][0][0] - self.reports[trials[0]][0][1] - self.began
        end = self.began + wall - max(self.end.values())
        return {
            "trials / epochs run": f"{len(trials)} / {sum(map(len, self.reports.values()))}",
            "epoch compute (s), median": statistics.median(
                s for r in self.reports.values() for _, s in r),
            "fixed cost: search start -> 1st training step (s)": fixed,
            "warm trial start -> 1st report, epoch excluded (s), median of 2nd+":
                statistics.median(first[1:]),
            "per-report overhead (s), median over trials": statistics.median(per_report)
            if per_report else float("nan"),
            "gap between trials (s), median": statistics.median(gaps) if gaps else float("nan"),
            "search's end: last trial's end -> search returns (s)": end,
            "cost per trial beyond its compute (s)": (wall - fixed - end - compute) / len(trials),
            "training compute / wall time": compute / wall,
            "search wall time (s)": wall,
        }


class TuneClock(Clock, tune.Callback):
    def on_trial_start(self, iteration, trials, trial, **info):
        self.start[trial.trial_id] = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.reports.setdefault(trial.trial_id, []).append((time.time(), result["epoch_s"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.end[trial.trial_id] = time.time()


def epoch(model, optimizer, x, y, x_val, y_val, batch: int) -> tuple[float, float]:
    """One pass over (x, y) and the validation accuracy after it; its compute time."""
    began = time.perf_counter()
    model.train()
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    return accuracy, time.perf_counter() - began


def optuna_loop(args, began: float) -> dict[str, float]:
    """The Optuna column, in a process of its own (it imports what it uses)."""
    import optuna

    from raysearch.data import DATASETS
    from raysearch.models.cnn import CNN

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    clock = Clock()
    clock.began = began
    splits, _ = DATASETS["digits"].load(DATASETS["digits"].options())
    (x, y), (x_val, y_val) = splits["train"], splits["val"]

    def objective(trial: optuna.Trial) -> float:
        name = str(trial.number)
        clock.start[name] = time.time()
        lr = trial.suggest_float("lr", 0.01, 0.01)
        torch.manual_seed(0)
        model = CNN(1, 10, args.channels)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for step in range(args.epochs):
            accuracy, took = epoch(model, optimizer, x, y, x_val, y_val, 64)
            clock.reports.setdefault(name, []).append((time.time(), took))
            trial.report(accuracy, step)
        clock.end[name] = time.time()
        return accuracy

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0),
                                pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=args.trials)
    return clock.figures(time.time() - began)


def baseline_train(config: dict) -> None:
    """The per-worker loop of the plain Ray baseline: the same model, data and epochs."""
    from raysearch.data import DATASETS
    from raysearch.models.cnn import CNN

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    splits, info = DATASETS["digits"].load(DATASETS["digits"].options())
    n = len(splits["train"][0]) // world  # equal shards: DDP needs equal step counts
    x, y = (t[rank::world][:n] for t in splits["train"])
    x_val, y_val = (t[rank::world] for t in splits["val"])
    torch.manual_seed(0)
    model = ray.train.torch.prepare_model(CNN(1, 10, config["channels"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    for _ in range(config["epochs"]):
        accuracy, took = epoch(model, optimizer, x, y, x_val, y_val, 64 // world)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                torch.save(model.state_dict(), Path(folder) / "model.pt")
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report({"val_accuracy": accuracy, "epoch_s": took},
                             checkpoint=checkpoint)


def baseline_trial(config: dict) -> None:
    trainer = ray.train.torch.TorchTrainer(
        baseline_train, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name=f"baseline-{tune.get_context().get_trial_id()}",
                                       storage_path=config["storage"],
                                       callbacks=[TuneReportCallback()]))
    trainer.fit()


def run_baseline(args, storage: str) -> dict[str, float]:
    clock = TuneClock()
    config = {"lr": 0.01, "channels": args.channels, "epochs": args.epochs,
              "storage": f"{storage}/baseline-train"}
    tuner = tune.Tuner(
        tune.with_resources(baseline_trial, {"cpu": 0, "memory": 256 * 2**20}),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="baseline", storage_path=storage, callbacks=[clock],
                                  verbose=0))
    clock.began = time.time()
    tuner.fit()
    return clock.figures(time.time() - clock.began)


SPACE = """\
    name: overhead-{kind}
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: {trials}, sampler: random, seed: 0, max_concurrent: 1}}
    scheduler: {{type: none, max_t: {epochs}}}
    resources: {{workers: 2, cpus_per_worker: 1, reuse_workers: {reuse}}}
    fixed: {{lr: 0.01, channels: {channels}, batch_size: 64}}
"""


def run_raysearch(args, storage: str, reuse: bool) -> dict[str, float]:
    from raysearch import search
    from raysearch.spec import load_spec

    kind = "pools" if reuse else "cold"
    path = Path(storage) / f"{kind}.yaml"
    path.write_text(textwrap.dedent(SPACE.format(kind=kind, reuse=str(reuse).lower(),
                                                 **vars(args))))
    clock = TuneClock()
    search.run(load_spec(path), f"sqlite:///{storage}/mlflow.db", storage, callbacks=(clock,))
    return clock.figures(time.time() - clock.began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--channels", type=int, default=8, help="CNN width: sets epoch length")
    parser.add_argument("--optuna-loop", type=float, help=argparse.SUPPRESS)  # its start time
    args = parser.parse_args()
    if args.optuna_loop:
        print(json.dumps(optuna_loop(args, args.optuna_loop)))
        return
    command = [sys.executable, __file__, f"--trials={args.trials}", f"--epochs={args.epochs}",
               f"--channels={args.channels}", f"--optuna-loop={time.time()}"]
    columns = {"optuna loop": json.loads(subprocess.run(
        command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])}
    began = time.time()
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1")
    init_s = time.time() - began
    with tempfile.TemporaryDirectory() as storage:
        columns["plain Ray"] = run_baseline(args, storage)
        columns["raysearch cold"] = run_raysearch(args, storage, reuse=False)
        columns["raysearch pools"] = run_raysearch(args, storage, reuse=True)
    ray.shutdown()
    print(f"ray.init: {init_s:.1f} s   (trials={args.trials}, epochs={args.epochs}, "
          f"channels={args.channels}, 2 workers x 1 CPU, {os.cpu_count()} cores)")
    names = list(columns)
    print(f"| {'figure':<68} | " + " | ".join(f"{n:>15}" for n in names)
          + " | pools / optuna | pools / cold |")
    print(f"|{'-' * 70}|" + "|".join("-" * 17 for _ in names) + "|----------------|"
          "--------------|")
    for key, value in columns["raysearch pools"].items():
        cells = " | ".join(f"{c[key]:>15.3g}" if not isinstance(c[key], str) else f"{c[key]:>15}"
                           for c in columns.values())
        ratios = ("", "") if isinstance(value, str) else tuple(
            f"{value / other[key]:.2f}" if other[key] else "nan"
            for other in (columns["optuna loop"], columns["raysearch cold"]))
        print(f"| {key:<68} | {cells} | {ratios[0]:>14} | {ratios[1]:>12} |")


if __name__ == "__main__":
    main()
