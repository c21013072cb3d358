"""What a registered champion costs per request, served three ways, against the bare model.

    .venv/bin/python benchmarks/serving.py [--model cnn|lstm|esn] [--requests 200]

One run: a model of the family is registered in a throwaway SQLite MLflow store exactly as a
search registers its champion (tracking.promote: the pyfunc from code, its signature and
input example), then the same inputs are predicted by
- bare torch: the module in this process, `model(x)` under no_grad (the competitor: the least
  any server could spend);
- pyfunc: `mlflow.pyfunc.load_model("models:/NAME@champion").predict(x)` in this process
  (MLflow's schema check and conversion on top of the same forward pass);
- served: `mlflow models serve --env-manager local` on 127.0.0.1, one `POST /invocations`
  with {"inputs": ...} at a time over a kept-alive connection (JSON both ways, HTTP, uvicorn);
at batch 1 and batch 64. Prints the median and p95 per request and each against bare torch.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# the model server started as the tests start it, as the README gives the command
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
import torch  # noqa: E402
from helpers import mlflow_models_serve  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from raysearch import checkpoint, tracking  # noqa: E402
from raysearch.costs import parameter_counts  # noqa: E402
from raysearch.data import DATASETS  # noqa: E402
from raysearch.data.base import sample_inputs  # noqa: E402
from raysearch.models import MODELS  # noqa: E402

FAMILIES = {  # family -> data set, hyperparameters: what the ready spaces search, mid-range
    "cnn": ("digits", {"channels": 32}),
    "lstm": ("seq_digits", {"hidden_size": 64}),
    "esn": ("mackey_glass", {"units": 500}),
}


def build(family: str) -> tuple[torch.nn.Module, str, np.ndarray]:
    """A freshly initialised model of the family (its weights do not change its cost), its task
    and 64 inputs of the data set's test split."""
    data, hyper = FAMILIES[family]
    splits, info = DATASETS[data].load(DATASETS[data].options())
    torch.manual_seed(0)
    model = MODELS[family].build(MODELS[family].hyperparams(**hyper), info).eval()
    return model, info.task, sample_inputs(splits, info, "test", 64).numpy()


def timed(call, repeats: int) -> list[float]:
    for _ in range(5):  # warm-up
        call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(FAMILIES), default="cnn")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)  # a serving worker's share; the server's process is set alike
    os.environ["OMP_NUM_THREADS"] = "1"

    model, task, inputs = build(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        saved = checkpoint.save(Path(tmp) / "ckpt", args.model, model, task=task)
        run = client.create_run(client.create_experiment("serving")).info.run_id
        tracking.promote(client, "serving", run, str(saved), "m", "max", 1.0, {}, inputs[:2])
        mlflow.set_tracking_uri(uri)
        pyfunc = mlflow.pyfunc.load_model("models:/serving@champion")
        rows = []
        with mlflow_models_serve("models:/serving@champion", uri) as url, \
                requests.Session() as http:
            for batch in (1, 64):
                x = inputs[:batch]
                tensor = torch.as_tensor(x)
                body = {"inputs": x.tolist()}

                def bare(tensor=tensor):
                    with torch.no_grad():
                        model(tensor)

                def post(body=body):
                    reply = http.post(f"{url}/invocations", json=body, timeout=60)
                    reply.raise_for_status()

                ways = {"bare torch": bare, "pyfunc": lambda x=x: pyfunc.predict(x),
                        "served (HTTP)": post}
                base = None
                for way, call in ways.items():
                    times = timed(call, args.requests)
                    median = statistics.median(times)
                    p95 = statistics.quantiles(times, n=20)[-1]
                    base = base or median
                    rows.append((batch, way, median * 1e3, p95 * 1e3, median / base))
    total, trained = parameter_counts(model)
    print(f"{args.model}: {total:,} weights ({trained:,} trained), {args.requests} requests per "
          "row, 1 thread")
    print(f"{'batch':>5}  {'way':<14} {'median ms':>10} {'p95 ms':>9} {'/ bare':>8}")
    for batch, way, median, p95, ratio in rows:
        print(f"{batch:>5}  {way:<14} {median:>10.3f} {p95:>9.3f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
