"""Training images/s of a raysearch trial against a bare PyTorch loop, in one run.

The same model (raysearch's ResNet-18 with the CIFAR stem), batch, precision and augmentation,
on the same 32x32 RGB images held as tensors on the device: the bare loop in this process, then
a one-trial raysearch search (a Tune trial starting a one-worker TorchTrainer, reporting and
checkpointing every epoch, MLflow tracking), then the bare loop again. Both train every training
image once per epoch and score the validation images after it. Throughput counts the epochs
after the first (warm-up, cuDNN autotuning), from wall time: for the trial, the time between
its reports as the driver receives them, so reporting, checkpointing and tracking are in it.

On a GPU the images are CIFAR-10's size and count, the model trains in bf16 with channels-last
tensors; on a CPU the run is scaled down (fewer images, a narrower ResNet). The images are
random pixels in class folders (an `imagefolder` data set): speed does not depend on content,
and no data set can be downloaded where this runs.

    .venv/bin/python benchmarks/throughput.py [--images N] [--width W] [--batch B] [--epochs E]
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

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from trial_overhead import TuneClock  # noqa: E402

from raysearch import search  # noqa: E402
from raysearch.data import DATASETS  # noqa: E402
from raysearch.fit.gradient import augment  # noqa: E402
from raysearch.models.resnet import ResNet  # noqa: E402
from raysearch.spec import load_spec  # noqa: E402

CLASSES = 10


def write_images(root: Path, n_train: int, n_val: int) -> None:
    """train/ and val/ folders of random 32x32 RGB PNGs, one folder per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            folder = root / split / f"c{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def bare_loop(root: Path, args, device: torch.device) -> list[float]:
    """The loop a user writes by hand: seconds per epoch (train + validation)."""
    options = DATASETS["imagefolder"].options(root=str(root), image_size=32, stream=False)
    splits, _ = DATASETS["imagefolder"].load(options)
    fast = device.type == "cuda"
    layout = torch.channels_last if fast else torch.contiguous_format
    x, y = (t.to(device) for t in splits["train"])
    x = x.contiguous(memory_format=layout)
    x_val, y_val = (t.to(device) for t in splits["val"])
    torch.manual_seed(0)
    model = ResNet(18, 3, CLASSES, args.width).to(device, memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    times = []
    for epoch in range(args.epochs):
        began = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), args.batch):
            idx = order[i:i + args.batch].to(device)
            inputs = augment(x[idx], generator)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast):
                loss = F.cross_entropy(model(inputs), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()  # syncs
        times.append(time.perf_counter() - began)
        print(f"bare loop: epoch {epoch + 1} {times[-1]:.2f} s, val_accuracy {accuracy:.3f}")
    return times


SPACE = """\
    name: throughput
    model: resnet18
    data: {{name: imagefolder, root: {root}, image_size: 32, stream: false}}
    objective: {{metric: val_accuracy, mode: max}}
    search: {{trials: 1, sampler: random, seed: 0, max_concurrent: 1}}
    scheduler: {{type: none, max_t: {epochs}}}
    resources: {{workers: 1, cpus_per_worker: {cpus}, gpus_per_worker: {gpus}}}
    fixed: {{optimizer: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4,
             batch_size: {batch}, width: {width}}}
"""


def raysearch_trial(root: Path, args, gpus: int, tmp: str) -> tuple[list[float], list[float]]:
    """Seconds between the trial's reports as the driver receives them, and each epoch's
    compute as the worker timed it (`epoch_s`)."""
    path = Path(tmp) / "throughput.yaml"
    path.write_text(textwrap.dedent(SPACE.format(root=root, gpus=gpus, **vars(args))))
    clock = TuneClock()
    search.run(load_spec(path), f"sqlite:///{tmp}/mlflow.db", f"{tmp}/results", callbacks=(clock,))
    (reports,) = clock.reports.values()
    arrivals = [t for t, _ in reports]
    return [b - a for a, b in pairwise(arrivals)], [s for _, s in reports]


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000 if cuda else 2_048,
                        help="training images (a tenth as many more for validation)")
    parser.add_argument("--width", type=int, default=64 if cuda else 16)
    parser.add_argument("--batch", type=int, default=512 if cuda else 128)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() if not cuda else 8,
                        help="CPUs of the trial's worker (the bare loop's threads on a CPU)")
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(args.cpus)  # as many as Ray gives the trial's worker
    ray.init(num_cpus=max(args.cpus, os.cpu_count()), include_dashboard=True,
             dashboard_host="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        write_images(root, args.images, args.images // 10)
        # the bare loop runs before and after the trial: this machine's speed drifts
        before = bare_loop(root, args, device)
        between_reports, epoch_s = raysearch_trial(root, args, int(cuda), tmp)
        after = bare_loop(root, args, device)
    ray.shutdown()

    def rate(seconds: list[float]) -> float:  # images/s over the epochs after the first
        return args.images / statistics.median(seconds)

    name = torch.cuda.get_device_name() if cuda else f"CPU, {args.cpus} threads"
    print(f"\n{name}; ResNet-18 width {args.width}, batch {args.batch}, "
          f"{'bf16 channels-last' if cuda else 'fp32'}, {args.images} training images, "
          f"{args.epochs} epochs, median of epochs 2..{args.epochs}")
    rows = [("bare PyTorch loop, epoch wall time", rate(before[1:] + after[1:])),
            ("... before the trial", rate(before[1:])),
            ("... after the trial", rate(after[1:])),
            ("raysearch trial, between reports (driver)", rate(between_reports)),
            ("raysearch trial, epoch compute (worker)", rate(epoch_s[1:]))]
    print(f"| {'images/s':<42} | {'value':>8} | {'/ bare':>6} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 8}|")
    for label, value in rows:
        print(f"| {label:<42} | {value:>8.0f} | {value / rows[0][1]:>6.3f} |")


if __name__ == "__main__":
    main()
