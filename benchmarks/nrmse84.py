"""Mackey-Glass NRMSE84 of the best ESN a search of esn.yaml finds, beside Jaeger's figure.

The protocol (Jaeger's): teacher-forced training one step ahead, then the network
runs on its own output; the error 84 steps after the last true input, over the series' standard
deviation, averaged over many starts. The search is esn.yaml with `data.mode: generative` and
`data.horizon: 84` (val_nrmse is then the NRMSE84 on the validation split); the champion is
scored again on the test split from 100 starts. Jaeger's 400-unit ESN, trained on 3,000 steps,
reached about 2.8e-4.

    .venv/bin/python benchmarks/nrmse84.py [--trials 12]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import ray  # noqa: E402

from raysearch import checkpoint, search  # noqa: E402
from raysearch.data import DATASETS  # noqa: E402
from raysearch.metrics import free_run_metrics  # noqa: E402
from raysearch.models import MODELS  # noqa: E402
from raysearch.spec import load_spec, resolve_space  # noqa: E402

JAEGER_NRMSE84 = 2.8e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    overrides = ["data.mode=generative", "data.horizon=84", "name=esn-nrmse84"]
    spec = load_spec(resolve_space("esn"), overrides, trials=args.trials)
    # with the dashboard: Ray Train's placement-group cleaner asks the state API, which it serves
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        outcome = search.run(spec, f"sqlite:///{tmp}/mlflow.db", f"{tmp}/results")
        wall = time.perf_counter() - began
        best = outcome.best
        model = checkpoint.load(best.checkpoint)
        options = spec.data_options().model_copy(update={"free_runs": 100})
        splits, info = DATASETS["mackey_glass"].load(options)
        washout = MODELS["esn"].hyperparams(**best.config).washout
        test = free_run_metrics(model, splits["test"][0], info, washout)["val_nrmse"]
    ray.shutdown()
    print(f"search of esn.yaml in generative mode: {args.trials} trials, "
          f"{outcome.count('completed')} completed, {outcome.count('stopped_early')} stopped "
          f"early, {wall:.0f} s")
    print(f"best trial: {best.config}")
    print(f"{'':36} {'NRMSE84':>9} {'/ Jaeger':>9}")
    print(f"{'raysearch, validation (20 starts)':36} {best.value:9.2e} "
          f"{best.value / JAEGER_NRMSE84:9.1f}")
    print(f"{'raysearch, test (100 starts)':36} {test:9.2e} {test / JAEGER_NRMSE84:9.1f}")
    print(f"{'Jaeger, 400 units, 3,000 steps':36} {JAEGER_NRMSE84:9.2e} {1:9.1f}")


if __name__ == "__main__":
    main()
