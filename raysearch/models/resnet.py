"""resnet18 / resnet34 / resnet50: torchvision's ResNet, its blocks and forward, with two knobs
torchvision's constructor lacks: `width` (channels of the first stage; 64 is torchvision's) and
the CIFAR stem (a 3x3 stride-1 first conv and no max-pool) for small inputs, where the ImageNet
stem would shrink a 32x32 image to 8x8 before the first block. Random init: no weights can be
downloaded on the machines this runs on, and a search trains from scratch anyway.
"""

import functools

from pydantic import Field
from torch import nn

from raysearch.data.base import DataInfo
from raysearch.models.hyper import GradientHyper

# depth -> torchvision's block and the blocks per stage
ARCHS = {18: ("BasicBlock", (2, 2, 2, 2)), 34: ("BasicBlock", (3, 4, 6, 3)),
         50: ("Bottleneck", (3, 4, 6, 3))}
SMALL_INPUT = 64  # images at most this wide get the CIFAR stem


class ResNetHyper(GradientHyper):
    width: int = Field(64, ge=4)
    dropout: float = Field(0.0, ge=0, lt=1)


def ResNet(depth: int, in_channels: int, num_classes: int, width: int = 64,
           dropout: float = 0.0, cifar_stem: bool = True) -> nn.Module:
    """A torchvision ResNet of `depth` with these knobs. torchvision is imported at the first
    call: 1.4 s of every pool worker's start, which only a search of ResNets needs."""
    return _resnet_class()(depth, in_channels, num_classes, width, dropout, cifar_stem)


@functools.cache
def _resnet_class() -> type[nn.Module]:
    from torchvision.models import resnet as tv

    class TorchvisionResNet(tv.ResNet):
        def __init__(self, depth: int, in_channels: int, num_classes: int, width: int,
                     dropout: float, cifar_stem: bool):
            nn.Module.__init__(self)  # tv.ResNet.__init__ hard-codes 64 channels and the stem
            self.kwargs = dict(depth=depth, in_channels=in_channels, num_classes=num_classes,
                               width=width, dropout=dropout, cifar_stem=cifar_stem)
            block_name, counts = ARCHS[depth]
            block = getattr(tv, block_name)
            # what tv.ResNet._make_layer reads
            self._norm_layer, self.dilation, self.groups, self.base_width = (
                nn.BatchNorm2d, 1, 1, 64)
            self.inplanes = width
            if cifar_stem:
                self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
                self.maxpool = nn.Identity()
            else:
                self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
                self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._make_layer(block, width, counts[0])
            self.layer2 = self._make_layer(block, width * 2, counts[1], stride=2)
            self.layer3 = self._make_layer(block, width * 4, counts[2], stride=2)
            self.layer4 = self._make_layer(block, width * 8, counts[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Sequential(nn.Dropout(dropout),
                                    nn.Linear(width * 8 * block.expansion, num_classes))
            # torchvision's init
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    return TorchvisionResNet


def builder(depth: int):
    def build(hp: ResNetHyper, info: DataInfo) -> ResNet:
        channels, height, width = info.input_shape
        return ResNet(depth, channels, info.num_outputs, hp.width, hp.dropout,
                      cifar_stem=max(height, width) <= SMALL_INPUT)
    return build
