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


# ---------------------------------------------------------------------------- from dense landmarks
NUM_DENSE_POINTS = 478  # mediapipe FaceMesh with iris refinement (faceflow.face.landmarks.Face.dense)


def _design(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression inputs of dense points (B, J, 3): their centroid (B, 1, 3) and the centred
    coordinates flattened with a trailing 1 (B, 3J + 1)."""
    c = points.mean(dim=1, keepdim=True)
    x = (points - c).flatten(1)
    return c, torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


class LandmarkMeshReg(nn.Module):
    """3DMeshReg from mediapipe's dense landmarks: registered image ``(B, 3, 224, 224)`` -> mediapipe
    FaceMesh's 478 points (x, y pixels, z relative depth) -> mesh ``(B, V, 3)`` by a linear map.

    ``mesh - c = reshape(x_c @ encoder @ decoder)``: ``c`` is the points' centroid (B, 1, 3),
    ``x_c`` (B, 3J + 1) the centred points and a 1; ``encoder`` (3J + 1, K) and ``decoder`` (K, 3V)
    are a rank-K ridge regression fitted in closed form (:func:`fit_landmark_meshreg`). The map is
    exact under translations of the points and learns the rest (the mediapipe -> ICT
    correspondence, depth scale and the model origin's depth) from synthetic renders with exact
    meshes and the annotation's fits. Both matrices are buffers, so weights files keep them in
    float32 (fp16 costs 0.14 px).

    :meth:`forward` runs mediapipe on each image (CPU, about 6 ms at 224 px); an image where it
    finds no face gets the template mesh and is counted in ``missed`` (per call).
    """

    def __init__(self, num_vertices: int, num_points: int = NUM_DENSE_POINTS, rank: int = 128,
                 template: torch.Tensor | None = None):
        super().__init__()
        if int(num_vertices) <= 0 or int(num_points) <= 0 or int(rank) <= 0:
            raise FaceflowError(f"LandmarkMeshReg needs positive sizes, got num_vertices={num_vertices}, "
                                f"num_points={num_points}, rank={rank}")
        self.num_vertices, self.num_points, self.rank = int(num_vertices), int(num_points), int(rank)
        template = torch.zeros(self.num_vertices, 3) if template is None else torch.as_tensor(template).float()
        if template.shape != (self.num_vertices, 3):
            raise FaceflowError(f"LandmarkMeshReg template must be ({self.num_vertices}, 3), "
                                f"got {tuple(template.shape)}")
        self.register_buffer("template", template.clone())
        self.register_buffer("encoder", torch.zeros(3 * self.num_points + 1, self.rank))
        self.register_buffer("decoder", torch.zeros(self.rank, 3 * self.num_vertices))
        self._detector = None
        self.missed = 0

    def from_points(self, points: torch.Tensor) -> torch.Tensor:
        """Dense points (B, J, 3) in the registered image's pixels -> mesh (B, V, 3)."""
        if points.ndim != 3 or points.shape[1:] != (self.num_points, 3):
            raise FaceflowError(f"LandmarkMeshReg expects points (B, {self.num_points}, 3), got {tuple(points.shape)}")
        c, x = _design(points.to(self.encoder))
        return (x @ self.encoder @ self.decoder).view(-1, self.num_vertices, 3) + c

    def detect_points(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> mediapipe's dense points (B, J, 3) and found (B,) bool
        (points are zeros where no face was found)."""
        from faceflow.face.landmarks import MediapipeDetector  # mediapipe only when images come in

        if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise FaceflowError(f"LandmarkMeshReg expects float images (B, 3, H, W) in [0, 1], got "
                                f"{tuple(image.shape)} {image.dtype}")
        if self._detector is None:
            self._detector = MediapipeDetector(static_image_mode=True, max_faces=1)
        frames = (image.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        points = torch.zeros(len(frames), self.num_points, 3)
        found = torch.zeros(len(frames), dtype=torch.bool)
        for b, frame in enumerate(frames):
            faces = self._detector.detect(frame)
            if faces and faces[0].dense is not None and len(faces[0].dense) == self.num_points:
                points[b] = torch.from_numpy(faces[0].dense.astype("float32"))
                found[b] = True
        return points.to(image.device), found.to(image.device)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` (B, 3, 224, 224) float in [0, 1] -> mesh (B, V, 3) (the template where
        mediapipe finds no face; their number is left in ``self.missed``)."""
        points, found = self.detect_points(image)
        self.missed = int((~found).sum())
        mesh = self.from_points(points)
        return torch.where(found[:, None, None], mesh, self.template.unsqueeze(0).to(mesh))

    def __getstate__(self):  # the detector (a mediapipe graph) is not copied or pickled
        state = self.__dict__.copy()
        state["_detector"] = None
        return state


def fit_landmark_meshreg(points: torch.Tensor, meshes: torch.Tensor, ridge: float = 1e-7,
                         rank: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form fit of :class:`LandmarkMeshReg`'s matrices on dense points (N, J, 3) and their
    meshes (N, V, 3): ridge regression of ``mesh - c`` on the centred points (the ridge is relative
    to the mean diagonal of the normal matrix), reduced to the ``rank`` directions that carry most
    of the fitted meshes' energy. Returns ``encoder`` (3J + 1, K) and ``decoder`` (K, 3V), float32."""
    if points.ndim != 3 or meshes.ndim != 3 or len(points) != len(meshes) or len(points) == 0:
        raise FaceflowError(f"fit_landmark_meshreg expects points (N, J, 3) and meshes (N, V, 3), got "
                            f"{tuple(points.shape)} and {tuple(meshes.shape)}")
    if not 0 < int(rank) <= min(3 * points.shape[1] + 1, 3 * meshes.shape[1]):
        raise FaceflowError(f"rank must be in [1, {min(3 * points.shape[1] + 1, 3 * meshes.shape[1])}], got {rank}")
    c, x = _design(points.double())
    y = (meshes.double() - c).flatten(1)
    xtx = x.T @ x
    scale = xtx.diagonal().mean() * torch.eye(xtx.shape[0], dtype=xtx.dtype)
    w = torch.linalg.solve(xtx + float(ridge) * scale, x.T @ y)  # (3J + 1, 3V)
    # the fitted meshes X W: their top right singular vectors via the Cholesky factor of X^T X
    chol = torch.linalg.cholesky(xtx + 1e-9 * scale)
    vh = torch.linalg.svd(chol.T @ w, full_matrices=False).Vh[: int(rank)]  # (K, 3V)
    return (w @ vh.T).float(), vh.float()
