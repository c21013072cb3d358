"""An echo state network fit by raysearch against reservoirpy, in one run, on one CPU process.

Same series (Mackey-Glass, tau=17, one step ahead, raysearch's generator and splits), same
reservoir size, spectral radius, leak rate, input scaling, density, ridge and washout. Timed:
harvesting the training states plus the ridge fit, then the validation forecast; scored: NRMSE on
the validation split. The reservoirs' random weights differ (each library draws its own), so the
NRMSEs agree in size, not digits: the median over `--seeds` reservoirs is printed.
raysearch's figure is its train-loop code (harvest, X^T X / X^T Y sums, solve) without Ray;
the all-reduce of a 2-worker trial adds one small collective per chunk.

    .venv/bin/pip install reservoirpy==0.4.2
    .venv/bin/python benchmarks/esn_vs_reservoirpy.py [--units 500] [--length 6000] [--seeds 3]
"""

import argparse
import os
import statistics
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core each: numpy's BLAS and torch alike

import numpy as np  # noqa: E402
import torch  # noqa: E402

from raysearch.data import DATASETS  # noqa: E402
from raysearch.metrics import forecast_metrics, forecast_sums  # noqa: E402
from raysearch.models import MODELS  # noqa: E402
from raysearch.models.esn import harvest  # noqa: E402


def raysearch_fit(splits, info, args, seed: int, pieces: int) -> tuple[float, float, float]:
    """(fit seconds, forecast seconds, validation NRMSE)."""
    family = MODELS["esn"]
    hp = family.hyperparams(units=args.units, spectral_radius=args.sr, leak_rate=args.lr,
                            input_scaling=args.input_scaling, density=args.density,
                            ridge=args.ridge, washout=args.washout, seed=seed,
                            parallel_pieces=pieces,
                            center=False, bias_scaling=0.0)  # as reservoirpy 0.4's defaults
    model = family.build(hp, info)
    u, y = splits["train"]
    began = time.perf_counter()
    states, targets = harvest(model, u, y, 0, len(u), hp.washout, pieces)
    a = torch.cat([states, states.new_ones(len(states), 1)], dim=1).double()
    xtx, xty = a.T @ a, a.T @ targets.double()
    w = torch.linalg.solve(xtx + hp.ridge * torch.eye(len(xtx), dtype=xtx.dtype), xty)
    with torch.no_grad():
        model.readout.weight.copy_(w[:-1].T)
        model.readout.bias.copy_(w[-1])
    fitted = time.perf_counter()
    u_val, y_val = splits["val"]
    sums = forecast_sums(model, u_val, y_val, 0, len(u_val), hp.washout, pieces)
    done = time.perf_counter()
    return fitted - began, done - fitted, forecast_metrics(sums, "val")["val_nrmse"]


def reservoirpy_fit(splits, args, seed: int) -> tuple[float, float, float]:
    from reservoirpy.nodes import Reservoir, Ridge

    u, y = (t.numpy().astype(np.float64) for t in splits["train"])
    u_val, y_val = (t.numpy().astype(np.float64) for t in splits["val"])
    began = time.perf_counter()
    esn = Reservoir(units=args.units, sr=args.sr, lr=args.lr, input_scaling=args.input_scaling,
                    rc_connectivity=args.density, seed=seed) >> Ridge(ridge=args.ridge)
    esn.fit(u, y, warmup=args.washout)
    fitted = time.perf_counter()
    # the same protocol as raysearch's: the reservoir starts from zero at the validation split's
    # first step and its first `washout` steps are not scored
    esn.nodes[0].reset()
    predicted = esn.run(u_val)
    done = time.perf_counter()
    err = predicted[args.washout:] - y_val[args.washout:]
    nrmse = float(np.sqrt(np.mean(err ** 2) / np.var(y_val[args.washout:])))
    return fitted - began, done - fitted, nrmse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--length", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sr", type=float, default=0.9)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--input-scaling", type=float, default=1.0)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--ridge", type=float, default=1e-8)
    parser.add_argument("--washout", type=int, default=100)
    parser.add_argument("--pieces", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)

    dataset = DATASETS["mackey_glass"]
    splits, info = dataset.load(dataset.options(length=args.length))
    rows = {
        "raysearch, sequential harvest": [raysearch_fit(splits, info, args, s, 1)
                                          for s in range(args.seeds)],
        f"raysearch, {args.pieces} pieces side by side": [
            raysearch_fit(splits, info, args, s, args.pieces) for s in range(args.seeds)],
        "reservoirpy 0.4": [reservoirpy_fit(splits, args, s) for s in range(args.seeds)],
    }
    base = statistics.median(r[0] for r in rows["reservoirpy 0.4"])
    print(f"ESN N={args.units}, Mackey-Glass {args.length} steps "
          f"({len(splits['train'][0])} train, {len(splits['val'][0])} val), sr={args.sr}, "
          f"leak={args.lr}, ridge={args.ridge:g}, washout={args.washout}; "
          f"median of {args.seeds} seeds, 1 thread")
    print(f"{'':40} {'fit s':>8} {'forecast s':>11} {'val NRMSE':>10} {'fit / reservoirpy':>19}")
    for name, runs in rows.items():
        fit, forecast, nrmse = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"{name:40} {fit:8.3f} {forecast:11.3f} {nrmse:10.2e} {fit / base:19.2f}")


if __name__ == "__main__":
    main()
