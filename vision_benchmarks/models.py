"""Backbones and projection heads of the release (``cifar10_cifar100_stl10/model.py``).

- :func:`resnet_backbone`: torchvision ResNet-18/50; with the CIFAR stem (conv1 a 3×3
  stride-1 convolution, no max-pool) for 32×32 inputs, or the ImageNet stem. ``fc`` is
  dropped: the backbone returns the flattened average-pooled feature (512 or 2048).
  ``width`` < 64 builds the same architecture with narrower stages (64·2^k → width·2^k)
  from torchvision's own block builder, for tests and CPU runs.
- :class:`ProjectionHead`: ``kind = "bn"``, the CIFAR/STL10 release's head,
  Linear(feat, 512, bias=False) → BN → ReLU → Linear(512, d), d = 128 (or 2 for the S¹
  experiment); ``kind = "mlp"``, the MoCo-v2 head of its ImageNet100 code
  (``imagenet100/model/builder.py``, for SimCLR and MoCo alike), Linear(feat, 2048) →
  ReLU → Linear(2048, d) with biases and no BatchNorm.
- :class:`Encoder`: ``(h, z)`` with ``h = backbone(x)`` and ``z = head(h)``; both are
  L2-normalised by the caller (:meth:`Encoder.embed`) exactly as the release's forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, Bottleneck

from protein_care.precision import full_precision_head

ARCHS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet50": (Bottleneck, [3, 4, 6, 3])}


def _init_like_torchvision(model: nn.Module) -> None:
    """The initialisation torchvision's ResNet constructor applies."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def resnet_backbone(arch: str = "resnet18", *, cifar_stem: bool = True, width: int = 64) -> nn.Module:
    """A torchvision ResNet without ``fc`` (→ Identity); see the module docstring.

    Attributes added: ``feature_dim`` (512·expansion·width/64).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    block, layers = ARCHS[arch]
    model = getattr(resnet, arch)()  # torchvision's constructor and initialisation
    if width != 64:
        model.inplanes = width
        model.dilation = 1
        model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        model.bn1 = nn.BatchNorm2d(width)
        model.layer1 = model._make_layer(block, width, layers[0])
        model.layer2 = model._make_layer(block, 2 * width, layers[1], stride=2)
        model.layer3 = model._make_layer(block, 4 * width, layers[2], stride=2)
        model.layer4 = model._make_layer(block, 8 * width, layers[3], stride=2)
        _init_like_torchvision(model)
    if cifar_stem:  # a fresh nn.Conv2d with PyTorch's default init, as the release
        model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    model.feature_dim = 8 * width * block.expansion
    model.fc = nn.Identity()
    return model


#: ``model.head``: the release's two projection heads (see the module docstring).
HEAD_KINDS = ("bn", "mlp")


class ProjectionHead(nn.Module):
    """``bn``: Linear(in, hidden, bias=False) → BatchNorm1d → ReLU → Linear(hidden, out);
    ``mlp``: Linear(in, hidden) → ReLU → Linear(hidden, out)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, kind: str = "bn"):
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {out_dim}")
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head {kind!r}; choose one of {HEAD_KINDS}")
        if kind == "bn":
            layers = [nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim)]
        else:
            layers = [nn.Linear(in_dim, hidden_dim)]
        self.net = nn.Sequential(*layers, nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class Encoder(nn.Module):
    """Backbone + projection head. ``forward(x)`` returns the raw ``(h, z)``;
    :meth:`embed` the L2-normalised projection used by the losses."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)
        return h, full_precision_head(self.head, h, normalize=False)  # float32 even under autocast

    def embed(self, x: Tensor) -> Tensor:
        """z = f(x) / ‖f(x)‖ ∈ S^{d−1}, in float32."""
        return F.normalize(self(x)[1].float(), dim=1)

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """L2-normalised backbone features (the kNN monitor's input), in float32."""
        return F.normalize(self.backbone(x).float(), dim=1)


def build_encoder(arch: str = "resnet18", *, cifar_stem: bool = True, width: int = 64,
                  hidden_dim: int = 512, proj_dim: int = 128, head: str = "bn") -> Encoder:
    """The release's network: :func:`resnet_backbone` + :class:`ProjectionHead`."""
    backbone = resnet_backbone(arch, cifar_stem=cifar_stem, width=width)
    return Encoder(backbone, ProjectionHead(backbone.feature_dim, hidden_dim, proj_dim, head))
