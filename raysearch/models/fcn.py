"""fcn: the fully convolutional network of Wang, Yan and Oates (2017), the plain deep baseline
of time-series classification (Fawaz et al. 2019): three 1-D conv blocks (conv, batch norm,
ReLU) of 128, 256 and 128 filters with kernels of 8, 5 and 3 steps, global average pooling
over time, and a linear head. Filters and kernel sizes are hyperparameters; the paper's are the
defaults.
"""

from pydantic import Field
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.models.hyper import GradientHyper
from raysearch.models.padding import lengths, valid_steps


class FCNHyper(GradientHyper):
    filters: int = Field(128, ge=1)  # the first and last blocks'; the middle one has twice
    kernel_1: int = Field(8, ge=1)
    kernel_2: int = Field(5, ge=1)
    kernel_3: int = Field(3, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)  # before the head (the paper has none)


class FCN(nn.Module):
    def __init__(self, input_size: int, num_classes: int, filters: int = 128,
                 kernels: tuple[int, int, int] = (8, 5, 3), dropout: float = 0.0):
        super().__init__()
        self.kwargs = dict(input_size=input_size, num_classes=num_classes, filters=filters,
                           kernels=list(kernels), dropout=dropout)
        blocks, c_in = [], input_size
        for c_out, k in zip((filters, 2 * filters, filters), kernels, strict=True):
            # "same" padding, as the paper's Keras layers, so every block keeps the length:
            # torch's padding="same" warns for even kernels and copies the input, so the
            # extra step of an even kernel is padded on the right, as Keras does
            blocks.append(nn.Sequential(nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0),
                                        nn.Conv1d(c_in, c_out, k, bias=False),
                                        nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in, num_classes))

    def forward(self, x):
        """x: (batch, time, features) -> (batch, classes). Every block reads NaN-padded steps
        (padding.py) as zeros, as "same" padding does past a sequence's end, and the average
        leaves them out. Training's batch norm statistics count them (as zeros)."""
        x, valid = valid_steps(x)
        h = x.transpose(1, 2)
        for block in self.blocks:
            h = block(h)
            if valid is not None:  # past the end, the next block reads zeros, as unpadded
                h = h * valid[:, None]
        if valid is None:
            return self.head(h.mean(dim=2))
        return self.head(h.sum(dim=2) / lengths(valid)[:, None])


def build(hp: FCNHyper, info: DataInfo) -> FCN:
    return FCN(info.input_shape[-1], info.num_outputs, hp.filters,
               (hp.kernel_1, hp.kernel_2, hp.kernel_3), hp.dropout)
