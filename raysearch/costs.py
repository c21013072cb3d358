"""What a trial's model costs, measured by its rank 0 on the worker's device and reported with
every epoch's metrics, so they sit beside the objective in its MLflow run:

- params_total, params_trainable: weights the model computes with, and those training set (an
  ESN's reservoir is fixed, its readout is what is trained; BatchNorm's running statistics
  are not counted);
- latency_ms: one forward pass of one input (batch 1), and throughput: inputs per second at
  EVAL_BATCH, both the median of timed passes after a warm-up, in eval mode without autograd;
  an input is what the model's input example holds (an image, a sequence, STRETCH steps of a
  series);
- peak_memory_mb: the most memory training has taken so far: CUDA's max allocated on a GPU; on
  a CPU the process's peak resident set (Linux's VmHWM, reset at the trial's start) above what
  it held then;
- trial_s: seconds since the trial started on its workers (a resumed trial: since it resumed).
"""

import re
import statistics
import time
from pathlib import Path

import torch
from torch import nn

COST_METRICS = ("params_total", "params_trainable", "latency_ms", "throughput",
                "peak_memory_mb", "trial_s")
EVAL_BATCH = 32
TIMED_PASSES = 3
# per measurement: timing a large reservoir on a CPU is then a fraction of a second of its
# trial (a dozen-trial ESN search took 8 s longer with 5 passes within 0.5 s)
TIME_BUDGET_S = 0.1


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(total, trainable)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fixed = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    for module in model.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            fixed += sum(b.numel() for b in module.buffers(recurse=False)
                         if b.is_floating_point())
    return trainable + fixed, trainable


@torch.no_grad()
def seconds_per_pass(model: nn.Module, x: torch.Tensor) -> float:
    def one() -> float:
        began = time.perf_counter()
        model(x)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - began

    one()  # warm-up: kernels chosen, caches filled
    times: list[float] = []
    while len(times) < TIMED_PASSES and sum(times) < TIME_BUDGET_S:
        times.append(one())
    return statistics.median(times)


STATUS = Path("/proc/self/status")


def _kib(field: str) -> int | None:
    if not STATUS.exists():
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    return int(found.group(1)) if found else None


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
    except OSError:
        pass  # not Linux, or not allowed: the peak is then the process's own


class Costs:
    def __init__(self, device: torch.device, inputs: torch.Tensor) -> None:
        """`inputs`: up to EVAL_BATCH inputs of the validation split, as the model reads them."""
        self.device, self.inputs = device, inputs.to(device)  # no copy when already there
        self.began = time.perf_counter()
        self.model_costs: dict[str, float] | None = None
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _reset_peak_rss()
        self.rss_kib = _kib("VmRSS")

    def __call__(self, model: nn.Module) -> dict[str, float]:
        """The costs so far of the trial training `model` (measured on its first call)."""
        if self.model_costs is None:
            total, trainable = parameter_counts(model)
            training = model.training
            model.eval()
            batch = self.inputs[:EVAL_BATCH]
            self.model_costs = {
                "params_total": total, "params_trainable": trainable,
                "latency_ms": 1000 * seconds_per_pass(model, self.inputs[:1]),
                "throughput": len(batch) / seconds_per_pass(model, batch)}
            model.train(training)
        return {**self.model_costs, "peak_memory_mb": self.peak_memory_mb(),
                "trial_s": time.perf_counter() - self.began}

    def peak_memory_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _kib("VmHWM")
        return max(0, peak - self.rss_kib) / 1024 if peak and self.rss_kib else 0.0
