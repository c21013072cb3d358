"""A model on disk and in the registry: damaged files are named, never unpickled, a registered
version is an MLflow model that MLflow's own pyfunc loads, and `raysearch pull` refuses a
download that is not what was registered. A real SQLite MLflow store, no Ray needed."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from helpers import cli, cli_here
from mlflow import MlflowClient

import raysearch
from raysearch import checkpoint, tracking
from raysearch.models.cnn import CNN
from raysearch.trial_checkpoints import TrialCheckpoints


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return checkpoint.save(tmp_path / "ckpt", "cnn", CNN(1, 10, channels=4))


def test_a_saved_model_loads_back(saved):
    x = torch.randn(3, 1, 8, 8)
    model = raysearch.load(saved)
    assert not model.training
    again = CNN(1, 10, channels=4)
    again.load_state_dict(torch.load(saved / checkpoint.WEIGHTS_FILE, weights_only=True))
    assert torch.equal(model(x), again.eval()(x))


def damage_truncate(folder: Path) -> Path:
    path = folder / checkpoint.WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def damage_garbage(folder: Path) -> Path:
    path = folder / checkpoint.WEIGHTS_FILE
    path.write_bytes(b"\x80\x02not a checkpoint at all" * 10)
    return path


def damage_config(folder: Path) -> Path:
    path = folder / checkpoint.CONFIG_FILE
    path.write_text('{"model": "cnn", "kwargs": ')
    return path


def damage_remove(folder: Path) -> Path:
    path = folder / checkpoint.WEIGHTS_FILE
    path.unlink()
    return path


def damage_other_model(folder: Path) -> Path:
    checkpoint.save(folder / "other", "cnn", CNN(1, 10, channels=8))
    (folder / "other" / checkpoint.WEIGHTS_FILE).replace(folder / checkpoint.WEIGHTS_FILE)
    return folder / checkpoint.WEIGHTS_FILE


@pytest.mark.parametrize("damage", [damage_truncate, damage_garbage, damage_config,
                                    damage_remove, damage_other_model])
def test_a_damaged_checkpoint_is_a_clear_error_naming_the_file(saved, damage):
    path = damage(saved)
    with pytest.raises(raysearch.CheckpointError) as info:
        raysearch.load(saved)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


IMAGES = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)  # what the CNN reads


def register(tmp_path: Path, saved: Path, tracking_uri: str) -> MlflowClient:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("ckpt")
    run = client.create_run(experiment).info.run_id
    promotion = tracking.promote(client, "ckpt", run, str(saved), "val_accuracy", "max", 0.9,
                                 {}, IMAGES)
    assert promotion.champion
    return client


def test_a_registered_model_is_an_mlflow_model_that_predicts_what_raysearch_load_does(
        tmp_path, saved, tracking_uri):
    register(tmp_path, saved, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    served = mlflow.pyfunc.load_model("models:/ckpt@champion")
    assert served.metadata.signature.inputs.inputs[0].shape == (-1, 1, 8, 8)
    expected = raysearch.load(saved)(torch.as_tensor(IMAGES)).softmax(-1).detach().numpy()
    assert np.allclose(served.predict(IMAGES), expected, atol=1e-6)
    # what raysearch pull writes is that MLflow model, which raysearch.load reads too
    pulled = cli_here("pull", "ckpt", "--out", str(tmp_path / "pulled"), "--tracking-uri",
                      tracking_uri)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "MLmodel").exists()
    assert torch.equal(raysearch.load(tmp_path / "pulled")(torch.as_tensor(IMAGES)),
                       raysearch.load(saved)(torch.as_tensor(IMAGES)))


def test_a_version_registered_as_a_plain_folder_still_pulls(tmp_path, saved, tracking_uri):
    """Before raysearch logged MLflow models, a version was config.json + model.pt alone."""
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("old")).info.run_id
    for file in checkpoint.MODEL_FILES:
        client.log_artifact(run, str(saved / file), artifact_path="model")
    client.create_registered_model("old")
    client.create_model_version("old", f"{client.get_run(run).info.artifact_uri}/model", run)
    # pulled where another model's MLflow folder was: that one is not what loads
    torch.manual_seed(1)
    other = checkpoint.save(tmp_path / "other", "cnn", CNN(1, 10, channels=4))
    register(tmp_path, other, tracking_uri)
    assert cli_here("pull", "ckpt", "--out", str(tmp_path / "pulled"), "--tracking-uri",
                    tracking_uri).returncode == 0
    pulled = cli_here("pull", "old", "--out", str(tmp_path / "pulled"), "--tracking-uri",
                      tracking_uri)
    assert pulled.returncode == 0, pulled.stderr
    assert not (tmp_path / "pulled" / "MLmodel").exists()
    assert torch.equal(raysearch.load(tmp_path / "pulled").head[-1].weight,
                       raysearch.load(saved).head[-1].weight)


def test_pull_verifies_the_files_against_the_checksums_recorded_at_registration(
        tmp_path, saved, tracking_uri):
    client = register(tmp_path, saved, tracking_uri)
    version = client.get_model_version_by_alias("ckpt", "champion")
    assert version.tags["sha256.model.pt"] == checkpoint.sha256(saved / checkpoint.WEIGHTS_FILE)

    good = cli_here("pull", "ckpt", "--out", str(tmp_path / "good"), "--tracking-uri",
                    tracking_uri)
    assert good.returncode == 0, good.stderr
    assert torch.equal(raysearch.load(tmp_path / "good").head[-1].weight,
                       raysearch.load(saved).head[-1].weight)

    # the registered file changes in the artifact store (a bad disk, a partial copy)
    stored = Path(client.get_run(version.run_id).info.artifact_uri.removeprefix("file://"))
    damage_truncate(stored / "model" / "artifacts" / "model")
    # a real process: what a user sees of it is one line, no traceback
    bad = cli("pull", "ckpt", "--out", str(tmp_path / "bad"), "--tracking-uri", tracking_uri)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    # MLflow's download progress bar comes first; then the one error line
    line = bad.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    assert "model.pt: not the file registered as ckpt version 1" in line
    assert not (tmp_path / "bad").exists()


def test_a_trial_folder_gives_back_its_epochs_and_whether_the_scheduler_stopped_it(tmp_path):
    """What a resumed driver reads of a trial Tune had ended before its MLflow run heard so."""
    store = TrialCheckpoints(str(tmp_path / "trial"), "val_accuracy", "max")
    history = [{"epoch": 1, "val_accuracy": 0.5}]
    store.save(1, lambda folder: checkpoint.save(folder, "cnn", CNN(1, 10, channels=4),
                                                 history[0], {"history": history}), history)
    assert store.history() == (history, False)
    store.mark_stopped()
    assert store.history() == (history, True)
    assert store.epochs() == ([1], [])  # the mark is no checkpoint
