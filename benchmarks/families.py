"""One search across model families against one search per family, each of the same budget.

The ready space `families` (an ESN, an LSTM and a GRU on seq_digits, `params.model` searched)
runs once with `--trials` trials; then each family alone, with its own params of that space, the
same fixed values and scheduler, and `--trials` trials too. Printed: each family's best
val_accuracy in the shared search (from its share of the trials) beside its best alone, and
each search's wall time.

    .venv/bin/python benchmarks/families.py [--trials 15] [--set scheduler.max_t=9 ...]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# as raysearch's own instance (_ray.py); before Ray is imported, which reads it once
os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray  # noqa: E402
import yaml  # noqa: E402

from raysearch import search  # noqa: E402
from raysearch.models import MODELS  # noqa: E402
from raysearch.quiet import QUIET_LEVEL, quiet_libraries  # noqa: E402
from raysearch.spec import FAMILY, load_spec, resolve_space  # noqa: E402
from raysearch.spec.checks import families_of  # noqa: E402
from raysearch.spec.yaml_lines import Loader  # noqa: E402


def alone(path: Path, family: str) -> str:
    """The families space at `path` as a search of `family` alone: the params it samples (as
    the spec's checks find them), without the condition on the family, and the fixed values it
    takes."""
    spec, space = load_spec(path), yaml.load(path.read_text(), Loader=Loader)
    params = {}
    for name, param in space["params"].items():
        if name == FAMILY or family not in families_of(name, spec.params, spec.families()):
            continue
        when = {k: v for k, v in (param.get("when") or {}).items() if k != FAMILY}
        params[name] = {**{k: v for k, v in param.items() if k != "when"},
                        **({"when": when} if when else {})}
    takes = MODELS[family].hyperparams.model_fields
    fixed = {name: value for name, value in space["fixed"].items() if name in takes}
    return yaml.safe_dump({**space, "name": f"{space['name']}-{family}", "model": family,
                           "params": params, "fixed": fixed}, sort_keys=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="key.path=value for every search (as raysearch tune --set)")
    args = parser.parse_args()
    quiet_libraries()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level=QUIET_LEVEL)
    overrides = [f"search.trials={args.trials}", *args.overrides]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tracking, storage = f"sqlite:///{tmp}/mlflow.db", f"{tmp}/results"
        shared = load_spec(resolve_space("families"), overrides)
        began = time.perf_counter()
        together = search.run(shared, tracking, storage)
        together_s = time.perf_counter() - began
        for family in shared.families():
            path = Path(tmp) / f"{family}.yaml"
            path.write_text(alone(resolve_space("families"), family))
            began = time.perf_counter()
            outcome = search.run(load_spec(path, overrides), tracking, storage)
            rows.append((family, outcome, time.perf_counter() - began))
    ray.shutdown()
    changed = f" ({' '.join(args.overrides)})" if args.overrides else ""
    print(f"seq_digits, {args.trials} trials per search{changed}: the best val_accuracy of "
          "each family")
    print(f"{'family':7} {'in the 3-family search':>22} {'(its trials)':>12} {'alone':>7} "
          f"{'alone: wall s':>13}")
    for family, outcome, wall in rows:
        top = together.families.get(family)
        print(f"{family:7} {top.value if top else float('nan'):22.4f} "
              f"{top.trials if top else 0:12d} {outcome.best.value:7.4f} {wall:13.0f}")
    test = together.test_metrics.get("test_accuracy", float("nan"))
    print(f"3-family search: {together_s:.0f} s wall; champion {together.best.config[FAMILY]}, "
          f"val_accuracy {together.best.value:.4f}, test_accuracy {test:.4f}")


if __name__ == "__main__":
    main()
