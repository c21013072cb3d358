"""UEA JapaneseVowels (9 speakers, 12 cepstral features, 7 to 29 steps): the test accuracy of
the best esn, lstm, gru and fcn a search of each finds, beside Fawaz et al. (2019).

The set is read from the `.ts` files sktime ships (its wheel holds them; nothing is fetched at
run time) and written as a `sequences` .npz with `lengths` (variable length) and the held-out
test split the archive defines (270 train, 370 test); validation is 20% of the training part.
Each family gets the same budget: `--trials` trials (TPE, seed 0), ASHA on the same grace
period, 2 gloo workers per trial.

    .venv/bin/pip download --no-deps sktime -d /tmp/sktime
    unzip -j /tmp/sktime/sktime-*.whl 'sktime/datasets/data/JapaneseVowels/*' -d data/jv
    .venv/bin/python benchmarks/japanese_vowels.py --ts-dir data/jv [--trials 12] [esn lstm ...]
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

import numpy as np  # noqa: E402
import ray  # noqa: E402

from raysearch import search  # noqa: E402
from raysearch.quiet import QUIET_LEVEL, quiet_libraries  # noqa: E402
from raysearch.spec import load_spec  # noqa: E402

# Fawaz et al. 2019, "Deep learning for time series classification: a review", table of the
# MTS archive: FCN's test accuracy; and the ESN variant they quote
FAWAZ = {"fcn": 0.993, "esn": 0.965}

RECURRENT = """\
  lr:            {type: float, low: 1e-4, high: 1e-2, log: true}
  hidden_size:   {type: categorical, choices: [32, 64, 128, 256]}
  num_layers:    {type: int, low: 1, high: 2}
  dropout:       {type: float, low: 0.0, high: 0.3}
  bidirectional: {type: categorical, choices: [false, true]}
fixed: {optimizer: adam, batch_size: 32, lr_schedule: cosine}
"""
PARAMS = {
    "esn": """\
  units:           {type: int, low: 100, high: 1000, log: true}
  spectral_radius: {type: float, low: 0.1, high: 1.5, log: true}
  leak_rate:       {type: float, low: 0.05, high: 1.0, log: true}
  input_scaling:   {type: float, low: 0.05, high: 2.0, log: true}
  ridge:           {type: float, low: 1e-8, high: 1.0, log: true}
  pooling:         {type: categorical, choices: [last, mean]}
fixed: {washout: 0, seeds: 2}
""",
    "lstm": RECURRENT, "gru": RECURRENT,
    "fcn": """\
  lr:       {type: float, low: 1e-4, high: 1e-2, log: true}
  filters:  {type: categorical, choices: [32, 64, 128]}
  kernel_1: {type: int, low: 3, high: 8}
  dropout:  {type: float, low: 0.0, high: 0.3}
fixed: {optimizer: adam, batch_size: 32}
""",
}


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """A .ts file of the UEA/UCR archive: each line after @data is one sequence, its
    dimensions' comma-separated values split by ':', the class label last."""
    sequences, labels, data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            data = True
            continue
        if data:
            *dims, label = line.split(":")
            sequences.append(np.array([[float(v) for v in d.split(",")] for d in dims]).T)
            labels.append(label)
    return sequences, labels


def write_npz(ts_dir: Path, out: Path) -> None:
    train, test = (read_ts(ts_dir / f"JapaneseVowels_{part}.ts") for part in ("TRAIN", "TEST"))
    classes = sorted(set(train[1]), key=int)
    steps = max(len(s) for s in train[0] + test[0])

    def arrays(sequences, labels):
        x = np.zeros((len(sequences), steps, sequences[0].shape[1]), dtype=np.float32)
        for i, s in enumerate(sequences):
            x[i, :len(s)] = s
        return x, np.array([classes.index(label) for label in labels]), np.array(
            [len(s) for s in sequences])

    x, y, lengths = arrays(*train)
    x_test, y_test, lengths_test = arrays(*test)
    np.savez(out, x=x, y=y, lengths=lengths, x_test=x_test, y_test=y_test,
             lengths_test=lengths_test, classes=np.array(classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ts-dir", type=Path, required=True,
                        help="folder with JapaneseVowels_TRAIN.ts and JapaneseVowels_TEST.ts")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-t", type=int, default=30, help="epochs (ESN: chunks, at most 4)")
    parser.add_argument("families", nargs="*", default=list(PARAMS))
    args = parser.parse_args()
    quiet_libraries()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level=QUIET_LEVEL)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "japanese_vowels.npz"
        write_npz(args.ts_dir, data)
        for family in args.families:
            max_t = min(args.max_t, 4) if family == "esn" else args.max_t
            space = Path(tmp) / f"{family}.yaml"
            space.write_text(
                f"name: jv-{family}\nmodel: {family}\n"
                f"data: {{name: sequences, path: {data}, val_fraction: 0.2}}\n"
                "objective: {metric: val_accuracy, mode: max}\n"
                f"search: {{trials: {args.trials}, sampler: tpe, seed: 0, max_concurrent: 1}}\n"
                f"scheduler: {{type: asha, max_t: {max_t}, grace_period: {max(1, max_t // 10)}, "
                "reduction_factor: 3}\n"
                "resources: {workers: 2, cpus_per_worker: 1}\n"
                f"params:\n{PARAMS[family]}")
            spec = load_spec(space)
            began = time.perf_counter()
            outcome = search.run(spec, f"sqlite:///{tmp}/mlflow.db", f"{tmp}/results")
            rows.append((family, outcome, time.perf_counter() - began))
    ray.shutdown()
    print(f"JapaneseVowels, {args.trials} trials per family (270 train of which 20% validation, "
          "370 test)")
    print(f"{'family':7} {'best val_accuracy':>17} {'test_accuracy':>13} {'Fawaz 2019':>10} "
          f"{'wall s':>7}  best params")
    for family, outcome, wall in rows:
        best = outcome.best
        test = outcome.test_metrics.get("test_accuracy", float("nan"))
        reference = f"{FAWAZ[family]:.3f}" if family in FAWAZ else "-"
        print(f"{family:7} {best.value:17.4f} {test:13.4f} {reference:>10} {wall:7.0f}  "
              f"{best.config}")


if __name__ == "__main__":
    main()
