"""Every ready search space in search_spaces/, validated and run as a short search.

Each space as shipped, but `--trials` trials (3 by default), one after another on one local Ray
instance with a throw-away MLflow store. A space this machine cannot run (resnet.yaml wants
CIFAR-10 on disk and a GPU per trial) is listed with the reason raysearch gives, not run.

    .venv/bin/python benchmarks/ready_spaces.py [--trials 3] [NAME ...]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import ray  # noqa: E402

from raysearch import search  # noqa: E402
from raysearch.data import DataError  # noqa: E402
from raysearch.spec import SPACES_DIR, SpecError, load_spec, resolve_space  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("names", nargs="*", help="spaces to run (default: all)")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = load_spec(resolve_space(name), trials=args.trials)
            began = time.perf_counter()
            try:
                outcome = search.run(spec, f"sqlite:///{tmp}/mlflow.db", f"{tmp}/results")
            except (SpecError, DataError) as e:
                rows.append((name, spec, None, str(e).split(": ", 1)[-1][:100], 0.0))
                continue
            wall = time.perf_counter() - began
            best = outcome.best
            tested = ", ".join(f"{k} {v:.4g}" for k, v in outcome.test_metrics.items())
            counts = "/".join(str(outcome.count(s))
                              for s in ("completed", "stopped_early", "failed"))
            result = (f"{spec.objective.metric} {best['value']:.4g}; {tested}" if best
                      else "no trial reported the objective")
            rows.append((name, spec, counts, result, wall))
    ray.shutdown()
    print(f"{'space':10} {'model on data':24} {'done/early/failed':>17} {'wall s':>7}  result")
    for name, spec, counts, result, wall in rows:
        print(f"{name:10} {spec.model + ' on ' + spec.data.name:24} {counts or 'not run':>17} "
              f"{wall:7.0f}  {result}")


if __name__ == "__main__":
    main()
