"""A model on disk as a folder: `config.json` (family and constructor arguments) + `model.pt`
(a plain state dict), so loading rebuilds the module without unpickling any code."""

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"
TRAIN_STATE_FILE = "train_state.pt"  # what a restarted worker group needs to go on


def save(folder: str | Path, family: str, model: nn.Module, metrics: dict[str, Any] | None = None,
         train_state: dict[str, Any] | None = None) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model": family, "kwargs": model.kwargs, "metrics": metrics or {}}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    if train_state is not None:
        torch.save(train_state, folder / TRAIN_STATE_FILE)
    return folder


def read_config(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / CONFIG_FILE).read_text())


def load(folder: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in `folder`, in eval mode."""
    from raysearch.models import MODELS

    config = read_config(folder)
    model = MODELS[config["model"]].constructor(**config["kwargs"])
    model.load_state_dict(load_weights(folder, map_location))
    return model.eval()


def load_weights(folder: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(Path(folder) / WEIGHTS_FILE, map_location=map_location, weights_only=True)


def load_train_state(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / TRAIN_STATE_FILE
    return torch.load(path, weights_only=True) if path.exists() else None
