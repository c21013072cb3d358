"""Where a short trial's time goes: raysearch against a plain Ray baseline, in one run.

Both run the same search on one local Ray cluster: digits, the 3-block CNN, 2 gloo workers of
1 CPU per trial, one trial at a time, fixed hyperparameters. The baseline is the pattern written
the obvious way: a Tune function trainable that starts a TorchTrainer with TuneReportCallback,
every worker reporting each epoch and rank 0 writing a checkpoint, Ray's defaults otherwise.
Times are taken on the driver by a Tune callback (trial start, each report, trial end) and in
the workers (each epoch's compute, reported as `epoch_s`).

    .venv/bin/python benchmarks/trial_overhead.py [--trials 6] [--epochs 4] [--channels 8]
"""

import argparse
import os
import statistics
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


class Clock(tune.Callback):
    """Driver-side wall times of every trial's start, reports and end."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.reports: dict[str, list[tuple[float, float]]] = {}  # (time, epoch_s)
        self.end: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.start[trial.trial_id] = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.reports.setdefault(trial.trial_id, []).append((time.time(), result["epoch_s"]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.end[trial.trial_id] = time.time()

    def figures(self, wall: float) -> dict[str, float]:
        trials = sorted(self.start, key=self.start.get)
        first = [self.reports[t][0][0] - self.start[t] for t in trials if t in self.reports]
        to_step = [self.reports[t][0][0] - self.reports[t][0][1] - self.start[t]
                   for t in trials if t in self.reports]
        # Over a trial's reports after the first: the time they took beyond the epochs' own
        # compute, per report (arrival times are quantized by Ray Train's polling, so single
        # intervals mislead).
        per_report = [(r[-1][0] - r[0][0] - sum(s for _, s in r[1:])) / (len(r) - 1)
                      for r in (self.reports.get(t, []) for t in trials) if len(r) > 1]
        gaps = [self.start[b] - self.end[a] for a, b in pairwise(trials) if a in self.end]
        compute = sum(s for t in trials for _, s in self.reports.get(t, []))
        return {
            "trials": len(trials),
            "epochs run": sum(len(r) for r in self.reports.values()),
            "trial start -> first report (s), median": statistics.median(first),
            "trial start -> first report (s), warm (2nd+) median": statistics.median(first[1:]),
            "trial start -> first training step (s), median": statistics.median(to_step),
            "per-report overhead (s), median over trials": statistics.median(per_report)
            if per_report else float("nan"),
            "gap between trials (s), median": statistics.median(gaps) if gaps else float("nan"),
            "training compute / wall time": compute / wall,
            "search wall time (s)": wall,
        }


def baseline_train(config: dict) -> None:
    """The per-worker loop of the baseline: the same model, data and epochs as raysearch's."""
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
    batch = 64 // world
    for _ in range(config["epochs"]):
        began = time.perf_counter()
        model.train()
        for i in range(0, n, batch):
            loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
        metrics = {"val_accuracy": accuracy, "epoch_s": time.perf_counter() - began}
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                torch.save(model.state_dict(), Path(folder) / "model.pt")
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)


def baseline_trial(config: dict) -> None:
    trainer = ray.train.torch.TorchTrainer(
        baseline_train, train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name=f"baseline-{tune.get_context().get_trial_id()}",
                                       storage_path=config["storage"],
                                       callbacks=[TuneReportCallback()]))
    trainer.fit()


def run_baseline(args, storage: str) -> dict[str, float]:
    clock = Clock()
    config = {"lr": 0.01, "channels": args.channels, "epochs": args.epochs,
              "storage": f"{storage}/baseline-train"}
    tuner = tune.Tuner(
        tune.with_resources(baseline_trial, {"cpu": 0, "memory": 256 * 2**20}),
        param_space=config,
        tune_config=tune.TuneConfig(num_samples=args.trials, max_concurrent_trials=1),
        run_config=tune.RunConfig(name="baseline", storage_path=storage, callbacks=[clock],
                                  verbose=0))
    began = time.time()
    tuner.fit()
    return clock.figures(time.time() - began)


SPACE = """\
    name: overhead
    model: cnn
    data: {{name: digits}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: {trials}, sampler: random, seed: 0, max_concurrent: 1}}
    scheduler: {{type: none, max_t: {epochs}}}
    resources: {{workers: 2, cpus_per_worker: 1}}
    fixed: {{lr: 0.01, channels: {channels}, batch_size: 64}}
"""


def run_raysearch(args, storage: str) -> dict[str, float]:
    from raysearch import search
    from raysearch.spec import load_spec

    path = Path(storage) / "overhead.yaml"
    path.write_text(textwrap.dedent(SPACE.format(**vars(args))))
    clock = Clock()
    began = time.time()
    search.run(load_spec(path), f"sqlite:///{storage}/mlflow.db", storage, callbacks=(clock,))
    return clock.figures(time.time() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--channels", type=int, default=8, help="CNN width: sets epoch length")
    args = parser.parse_args()
    began = time.time()
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1")
    init_s = time.time() - began
    with tempfile.TemporaryDirectory() as storage:
        base = run_baseline(args, storage)
        ours = run_raysearch(args, storage)
    ray.shutdown()
    print(f"ray.init: {init_s:.1f} s   (trials={args.trials}, epochs={args.epochs}, "
          f"channels={args.channels}, 2 workers x 1 CPU, {os.cpu_count()} cores)")
    print(f"| {'figure':<52} | {'plain Ray':>10} | {'raysearch':>10} | {'ratio':>6} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 12}|{'-' * 8}|")
    for key in base:
        ratio = ours[key] / base[key] if base[key] else float("nan")
        print(f"| {key:<52} | {base[key]:>10.3g} | {ours[key]:>10.3g} | {ratio:>6.2f} |")


if __name__ == "__main__":
    main()
