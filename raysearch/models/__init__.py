"""Model families by name: each declares the hyperparameters it accepts and what data it learns."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.job import FAMILY
from raysearch.models import cnn, esn, fcn, mlp, resnet, rnn, zoo


@dataclass(frozen=True)
class ModelFamily:
    name: str
    hyperparams: type[BaseModel]  # every name the family accepts, with its type, range and default
    inputs: frozenset[str]  # data kinds it reads: "image", "sequence", "table"
    tasks: frozenset[str]  # "classification", "forecasting", "regression"
    fit: Literal["gradient", "ridge"]  # how it is trained (raysearch/fit/)
    build: Callable[[BaseModel, DataInfo], nn.Module]
    constructor: Callable[..., nn.Module]  # rebuilds the module from its saved `config()`
    generates: bool = False  # can run on its own output (forecasting's generative mode)
    # before a search starts, on the driver: fetch what its trials will need (pretrained
    # weights), given the spec's fixed values and its categorical params' choices
    prepare: Callable[[dict[str, Any], dict[str, list[Any]]], None] | None = None


MODELS: dict[str, ModelFamily] = {
    "cnn": ModelFamily(
        "cnn", cnn.CNNHyper, frozenset({"image"}), frozenset({"classification"}),
        "gradient", cnn.build, cnn.CNN,
    ),
    **{f"resnet{depth}": ModelFamily(
        f"resnet{depth}", resnet.ResNetHyper, frozenset({"image"}), frozenset({"classification"}),
        "gradient", resnet.builder(depth), resnet.ResNet,
    ) for depth in resnet.ARCHS},
    "esn": ModelFamily(
        "esn", esn.ESNHyper, frozenset({"sequence"}), frozenset({"classification", "forecasting"}),
        "ridge", esn.build, esn.ESN, generates=True,
    ),
    **{cell: ModelFamily(
        cell, rnn.RNNHyper, frozenset({"sequence"}), frozenset({"classification", "forecasting"}),
        "gradient", rnn.builder(cell), rnn.Recurrent,
    ) for cell in rnn.CELLS},
    "torchvision": ModelFamily(
        "torchvision", zoo.ZooHyper, frozenset({"image"}), frozenset({"classification"}),
        "gradient", zoo.build, zoo.Zoo, prepare=zoo.prepare,
    ),
    "fcn": ModelFamily(
        "fcn", fcn.FCNHyper, frozenset({"sequence"}), frozenset({"classification"}),
        "gradient", fcn.build, fcn.FCN,
    ),
    "mlp": ModelFamily(
        "mlp", mlp.MLPHyper, frozenset({"table"}), frozenset({"classification", "regression"}),
        "gradient", mlp.build, mlp.MLP,
    ),
}


def hyperparams_of(config: dict[str, Any], model: str | None) -> tuple[ModelFamily, BaseModel]:
    """A trial's family and hyperparameters from its `config` (the spec's fixed values with the
    sampled ones over them): the family its `model` key names (a search across families), else
    `model`; of the rest, the names that family takes (a fixed value may be another family's)."""
    family = MODELS[config.get(FAMILY, model)]
    return family, family.hyperparams(**{k: v for k, v in config.items()
                                         if k in family.hyperparams.model_fields})
