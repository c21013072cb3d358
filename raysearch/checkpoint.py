"""A model on disk as a folder: `config.json` (family, constructor arguments, task) + `model.pt`
(a plain state dict), so loading rebuilds the module without unpickling any code. A registered
model is an MLflow model folder (`MLmodel`, ...) that holds this folder as `artifacts/model/`;
`load` takes either.

A file that is missing, truncated or not what it should be raises CheckpointError naming it;
`checksums` gives the SHA-256 of the model's files, recorded at registration and verified on
pull.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
TRAIN_STATE_FILE = "train_state.pt"  # what a restarted worker group needs to go on


def save(folder: str | Path, family: str, model: nn.Module, metrics: dict[str, Any] | None = None,
         train_state: dict[str, Any] | None = None, task: str = "classification",
         photos: dict[str, Any] | None = None, classes: tuple[str, ...] | None = None) -> Path:
    """`task`: classification (the model outputs class logits), regression or forecasting;
    `photos`: how it reads an image file ({"size", "mean", "std"}: DataInfo.photo_reading), if
    it can; `classes`: the classes' names, where the data set gives them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": family, "kwargs": model.kwargs, "metrics": metrics or {}, "task": task}
    if photos:
        config["photos"] = photos
    if classes:
        config["classes"] = list(classes)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    if train_state is not None:
        torch.save(train_state, folder / TRAIN_STATE_FILE)
    return folder


class CheckpointError(Exception):
    """A checkpoint file that cannot be used; the message names it."""


MLFLOW_MODEL = "MLmodel"  # what marks an MLflow model folder
IN_MLFLOW_MODEL = Path("artifacts") / "model"  # where such a folder holds raysearch's


def model_folder(folder: str | Path) -> Path:
    """The folder with config.json and model.pt: `folder`, or the one an MLflow model holds."""
    folder = Path(folder)
    return folder / IN_MLFLOW_MODEL if (folder / MLFLOW_MODEL).exists() else folder


def read_config(folder: str | Path) -> dict[str, Any]:
    path = model_folder(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
        if not isinstance(config.get("model"), str) or not isinstance(config.get("kwargs"), dict):
            raise ValueError("no 'model' and 'kwargs'")
        return config
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a raysearch model config ({e})") from None


def load(folder: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in `folder` (or the MLflow model folder holding it), in eval
    mode."""
    from raysearch.models import MODELS

    folder = model_folder(folder)
    config = read_config(folder)
    if config["model"] not in MODELS:
        raise CheckpointError(f"{Path(folder) / CONFIG_FILE}: unknown model {config['model']!r}")
    model = MODELS[config["model"]].constructor(**config["kwargs"])
    try:
        model.load_state_dict(load_weights(folder, map_location))
    except RuntimeError as e:  # keys or shapes that are not this model's
        raise CheckpointError(f"{Path(folder) / WEIGHTS_FILE}: does not fit the model in "
                              f"{CONFIG_FILE}: {str(e).splitlines()[0]}") from None
    return model.eval()


def _torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    # weights_only: tensors and plain containers only, never code from the file
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as e:  # noqa: BLE001  torch raises many kinds for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: truncated or corrupted ({first})") from None


def load_weights(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return _torch_load(Path(folder) / WEIGHTS_FILE, map_location)


def load_train_state(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / TRAIN_STATE_FILE
    return _torch_load(path) if path.exists() else None


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE)  # what a registered model is


def checksums(folder: str | Path) -> dict[str, str]:
    return {name: sha256(Path(folder) / name) for name in MODEL_FILES}


def damaged(folder: str | Path, expected: dict[str, str]) -> list[str]:
    """The files of `expected` that are missing from `folder` or differ from their SHA-256."""
    return [name for name, digest in expected.items()
            if not (Path(folder) / name).exists() or sha256(Path(folder) / name) != digest]
