"""torchvision: any classification model of torchvision's zoo by name (`arch`), through its
`get_model`, with the data set's number of classes.

- `pretrained: true` starts from torchvision's default ImageNet weights with the classifier head
  replaced; the weights come from TORCH_HOME (`<TORCH_HOME>/hub/checkpoints/`), downloaded there
  by the driver only when the machine is online (`ensure_weights`), else one line names the
  file and the folder.
- `freeze`: the fraction of the backbone's weight tensors, from the input on, left untrained
  (1.0 trains the head alone, 0.75 the head and the last quarter of the backbone).
- Images smaller than the architecture takes (its weights' `min_size`; a ViT's fixed
  `image_size`) are resized to it in the forward pass, on the worker's device; one-channel
  images are repeated to the three channels every torchvision model reads.
"""

import difflib
import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from raysearch.data.base import DataInfo, download_or_say
from raysearch.models.hyper import GradientHyper


@functools.cache
def archs() -> tuple[str, ...]:
    """The classification models torchvision's zoo has (detection, video, ... are elsewhere)."""
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


class ZooHyper(GradientHyper):
    arch: str = "resnet18"
    pretrained: bool = False
    freeze: float = Field(0.0, ge=0, le=1)

    @field_validator("arch")
    @classmethod
    def check_arch(cls, arch: str) -> str:
        if arch not in archs():
            close = difflib.get_close_matches(arch, archs(), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"not a torchvision classification model{hint} (the list: "
                             "torchvision.models.list_models(module=torchvision.models))")
        return arch


def input_side(arch: str) -> int:
    """The least image side the architecture takes (its default weights' min_size; a ViT's
    image size, which it needs exactly)."""
    from torchvision.models import get_model_weights

    return max(get_model_weights(arch).DEFAULT.meta.get("min_size", (1, 1)))


def options(arch: str, side: int) -> dict[str, Any]:
    """What get_model needs besides the arch: no auxiliary heads for Inception and GoogLeNet
    (in training they would return a tuple of outputs) and their own init said explicitly; a
    ViT built for the side its weights take (vit_h_14: 518, its default is 224)."""
    if arch in ("inception_v3", "googlenet"):
        return {"aux_logits": False, "init_weights": True}
    if arch.startswith("vit_"):
        return {"image_size": side}
    return {}


class Zoo(nn.Module):
    """A torchvision model, its inputs resized up to `side` and given three channels."""

    def __init__(self, arch: str, in_channels: int, num_classes: int, side: int):
        super().__init__()
        from torchvision.models import get_model

        self.kwargs = dict(arch=arch, in_channels=in_channels, num_classes=num_classes, side=side)
        self.model = get_model(arch, weights=None, num_classes=num_classes, **options(arch, side))
        self.exact = hasattr(self.model, "image_size")  # a ViT: its patch grid is fixed

    def forward(self, x):
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        side = self.kwargs["side"]
        if min(x.shape[-2:]) < side or (self.exact and tuple(x.shape[-2:]) != (side, side)):
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return self.model(x)


def weights_file(arch: str) -> Path:
    from torchvision.models import get_model_weights

    url = get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def ensure_weights(arch: str) -> None:
    """The default weights of `arch` in TORCH_HOME, downloaded when missing and online; raises
    DataError naming the file and the folder when they are neither there nor reachable."""
    from torchvision.models import get_model_weights

    path = weights_file(arch)
    if path.exists():
        return
    url = get_model_weights(arch).DEFAULT.url
    path.parent.mkdir(parents=True, exist_ok=True)
    with download_or_say(
            f"model torchvision, arch {arch}, pretrained: no weights file {path.name} in "
            f"{path.parent} and the download failed ({{reason}}); put {path.name} (from {url}) "
            "there, or point TORCH_HOME at the folder whose hub/checkpoints/ holds it"):
        torch.hub.download_url_to_file(url, str(path), progress=False)

def head_name(model: nn.Module, classes: int) -> str:
    """The name of the last layer that outputs `classes` (a Linear, or SqueezeNet's 1x1 conv)."""
    return next(n for n, m in reversed(list(model.named_modules()))
                if (isinstance(m, nn.Linear) and m.out_features == classes)
                or (isinstance(m, nn.Conv2d) and m.out_channels == classes))


def freeze_backbone(model: nn.Module, head: str, fraction: float) -> None:
    """The first `fraction` of the weight tensors outside the head, from the input on, left
    untrained."""
    backbone = [p for n, p in model.named_parameters() if not n.startswith(f"{head}.")]
    for p in backbone[:round(fraction * len(backbone))]:
        p.requires_grad_(False)


def load_pretrained(zoo: Zoo) -> None:
    """torchvision's default weights into `zoo`, all but its classifier head (which keeps its
    fresh init: the data set's classes are not ImageNet's)."""
    arch = zoo.kwargs["arch"]
    ensure_weights(arch)  # on a worker of another node, its own TORCH_HOME
    weights = torch.load(weights_file(arch), map_location="cpu", weights_only=True)
    ours = zoo.model.state_dict()
    head = head_name(zoo.model, zoo.kwargs["num_classes"])
    # all but the head, and but what this build lacks (Inception's and GoogLeNet's aux heads)
    zoo.model.load_state_dict({k: v for k, v in weights.items() if not k.startswith(f"{head}.")
                               and k in ours and v.shape == ours[k].shape}, strict=False)


def prepare(fixed: dict[str, Any], choices: dict[str, list[Any]]) -> None:
    """Before a search starts (driver): the weights of every arch it may start pretrained from,
    given its fixed values and its categorical params' choices."""
    if True in (choices.get("pretrained") or [fixed.get("pretrained", False)]):
        for arch in choices.get("arch") or [fixed.get("arch", ZooHyper().arch)]:
            ensure_weights(arch)


def build(hp: ZooHyper, info: DataInfo) -> Zoo:
    zoo = Zoo(hp.arch, info.input_shape[0], info.num_outputs, input_side(hp.arch))
    if hp.pretrained:
        load_pretrained(zoo)
    if hp.freeze:
        freeze_backbone(zoo.model, head_name(zoo.model, info.num_outputs), hp.freeze)
    return zoo
