"""The small 3-block CNN of the CIFAR-10 tutorials: conv-BN-ReLU-pool three times, then an MLP."""

from pydantic import Field
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.models.hyper import GradientHyper


class CNNHyper(GradientHyper):
    channels: int = Field(32, ge=1)  # width of the first block; each next block doubles it
    dropout: float = Field(0.0, ge=0, lt=1)


class CNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, channels: int = 32,
                 dropout: float = 0.0):
        super().__init__()
        self.kwargs = dict(in_channels=in_channels, num_classes=num_classes, channels=channels,
                           dropout=dropout)
        blocks, c_in = [], in_channels
        for c_out in (channels, 2 * channels, 4 * channels):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
            nn.Linear(c_in, 2 * channels), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(2 * channels, num_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


def build(hp: CNNHyper, info: DataInfo) -> CNN:
    return CNN(info.input_shape[0], info.num_outputs, hp.channels, hp.dropout)
