"""3DMeshReg: regression of a dense image-space face mesh from one image (DeepFaceFlow, Sec. 4.1).

The network is a ResNet (50 or 18, :mod:`faceflow.nets.resnet`, with torchvision's parameter
names) without its average pooling and classifier,
followed by a 3x3 convolution with 512 channels (+BatchNorm+ReLU), global average pooling and a
linear layer regressing ``V * 3`` values. The output is the image-space mesh ``(B, V, 3)`` of the
model's ``meshreg`` vertex subset (:meth:`faceflow.geometry.morphable.MorphableModel.subset`): x, y in
pixels of the 224x224 input (y down) and z depth in pixels (already multiplied by the
scaled-orthographic scale). The linear layer predicts an *offset* from a template (the mean face
framed in the 224 crop), initialised near zero so that an untrained network outputs the template.

The training loss is eq. (4): :func:`mesh_loss` = mean squared vertex error + mean squared
edge-length error over the template's edges (:func:`mesh_edges`).

ImageNet weights are never downloaded: pass ``pretrained_path`` to a local torchvision
state dict (``resnet50-*.pth``), loaded with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.io.safeload import load_tensors
from faceflow.nets.resnet import ARCHITECTURES, ResNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


def _load_backbone(backbone: str, pretrained_path: str | Path | None) -> tuple[nn.Module, int]:
    if backbone not in ARCHITECTURES:
        raise FaceflowError(f"unknown MeshReg backbone {backbone!r}; choose one of {sorted(ARCHITECTURES)}")
    net = ResNet(backbone)
    if pretrained_path is not None:
        path = Path(pretrained_path)
        if not path.is_file():
            raise AssetNotFoundError(f"ImageNet weights for {backbone} not found at {path}")

        state = load_tensors(path, f"{backbone} ImageNet weights file",
                             f"could not load {backbone} ImageNet weights (corrupt or truncated?)")
        try:
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            net.load_classifier_state(state)
        except Exception as e:  # corrupt file or weights of another architecture
            raise FaceflowError(f"could not load {backbone} ImageNet weights from {path}: {e}") from e
    return net.trunk(), net.channels  # conv1 ... layer4 -> (B, C, 7, 7) for a 224 input


class MeshReg(nn.Module):
    """3DMeshReg (Sec. 4.1): image ``(B, 3, 224, 224)`` in [0, 1] -> mesh ``(B, V, 3)`` in pixels.

    Args:
        num_vertices: V, the number of regressed vertices (``len(model.subset('meshreg'))``).
        backbone: ``'resnet50'`` (paper) or ``'resnet18'`` (lighter).
        pretrained_path: optional local torchvision ImageNet state dict for the backbone.
        template: ``(V, 3)`` mean-shape mesh in 224-crop pixels the network predicts an offset
            from (registered as a buffer); zeros when omitted.
    """

    def __init__(self, num_vertices: int, backbone: str = "resnet50",
                 pretrained_path: str | Path | None = None, template: torch.Tensor | None = None):
        super().__init__()
        if int(num_vertices) <= 0:
            raise FaceflowError(f"MeshReg needs a positive number of vertices, got {num_vertices}")
        self.num_vertices = int(num_vertices)
        if template is None:
            template = torch.zeros(self.num_vertices, 3)
        template = torch.as_tensor(template, dtype=torch.float32)
        if template.shape != (self.num_vertices, 3):
            raise FaceflowError(f"MeshReg template must be ({self.num_vertices}, 3), got {tuple(template.shape)}")
        self.register_buffer("template", template.clone())
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.backbone, channels = _load_backbone(backbone, pretrained_path)
        self.head = nn.Sequential(nn.Conv2d(channels, 512, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(512), nn.ReLU(inplace=True))
        self.fc = nn.Linear(512, self.num_vertices * 3)
        # near-zero last layer: the untrained network outputs (almost exactly) the template
        nn.init.normal_(self.fc.weight, std=1e-4)
        nn.init.zeros_(self.fc.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` (B, 3, H, W) float in [0, 1] (H = W = 224 nominally) -> mesh (B, V, 3)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise FaceflowError(f"MeshReg expects images (B, 3, H, W), got {tuple(image.shape)}")
        if not image.is_floating_point():
            raise FaceflowError(f"MeshReg expects float images in [0, 1], got {image.dtype}")
        x = (image - self.mean) / self.std
        x = self.head(self.backbone(x)).mean(dim=(2, 3))  # global average pooling -> (B, 512)
        offset = self.fc(x).view(-1, self.num_vertices, 3)
        return self.template.unsqueeze(0) + offset


def mesh_edges(triangles: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``(E, 2)`` (int64, ``i < j``, sorted) of triangles ``(F, 3)``."""
    tri = torch.as_tensor(triangles)
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.is_floating_point():
        raise FaceflowError(f"mesh_edges expects integer triangles (F, 3), got {tuple(tri.shape)} {tri.dtype}")
    tri = tri.long()
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], dim=0)
    e = torch.sort(e, dim=1).values
    e = e[e[:, 0] != e[:, 1]]  # drop degenerate edges
    return torch.unique(e, dim=0)


def mesh_loss(pred: torch.Tensor, gt: torch.Tensor, edges: torch.Tensor,
              edge_weight: float = 1.0) -> torch.Tensor:
    """Eq. (4): ``mean_v ||p_v - g_v||^2 + edge_weight * mean_e (|p_i - p_j| - |g_i - g_j|)^2``.

    ``pred``, ``gt``: (B, V, 3); ``edges``: (E, 2) from :func:`mesh_edges`. Returns a scalar
    (means over the batch and the vertices / edges).
    """
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise FaceflowError(f"mesh_loss expects pred and gt (B, V, 3) of equal shape, got "
                            f"{tuple(pred.shape)} and {tuple(gt.shape)}")
    vert = ((pred - gt) ** 2).sum(-1).mean()
    if edges.numel() == 0 or edge_weight == 0:
        return vert
    edges = edges.to(pred.device).long()
    lp = (pred[:, edges[:, 0]] - pred[:, edges[:, 1]]).norm(dim=-1)
    lg = (gt[:, edges[:, 0]] - gt[:, edges[:, 1]]).norm(dim=-1)
    return vert + edge_weight * ((lp - lg) ** 2).mean()
