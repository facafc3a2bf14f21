"""ResNet-18 / ResNet-50 trunks (He et al., CVPR 2016) for 3DMeshReg, in plain PyTorch.

Parameter names follow torchvision's ResNets (``conv1``, ``bn1``, ``layer1.0.conv1`` ...,
``layerK.0.downsample.0/1``), so a local torchvision ImageNet state dict loads as it is, and
the trunk (:meth:`ResNet.trunk`: conv1 ... layer4, no pooling or classifier) keeps the module
indices 3DMeshReg's weights files were saved with. Written here rather than imported from
torchvision because ``import torchvision`` costs about 2 s at start-up (it loads torch's
compiler stack) and this is all 3DMeshReg uses of it.

Blocks: *basic* (two 3x3 convolutions, ResNet-18/34) and *bottleneck* (1x1, 3x3 with the
stride, 1x1 to 4x the width: the "v1.5" placement of the stride), each followed by BatchNorm,
with a 1x1 convolution + BatchNorm on the shortcut where the shape changes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

# name -> (block kind, blocks per stage, output channels of the trunk)
ARCHITECTURES = {"resnet18": ("basic", (2, 2, 2, 2), 512), "resnet50": ("bottleneck", (3, 4, 6, 3), 2048)}


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class BasicBlock(nn.Module):
    """x -> relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); 3x3 convolutions."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, width, 3, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3), nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, stride) -> 1x1 (4 x width), BatchNorm after each, + shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, width, 1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, width * self.expansion, 1), nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(cin, width * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """The convolutional part of a ResNet: ``(B, 3, H, W)`` -> ``(B, C, H/32, W/32)``.

    ``name``: ``'resnet18'`` (C = 512) or ``'resnet50'`` (C = 2048). Initialised as torchvision
    does (He-normal convolutions, fan-out; BatchNorm weight 1, bias 0)."""

    def __init__(self, name: str = "resnet18"):
        super().__init__()
        kind, depths, self.channels = ARCHITECTURES[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1, self.bn1 = _conv(3, 64, 7, 2), nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512))):
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def trunk(self) -> nn.Sequential:
        """conv1, bn1, relu, maxpool, layer1 ... layer4 as one Sequential (indices 0 ... 7)."""
        return nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool,
                             self.layer1, self.layer2, self.layer3, self.layer4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk()(x)

    def load_classifier_state(self, state: dict) -> None:
        """Load a torchvision ImageNet state dict (its ``fc.*`` classifier is dropped)."""
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
