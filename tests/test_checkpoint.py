"""A model on disk and in the registry: damaged files are named, never unpickled, and
`raysearch pull` refuses a download that is not what was registered. A real SQLite MLflow store,
no Ray needed."""

from pathlib import Path

import pytest
import torch
from helpers import cli
from mlflow import MlflowClient

import raysearch
from raysearch import checkpoint, tracking
from raysearch.models.cnn import CNN


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


def register(tmp_path: Path, saved: Path, tracking_uri: str) -> MlflowClient:
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("ckpt")
    run = client.create_run(experiment).info.run_id
    promotion = tracking.promote(client, "ckpt", run, str(saved), "val_accuracy", "max", 0.9, {})
    assert promotion.champion
    return client


def test_pull_verifies_the_files_against_the_checksums_recorded_at_registration(
        tmp_path, saved, tracking_uri):
    client = register(tmp_path, saved, tracking_uri)
    version = client.get_model_version_by_alias("ckpt", "champion")
    assert version.tags["sha256.model.pt"] == checkpoint.sha256(saved / checkpoint.WEIGHTS_FILE)

    good = cli("pull", "ckpt", "--out", str(tmp_path / "good"), "--tracking-uri", tracking_uri)
    assert good.returncode == 0, good.stderr
    assert torch.equal(raysearch.load(tmp_path / "good").head[-1].weight,
                       raysearch.load(saved).head[-1].weight)

    # the registered file changes in the artifact store (a bad disk, a partial copy)
    stored = Path(client.get_run(version.run_id).info.artifact_uri.removeprefix("file://"))
    damage_truncate(stored / "model")
    bad = cli("pull", "ckpt", "--out", str(tmp_path / "bad"), "--tracking-uri", tracking_uri)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    # MLflow's download progress bar comes first; then the one error line
    line = bad.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    assert "model.pt: not the file registered as ckpt version 1" in line
    assert not (tmp_path / "bad").exists()
