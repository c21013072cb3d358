"""mlp: a multilayer perceptron for tables: `layers` hidden layers of `units` each (activation,
then dropout), and a linear head. It standardizes its inputs by the training split's mean and
std (DataInfo.scaling) and answers a regression in the target's units (target_scaling), so the
trained model reads a table's numbers as they are.
"""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.models.hyper import GradientHyper

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
               "leaky_relu": nn.LeakyReLU}


class MLPHyper(GradientHyper):
    layers: int = Field(2, ge=1, le=16)
    units: int = Field(128, ge=1)
    activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu"
    dropout: float = Field(0.0, ge=0, lt=1)


class MLP(nn.Module):
    def __init__(self, input_size: int, output_size: int, layers: int = 2, units: int = 128,
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.kwargs = dict(input_size=input_size, output_size=output_size, layers=layers,
                           units=units, activation=activation, dropout=dropout)
        blocks, width = [], input_size
        for _ in range(layers):
            blocks += [nn.Linear(width, units), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = units
        self.net = nn.Sequential(*blocks, nn.Linear(width, output_size))
        # in the state dict, so a loaded model reads and answers as the trained one
        self.register_buffer("mean", torch.zeros(input_size))
        self.register_buffer("std", torch.ones(input_size))
        self.register_buffer("target", torch.tensor([0.0, 1.0]))  # a regression's mean, std

    def forward(self, x):
        """x: (batch, features) -> (batch, outputs): class logits, or a regression's values."""
        out = self.net((x - self.mean) / self.std)
        return out * self.target[1] + self.target[0]


def build(hp: MLPHyper, info: DataInfo) -> MLP:
    model = MLP(info.input_shape[-1], info.num_outputs, hp.layers, hp.units, hp.activation,
                hp.dropout)
    if info.scaling:
        model.mean.copy_(torch.tensor(info.scaling[0]))
        model.std.copy_(torch.tensor(info.scaling[1]))
    if info.target_scaling:
        model.target.copy_(torch.tensor(info.target_scaling))
    return model
