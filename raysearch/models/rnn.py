"""rnn / lstm / gru: torch.nn's recurrent layers and a linear head.

One module for both tasks: for classification the head reads the last step's output (both
directions' ends when bidirectional); for forecasting it reads every step, predicting the target
of each, like the echo state network it is compared with.
"""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.models.hyper import GradientHyper
from raysearch.models.padding import lengths, valid_steps

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNNHyper(GradientHyper):
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)  # between stacked layers
    bidirectional: bool = False
    window: int = Field(64, ge=2)  # forecasting: steps per training window


class Recurrent(nn.Module):
    def __init__(self, cell: Literal["rnn", "lstm", "gru"], input_size: int, output_size: int,
                 hidden_size: int = 128, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, per_step: bool = False):
        super().__init__()
        self.kwargs = dict(cell=cell, input_size=input_size, output_size=output_size,
                           hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                           bidirectional=bidirectional, per_step=per_step)
        self.per_step = per_step
        self.rnn = CELLS[cell](input_size, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0,
                               bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), output_size)

    def forward(self, x):
        """x: (batch, time, features) -> (batch, outputs), or (batch, time, outputs) per step.
        Sequences NaN-padded after their valid steps (padding.py) are read as packed
        sequences: each direction reads only the valid steps."""
        x, valid = valid_steps(x)
        if valid is None:
            out, _ = self.rnn(x)
            ends = out[:, -1]
        else:
            steps = lengths(valid)
            packed = nn.utils.rnn.pack_padded_sequence(x, steps.cpu(), batch_first=True,
                                                       enforce_sorted=False)
            out, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                                      total_length=x.shape[1])
            ends = out[torch.arange(len(out), device=out.device), steps - 1]
        if self.per_step:
            return self.head(out)
        if self.rnn.bidirectional:  # each direction ends where it has read the whole sequence
            half = out.shape[-1] // 2
            return self.head(torch.cat([ends[:, :half], out[:, 0, half:]], dim=-1))
        return self.head(ends)


def builder(cell: str):
    def build(hp: RNNHyper, info: DataInfo) -> Recurrent:
        return Recurrent(cell, info.input_shape[-1], info.num_outputs, hp.hidden_size,
                         hp.num_layers, hp.dropout, hp.bidirectional,
                         per_step=info.task == "forecasting")
    return build
