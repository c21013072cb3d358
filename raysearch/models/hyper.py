"""Hyperparameters shared by every gradient-trained model (names from DESIGN.md)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class GradientHyper(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "adam", "adamw"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=1)  # global: split across the trial's workers
    lr_schedule: Literal["none", "cosine", "onecycle"] = "none"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    seed: int = 0  # weight initialisation and shuffling
