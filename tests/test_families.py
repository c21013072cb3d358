"""The recurrent families, the FCN, the ESN classifier, the MLP on tables and a streamed image
folder in real searches: 2-worker gloo TorchTrainer trials on a real Ray cluster, tracked in a
real SQLite MLflow store."""

from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import torch
from helpers import (
    assert_nothing_left_running,
    child_runs,
    diagnostics,
    write_sequences,
    write_series,
    write_table,
)
from mlflow import MlflowClient
from PIL import Image
from ray.tune.experiment import Trial

import raysearch
from raysearch import checkpoint, search
from raysearch.costs import COST_METRICS
from raysearch.data import DATASETS
from raysearch.early_stop import PostingASHA
from raysearch.evaluate import input_example
from raysearch.spec import load_spec, resolve_space

SPACE = """\
    name: {name}
    model: {model}
    data: {data}
    objective: {objective}
    search: {{trials: 1, sampler: random, seed: 0}}
    scheduler: {{type: none, max_t: {epochs}}}
    resources: {{workers: 2, cpus_per_worker: 1}}
    params:
      {param}
    fixed: {fixed}
"""
ACCURACY = "{metric: val_accuracy, mode: max}"
NRMSE = "{metric: val_nrmse, mode: min}"

CASES = {
    # a GRU forecasts Mackey-Glass one step ahead from windows of the series
    "gru-series": ("gru", "{name: mackey_glass, length: 3000}", NRMSE, 6,
                   "lr: {type: float, low: 0.008, high: 0.01, log: true}",
                   "{hidden_size: 16, window: 16, optimizer: adam, batch_size: 8}", 0.5),
    # a CNN on an image folder streamed from its files (DataLoader, DistributedSampler)
    "cnn-streamed": ("cnn", "{name: imagefolder, root: IMAGES, image_size: 16, stream: true}",
                     ACCURACY, 2, "lr: {type: float, low: 0.005, high: 0.01, log: true}",
                     "{channels: 4, optimizer: adam, batch_size: 16}", 0.6),
    # a user's set of variable-length sequences (an .npz with lengths): the LSTM reads the
    # valid steps alone as packed sequences, the ESN pools the states of the valid steps (its
    # metrics averaged over two reservoirs), the FCN masks the steps after each sequence's end
    # (seq_digits, the digits read row by row, is the same code on sequences of equal length:
    # test_models.py)
    "lstm-variable": ("lstm", "{name: sequences, path: SEQUENCES}", ACCURACY, 4,
                      "lr: {type: float, low: 0.01, high: 0.02, log: true}",
                      "{hidden_size: 16, optimizer: adam, batch_size: 16}", 0.6),
    "esn-variable": ("esn", "{name: sequences, path: SEQUENCES}", ACCURACY, 1,
                     "units: {type: int, low: 100, high: 150}",
                     "{pooling: mean, seeds: 2, ridge: 1.0e-3, washout: 0}", 0.6),
    "fcn-variable": ("fcn", "{name: sequences, path: SEQUENCES}", ACCURACY, 4,
                     "lr: {type: float, low: 0.01, high: 0.02, log: true}",
                     "{filters: 16, optimizer: adam, batch_size: 16}", 0.6),
    # the same set as a folder of .npy files, memory-mapped by each worker (a set too large to
    # hold), its batches drawn by a DistributedSampler
    "lstm-streamed": ("lstm", "{name: sequences, path: SEQFOLDER, stream: true}", ACCURACY, 4,
                      "lr: {type: float, low: 0.01, high: 0.02, log: true}",
                      "{hidden_size: 16, optimizer: adam, batch_size: 16}", 0.6),
    # an ESN forecasts two measured channels of a CSV series from three (one is noise)
    "esn-csv": ("esn", "{name: series, path: SERIES, target: [a, b], inputs: [a, b, noise], "
                "time: time}", NRMSE, 2, "units: {type: int, low: 100, high: 150}",
                "{washout: 20, ridge: 1.0e-6, input_scaling: 0.1}", 0.2),
    # a table (CSV) classified by an MLP from numbers and a one-hot category, and regressed
    "mlp-classes": ("mlp", "{name: table, path: TABLE, target: kind, inputs: [size, weight, "
                    "colour], categorical: [colour]}", ACCURACY, 4,
                    "lr: {type: float, low: 0.01, high: 0.02, log: true}",
                    "{units: 32, optimizer: adam, batch_size: 16}", 0.85),
    "mlp-regression": ("mlp", "{name: table, path: TABLE, target: price, inputs: [size, weight, "
                       "colour], categorical: [colour]}", "{metric: val_r2, mode: max}", 6,
                       "lr: {type: float, low: 0.01, high: 0.02, log: true}",
                       "{units: 32, optimizer: adam, batch_size: 16}", 0.9),
    # any torchvision classification model by name (random weights), its input resized up to
    # what it takes (SqueezeNet: 17 px)
    "torchvision-folder": ("torchvision", "{name: imagefolder, root: IMAGES, image_size: 16}",
                           ACCURACY, 3, "lr: {type: float, low: 0.002, high: 0.003, log: true}",
                           "{arch: squeezenet1_1, optimizer: adam, batch_size: 16}", 0.5),
}


def image_folder(root: Path) -> Path:
    """Three classes of noisy 20 px images, told apart by their dominant colour."""
    noise = np.random.default_rng(0)
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(40):
            pixels = noise.integers(0, 120, (20, 20, 3))
            pixels[..., c] += 135
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def sequence_folder(folder: Path) -> Path:
    """write_sequences' set as x.npy, y.npy and lengths.npy."""
    folder.mkdir()
    with np.load(write_sequences(folder.with_suffix(".npz"))) as arrays:
        for name in arrays.files:
            np.save(folder / f"{name}.npy", arrays[name])
    return folder


@pytest.mark.parametrize("case", CASES)
def test_a_family_trains_in_a_real_search(case, ray_cluster, tmp_path, tracking_uri, write_spec):
    model, data, objective, epochs, param, fixed, good = CASES[case]
    if "IMAGES" in data:
        data = data.replace("IMAGES", str(image_folder(tmp_path / "images")))
    if "SERIES" in data:
        data = data.replace("SERIES", str(write_series(tmp_path / "series.csv")))
    if "TABLE" in data:
        data = data.replace("TABLE", str(write_table(tmp_path / "table.csv")))
    if "SEQFOLDER" in data:
        data = data.replace("SEQFOLDER", str(sequence_folder(tmp_path / "sequences")))
    if "SEQUENCES" in data:
        data = data.replace("SEQUENCES", str(write_sequences(tmp_path / "sequences.npz")))
    spec = load_spec(write_spec(SPACE.format(name=case, model=model, data=data,
                                             objective=objective, epochs=epochs, param=param,
                                             fixed=fixed)))
    outcome = search.run(spec, tracking_uri, str(tmp_path / "results"))
    assert outcome.count("completed") == 1, outcome.errors
    value = outcome.best.value
    assert value > good if spec.ranking().mode == "max" else value < good, value
    assert outcome.promotion.champion and outcome.test_metrics
    assert_nothing_left_running()

    # every family's champion is an MLflow model predicting what raysearch.load's does
    mlflow.set_tracking_uri(tracking_uri)
    version = MlflowClient(tracking_uri).get_model_version_by_alias(case, "champion")
    model = raysearch.load(mlflow.artifacts.download_artifacts(version.source))
    x = input_example(*DATASETS[spec.data.name].load(spec.data_options()))
    expected = model(torch.as_tensor(x))
    expected = expected.softmax(-1) if spec.ranking().metric == "val_accuracy" else expected
    served = mlflow.pyfunc.load_model(f"models:/{case}@champion")
    assert np.allclose(served.predict(x), expected.detach().numpy(), atol=1e-5)
    # and its diagnostics on the test split are in the search's run
    expected = {"val_accuracy": ["classification_report.txt", "confusion_matrix.png"],
                "val_r2": ["prediction_error.png"]}.get(spec.ranking().metric, ["forecast.png"])
    assert sorted(diagnostics(tracking_uri, outcome.parent_run_id)) == expected

    # what the trial's model costs is in its run; an ESN trains its readout alone
    (child,) = child_runs(MlflowClient(tracking_uri), outcome)
    costs = {name: child.data.metrics[name] for name in COST_METRICS}
    assert all(value > 0 for name, value in costs.items() if name != "peak_memory_mb")
    # (an MLP computes with its standardization constants, and does not train them)
    trains_all = model.__class__.__name__ not in ("ESN", "MLP")
    assert (costs["params_trainable"] == costs["params_total"]) == trains_all


def test_a_streamed_set_a_worker_cannot_reach_fails_its_trial_in_one_line(
        ray_cluster, tmp_path, tracking_uri, write_spec):
    """The driver read the folder; the workers do not find it (as on a node that does not
    mount it): the trial fails at once with the path, the search does not hang."""
    folder = sequence_folder(tmp_path / "sequences")
    spec = load_spec(write_spec(SPACE.format(
        name="unreachable", model="gru", data=f"{{name: sequences, path: {folder}, stream: true}}",
        objective=ACCURACY, epochs=2, param="lr: {type: float, low: 0.01, high: 0.02}",
        fixed="{hidden_size: 8}")))
    data = search.inputs(spec)
    moved = folder.rename(tmp_path / "elsewhere")
    outcome = search.run(spec, tracking_uri, str(tmp_path / "results"), data=data)
    assert outcome.count("failed") == 1 and outcome.best is None
    (reason,) = outcome.errors.values()
    assert reason.startswith(f"DataError: {folder}/x.npy: no such file on "), reason
    assert "storage every node mounts" in reason
    assert moved.exists()
    assert_nothing_left_running()


class Posted:
    """The dispatcher's `post` as the scheduler calls it: the decisions it was told."""

    def __init__(self) -> None:
        self.post, self.decisions = self, []

    def remote(self, trial_id: str, epoch: int, stop: bool) -> None:
        self.decisions.append((trial_id, epoch, stop))


def test_asha_compares_a_trial_at_a_rung_with_its_own_family_alone():
    posted = Posted()
    asha = PostingASHA(posted, "epoch", max_t=9, stopped_early=set(), grace_period=1,
                       reduction_factor=3)
    asha.set_search_properties("val_accuracy", "max")
    trials = {tid: Trial("trainable", config={"model": family}, stub=True, trial_id=tid)
              for tid, family in [("e1", "esn"), ("l1", "lstm"), ("l2", "lstm"), ("e2", "esn")]}
    for trial in trials.values():
        asha.on_trial_add(None, trial)
    at_rung = {"e1": 0.9, "l1": 0.3, "l2": 0.2, "e2": 0.8}  # epoch 1: ASHA's first rung
    decisions = {tid: asha.on_trial_result(None, trials[tid], {"epoch": 1, "val_accuracy": v})
                 for tid, v in at_rung.items()}
    # the first LSTM goes on though the ESN before it scored higher; the second LSTM is
    # stopped by the first, the second ESN by the first ESN
    assert decisions == {"e1": "CONTINUE", "l1": "CONTINUE", "l2": "STOP", "e2": "STOP"}
    assert asha.stopped_early == {"l2", "e2"}
    assert posted.decisions == [("e1", 1, False), ("l1", 1, False), ("l2", 1, True),
                                ("e2", 1, True)]


def test_three_families_in_one_search(ray_cluster, tmp_path, tracking_uri):
    """The ready space of an ESN, an LSTM and a GRU on seq_digits, made small: every family is
    tried first, each trial has its own family's params, ASHA stops a trial only for its own
    family's better trials, the champion is the best family's and loads."""
    spec = load_spec(resolve_space("families"), [
        "search.trials=7", "scheduler.max_t=3", "params.units.high=200",
        "params.hidden_size.choices=[16, 32]"], name="families-3")
    outcome = search.run(spec, tracking_uri, str(tmp_path / "results"))
    assert outcome.count("failed") == 0, outcome.errors
    client = MlflowClient(tracking_uri)
    runs = sorted(child_runs(client, outcome), key=lambda r: r.info.start_time)
    families = [run.data.params["model"] for run in runs]
    assert len(runs) == 7 and families[:3] == ["esn", "lstm", "gru"]
    for run in runs:
        esn = run.data.params["model"] == "esn"
        assert ("units" in run.data.params) == esn and ("lr" in run.data.params) == (not esn)
    # the first trial of a family meets no rung record of its own, so it is never stopped
    firsts = {family: runs[families.index(family)] for family in ("esn", "lstm", "gru")}
    assert all(run.data.tags["raysearch.state"] == "completed" for run in firsts.values())
    assert set(outcome.families) == {"esn", "lstm", "gru"}

    # the champion is the best family's, its registered version says which, and it loads
    best_family = outcome.best.config["model"]
    assert next(iter(outcome.families)) == best_family
    version = client.get_model_version_by_alias("families-3", "champion")
    assert version.tags["model"] == best_family
    folder = mlflow.artifacts.download_artifacts(version.source, tracking_uri=tracking_uri)
    assert checkpoint.read_config(checkpoint.model_folder(folder))["model"] == best_family
    model = raysearch.load(folder)
    x = input_example(*DATASETS["seq_digits"].load(spec.data_options()))
    assert model(torch.as_tensor(x)).shape == (2, 10)
    # the study holds each trial's family as a param; the report compares the families
    db = tmp_path / "results" / "families-3" / "optuna.db"
    study = optuna.load_study(study_name="families-3", storage=f"sqlite:///{db}")
    assert [t.params["model"] for t in study.trials] == families
    page = Path(outcome.report).read_text()
    assert "Model families compared" in page
    assert_nothing_left_running()
