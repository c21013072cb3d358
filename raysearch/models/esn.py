"""Echo state network: leaky-integrator reservoirs with fixed random weights and a linear readout.

The reservoir weights are drawn once from `seed` (so every Ray Train rank builds the same
reservoir), scaled to `spectral_radius`, and kept as buffers so a checkpoint holds them. With
`layers` > 1 it is a DeepESN: each layer reads the states of the one below, the readout reads all
layers. The readout is solved in closed form by ridge regression (raysearch/fit/ridge.py).
"""

from typing import Literal

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.models.padding import lengths, valid_steps


class ESNHyper(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    units: int = Field(500, ge=2)
    spectral_radius: float = Field(0.9, gt=0)
    leak_rate: float = Field(0.3, gt=0, le=1)
    input_scaling: float = Field(1.0, gt=0)
    # with a centered input, no bias leaves the reservoir odd-symmetric (f(-u) = -f(u))
    bias_scaling: float = Field(0.1, ge=0)
    density: float = Field(0.1, gt=0, le=1)  # fraction of non-zero reservoir weights
    ridge: float = Field(1e-6, ge=0)
    washout: int = Field(100, ge=0)  # states dropped at the start of every harvested stretch
    layers: int = Field(1, ge=1)
    chunks: int | None = Field(None, ge=1)  # training chunks, one per iteration; default max_t
    # classification: the readout reads the last state, or the mean state over time
    pooling: Literal["last", "mean"] = "last"
    # harvest a long series as this many pieces side by side, each from `washout` steps before
    # it: one step loop `washout + T/pieces` long instead of T (a GPU is launch-bound per step)
    parallel_pieces: int = Field(1, ge=1)
    seed: int = 0
    seeds: int = Field(1, ge=1)  # reservoirs per trial (seed, seed+1, ...), metrics averaged
    # subtract the training inputs' mean before the input weights: an input that sits on one
    # side of zero (Mackey-Glass lies in 0.4..1.3) pushes every tanh unit one way and costs the
    # reservoir its range (Jaeger fed tanh(x - 1)); 15x lower NRMSE84 (benchmarks/README.md)
    center: bool = True


def reservoir_matrix(units: int, density: float, spectral_radius: float,
                     rng: np.random.Generator) -> np.ndarray:
    w = scipy.sparse.random(units, units, density=density, random_state=rng,
                            data_rvs=rng.standard_normal, format="csr")
    if units > 32 and w.nnz > 0:
        rho = abs(scipy.sparse.linalg.eigs(w, k=1, which="LM", return_eigenvectors=False,
                                           v0=np.ones(units), maxiter=units * 20)[0])
    else:
        rho = max(abs(np.linalg.eigvals(w.toarray())))
    return (w.toarray() * (spectral_radius / rho)).astype(np.float32) if rho > 0 else w.toarray()


class ESN(nn.Module):
    def __init__(self, input_size: int, output_size: int, units: int = 500,
                 spectral_radius: float = 0.9, leak_rate: float = 0.3, input_scaling: float = 1.0,
                 bias_scaling: float = 0.0, density: float = 0.1, layers: int = 1, seed: int = 0,
                 pooling: Literal["last", "mean"] | None = None):
        super().__init__()
        self.kwargs = dict(input_size=input_size, output_size=output_size, units=units,
                           spectral_radius=spectral_radius, leak_rate=leak_rate,
                           input_scaling=input_scaling, bias_scaling=bias_scaling,
                           density=density, layers=layers, seed=seed, pooling=pooling)
        self.leak_rate = leak_rate
        self.pooling = pooling  # None: a forecaster, one output per step
        rng = np.random.default_rng(seed)
        for layer in range(layers):
            fan_in = input_size if layer == 0 else units
            w_in = rng.uniform(-1, 1, (units, fan_in)) * input_scaling
            bias = rng.uniform(-1, 1, units) * bias_scaling
            w = reservoir_matrix(units, density, spectral_radius, rng)
            self.register_buffer(f"w_in{layer}", torch.tensor(w_in, dtype=torch.float32))
            self.register_buffer(f"bias{layer}", torch.tensor(bias, dtype=torch.float32))
            self.register_buffer(f"w{layer}", torch.tensor(w, dtype=torch.float32))
        self.layers = layers
        self.register_buffer("input_center", torch.zeros(input_size))
        self.readout = nn.Linear(units * layers, output_size)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # a model saved before inputs were centered has no center, and took its inputs as they
        # were: a zero center
        state_dict.setdefault(f"{prefix}input_center", torch.zeros_like(self.input_center))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def state_size(self) -> int:
        return self.readout.in_features

    @torch.no_grad()
    def center_on(self, u: torch.Tensor) -> None:
        """Subtract the mean of the inputs u (training data) from every input from now on."""
        steps = u.reshape(-1, u.shape[-1])
        self.input_center.copy_(steps[~torch.isnan(steps).any(dim=1)].mean(0))  # valid steps

    @torch.no_grad()
    def run(self, u: torch.Tensor, h: list[torch.Tensor] | None = None
            ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Reservoir states, all layers side by side, for inputs u of shape (batch, time, in),
        from states `h` (one per layer; zero if None), and the states it ends in."""
        out, ends = [], []
        u = u - self.input_center
        for layer in range(self.layers):
            w_in, w, bias = (getattr(self, f"{k}{layer}") for k in ("w_in", "w", "bias"))
            drive = u @ w_in.T + bias  # the input part of every step, in one matmul
            state = h[layer] if h is not None else u.new_zeros(u.shape[0], w.shape[0])
            hs = []
            for t in range(u.shape[1]):
                state = ((1 - self.leak_rate) * state
                         + self.leak_rate * torch.tanh(drive[:, t] + state @ w.T))
                hs.append(state)
            u = torch.stack(hs, dim=1)
            out.append(u)
            ends.append(state)
        return torch.cat(out, dim=-1), ends

    def states(self, u: torch.Tensor) -> torch.Tensor:
        return self.run(u)[0]

    @torch.no_grad()
    def generate(self, u: torch.Tensor, steps: int) -> torch.Tensor:
        """Read the series u (batch, time, in), then run `steps` steps on its own output
        (input = the last prediction): the predictions, (batch, steps, out)."""
        states, h = self.run(u)
        predictions = [self.readout(states[:, -1])]
        for _ in range(steps - 1):
            states, h = self.run(predictions[-1][:, None], h)
            predictions.append(self.readout(states[:, -1]))
        return torch.stack(predictions, dim=1)

    def features(self, u: torch.Tensor) -> torch.Tensor:
        """What the readout reads: the states of every step (forecasting), or one pooled state
        per sequence (classification)."""
        u, valid = valid_steps(u)
        states = self.states(u)
        if self.pooling is None:
            return states
        if valid is None:
            return states[:, -1] if self.pooling == "last" else states.mean(dim=1)
        # NaN-padded sequences (padding.py): the states of the valid steps alone, which come
        # first and so never read the padding
        steps = lengths(valid)
        if self.pooling == "last":
            return states[torch.arange(len(states), device=states.device), steps - 1]
        return (states * valid[..., None]).sum(dim=1) / steps[:, None]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(u))


def build(hp: ESNHyper, info: DataInfo) -> ESN:
    return ESN(info.input_shape[-1], info.num_outputs, hp.units, hp.spectral_radius,
               hp.leak_rate, hp.input_scaling, hp.bias_scaling, hp.density, hp.layers, hp.seed,
               hp.pooling if info.task == "classification" else None)


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
