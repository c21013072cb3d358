"""The Mackey-Glass delay equation (tau=17), the standard echo state network benchmark.

dx/dt = a x(t - tau) / (1 + x(t - tau)^n) - b x(t), integrated with fourth-order Runge-Kutta on
a grid fine enough that the delayed value is itself a grid point (the delayed term at half steps
is the mean of its two neighbours), then sampled every `sample_step` time units.
"""

from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from raysearch.data.base import DataInfo, Split


class MackeyGlassOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # direct: predict x(t + horizon) from the series up to t. generative: learn x(t + 1) with the
    # true series as input (teacher forcing), then run on its own output for `horizon` steps and
    # score the last of them: Jaeger's NRMSE84 protocol with horizon 84.
    mode: Literal["direct", "generative"] = "direct"
    horizon: int = Field(1, ge=1)
    free_runs: int = Field(20, ge=1)  # generative: free runs scored, starting across the split
    # generative: true steps each free run reads first. A reservoir with a slow leak still
    # remembers its zero start after 100 steps, and 84 free steps amplify that (Jaeger's runs
    # read 1,000 steps before the free run)
    warmup: int = Field(500, ge=0)
    length: int = Field(6000, ge=100)  # samples kept, after the transient is dropped
    tau: float = Field(17.0, gt=0)
    transient: int = Field(500, ge=0)  # samples dropped at the start
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)

    @model_validator(mode="after")
    def free_runs_fit(self) -> "MackeyGlassOptions":
        shortest = int(self.length * min(self.val_fraction, self.test_fraction))
        if self.mode == "generative" and self.warmup + self.horizon > shortest:
            raise ValueError(f"warmup ({self.warmup}) + horizon ({self.horizon}) is longer than "
                             f"the validation or test split ({shortest} steps): lower them or "
                             "raise length")
        return self


@lru_cache(maxsize=4)
def series(length: int, tau: float = 17.0, a: float = 0.2, b: float = 0.1, n: int = 10,
           x0: float = 1.2, sample_step: float = 1.0, dt: float = 0.1) -> np.ndarray:
    """`length` samples of x(t), t = 0, sample_step, 2 sample_step, ..."""
    lag = int(round(tau / dt))
    per_sample = int(round(sample_step / dt))
    steps = length * per_sample
    x = np.empty(lag + steps + 1)
    x[: lag + 1] = x0

    def f(xt: float, xd: float) -> float:
        return a * xd / (1.0 + xd**n) - b * xt

    for i in range(lag, lag + steps):
        xd0, xd1 = x[i - lag], x[i - lag + 1]
        xdh = 0.5 * (xd0 + xd1)
        xi = x[i]
        k1 = f(xi, xd0)
        k2 = f(xi + 0.5 * dt * k1, xdh)
        k3 = f(xi + 0.5 * dt * k2, xdh)
        k4 = f(xi + dt * k3, xd1)
        x[i + 1] = xi + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag::per_sample][:length].copy()


def load(options: MackeyGlassOptions) -> tuple[dict[str, Split], DataInfo]:
    ahead = options.horizon if options.mode == "direct" else 1
    x = series(options.transient + options.length + ahead, options.tau)
    x = torch.tensor(x[options.transient:], dtype=torch.float32).unsqueeze(-1)
    u, y = x[:-ahead], x[ahead:]
    n = len(u)
    n_val, n_test = int(n * options.val_fraction), int(n * options.test_fraction)
    n_train = n - n_val - n_test
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
              "test": (n_train + n_val, n)}
    splits = {name: (u[lo:hi], y[lo:hi]) for name, (lo, hi) in bounds.items()}
    return splits, DataInfo(
        input_shape=(1,), num_outputs=1, task="forecasting",
        free_run=options.horizon if options.mode == "generative" else 0,
        free_runs=options.free_runs, free_run_warmup=options.warmup)
