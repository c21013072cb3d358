"""Every ready search space in search_spaces/, validated and run as a short search.

Each space as shipped, but `--trials` trials (3 by default), one after another on one local Ray
instance with a throw-away MLflow store. A space this machine cannot run (resnet.yaml wants
CIFAR-10 on disk and a GPU per trial) is listed with the reason raysearch gives, not run.

    .venv/bin/python benchmarks/ready_spaces.py [--trials 3] [--set KEY=VALUE ...] [NAME ...]

`--set` changes every named space as `raysearch tune --set` does. Where CIFAR-10 cannot be had,
`--cifar-stand-in` runs the spaces on cifar10 with scikit-learn's digits in its place, upscaled
to 32x32 RGB images in class folders (an `imagefolder` data set): the same model and space on a
real, far smaller data set.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import ray  # noqa: E402
from PIL import Image  # noqa: E402

from raysearch import search  # noqa: E402
from raysearch.data import DataError  # noqa: E402
from raysearch.spec import SPACES_DIR, SpecError, load_spec, resolve_space  # noqa: E402


def write_digits(root: Path) -> None:
    """scikit-learn's digits as 32x32 RGB PNGs, one folder per class."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        gray = Image.fromarray((pixels.reshape(8, 8) * 255 / 16).astype(np.uint8))
        gray.resize((32, 32), Image.Resampling.BILINEAR).convert("RGB").save(
            root / str(label) / f"{i}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="applied to every space run")
    parser.add_argument("--cifar-stand-in", action="store_true",
                        help="digits as 32x32 RGB images in place of CIFAR-10")
    parser.add_argument("names", nargs="*", help="spaces to run (default: all)")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = Path(tmp) / "digits32"
        if args.cifar_stand_in:
            write_digits(stand_in)
        for name in names:
            spec = load_spec(resolve_space(name), args.overrides, trials=args.trials)
            if args.cifar_stand_in and spec.data.name == "cifar10":
                spec = load_spec(resolve_space(name), [
                    *args.overrides, "data.name=imagefolder", f"data.root={stand_in}",
                    "data.image_size=32"], trials=args.trials)
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
            result = (f"{spec.ranking().metric} {best.value:.4g}; {tested}" if best
                      else "no trial reported the objective")
            rows.append((name, spec, counts, result, wall))
    ray.shutdown()
    print(f"{'space':10} {'model on data':24} {'done/early/failed':>17} {'wall s':>7}  result")
    for name, spec, counts, result, wall in rows:
        what = f"{spec.models_text()} on {spec.data.name}"
        print(f"{name:10} {what:24} {counts or 'not run':>17} {wall:7.0f}  {result}")


if __name__ == "__main__":
    main()
