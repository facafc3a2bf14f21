"""Discriminators of Head2Head++ (thesis Sec. 7.2.4): image, mouth and dynamics.

- Building block: :class:`NLayerDiscriminator`, a PatchGAN (4x4 convs, LeakyReLU 0.2) returning
  every intermediate feature map (feature matching needs them), and
  :class:`MultiscaleDiscriminator`, ``num_D`` of them on the input average-pooled 0 .. num_D-1
  times (scale 0 = full resolution first).
- Image D: conditional, on ``cat(X_t, Y_t)`` (cond_nc + out_nc channels).
- Mouth D: the same architecture on square mouth crops of ``cat(X_t, Y_t)``
  (:func:`mouth_crop`, side :func:`mouth_size`).
- Dynamics D, eq. (7.9) ``D_D(W_{t:t+1}, Y_{t:t+2})``: multi-scale in time. Temporal scale i uses
  stride ``k = 2**i`` (1, 2, 4): a window is frames ``(t, t+k, t+2k)`` plus the two flows between
  consecutive window frames, ``F_{t+k->t}`` and ``F_{t+2k->t+k}``, composed from the per-frame
  flows (:func:`strided_flows`). One :class:`MultiscaleDiscriminator` per temporal scale.

Window starts (:func:`temporal_windows`): EVERY start ``t = 0 .. T-1-2k`` (overlapping windows),
not vid2vid's non-overlapping ones: with the short training sequences of Head2Head++ this gives
the coarse scales more than one window per sequence, at the cost of more D evaluations.

Flow convention (:mod:`vid2vid.warp`, :mod:`reenact.flows`): ``flows[:, t] = F_{t->t-1}`` on frame
t's grid, ``flows[:, 0]`` unused; channels x, y (pixels) and optionally z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceflow.errors import FaceflowError
from vid2vid.generator import NORMS, make_norm
from vid2vid.warp import compose

__all__ = [
    "NLayerDiscriminator", "MultiscaleDiscriminator", "DynamicsDiscriminator", "DiscriminatorConfig",
    "presets", "image_discriminator", "mouth_discriminator", "dynamics_discriminator",
    "build_discriminators", "downsample", "mouth_size", "mouth_crop", "mouth_boxes",
    "temporal_windows", "strided_flows", "dynamics_inputs",
]


# ----------------------------------------------------------------------------- PatchGAN

class NLayerDiscriminator(nn.Module):
    """PatchGAN: conv4x4/2 (ndf) - LReLU; ``n_layers - 1`` x [conv4x4/2 - norm - LReLU] doubling
    channels (cap 512); conv4x4/1 - norm - LReLU; conv4x4/1 -> 1 channel. Padding 2 (as
    pix2pixHD), so small inputs (mouth crops) never vanish.

    ``forward(x (B, in_nc, H, W)) -> list`` of the ``n_layers + 2`` feature maps in order, the
    last being the patch prediction (B, 1, h, w) (raw logits/scores, no sigmoid).
    """

    def __init__(self, in_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        if in_nc < 1 or ndf < 1 or n_layers < 1:
            raise FaceflowError(f"NLayerDiscriminator: in_nc, ndf, n_layers must be >= 1, "
                                f"got {in_nc}, {ndf}, {n_layers}")
        if norm not in NORMS:
            raise FaceflowError(f"NLayerDiscriminator: norm must be one of {NORMS}, got {norm!r}")
        k, p = 4, 2
        bias = norm == "none"  # a norm right after the conv removes any bias
        blocks = [nn.Sequential(nn.Conv2d(in_nc, ndf, k, 2, p), nn.LeakyReLU(0.2, inplace=True))]
        nf = ndf
        for _ in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, 512)
            blocks.append(nn.Sequential(nn.Conv2d(nf_prev, nf, k, 2, p, bias=bias), make_norm(norm, nf),
                                        nn.LeakyReLU(0.2, inplace=True)))
        nf_prev, nf = nf, min(nf * 2, 512)
        blocks.append(nn.Sequential(nn.Conv2d(nf_prev, nf, k, 1, p, bias=bias), make_norm(norm, nf),
                                    nn.LeakyReLU(0.2, inplace=True)))
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, k, 1, p)))
        self.blocks = nn.ModuleList(blocks)
        self.in_nc = in_nc

    @staticmethod
    def output_sizes(n: int, n_layers: int) -> list[int]:
        """Spatial size of every feature map for an input side ``n``."""
        sizes = []
        for s in [2] * n_layers + [1, 1]:
            n = (n + 2 * 2 - 4) // s + 1
            sizes.append(n)
        return sizes

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_nc:
            raise ValueError(f"NLayerDiscriminator: input (B, {self.in_nc}, H, W) expected, got {tuple(x.shape)}")
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats


def downsample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)): 3x3 average pooling, stride 2, padding 1,
    padded cells not counted."""
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class MultiscaleDiscriminator(nn.Module):
    """``num_D`` :class:`NLayerDiscriminator` (separate weights); D_i sees the input downsampled
    i times (:func:`downsample`). ``forward(x) -> list`` (per scale, full resolution first) of
    lists of feature maps."""

    def __init__(self, in_nc: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2, norm: str = "instance"):
        super().__init__()
        if num_D < 1:
            raise FaceflowError(f"MultiscaleDiscriminator: num_D must be >= 1, got {num_D}")
        self.nets = nn.ModuleList(NLayerDiscriminator(in_nc, ndf, n_layers, norm) for _ in range(num_D))
        self.in_nc, self.num_D = in_nc, num_D

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, net in enumerate(self.nets):
            if i > 0:
                x = downsample(x)
            out.append(net(x))
        return out


# ----------------------------------------------------------------------------- config

@dataclass
class DiscriminatorConfig:
    """Discriminator hyper-parameters (defaults = the thesis, ``presets()["paper"]``).

    flow_nc: channels of the flows given to the dynamics D (3: 3D flow, 2: 2D flow, 0: none).
    cond_nc / out_nc: channels of one conditioning frame X / one image Y.
    """

    ndf: int = 64
    n_layers: int = 3
    num_D: int = 2
    temporal_scales: int = 3
    norm: str = "instance"
    flow_nc: int = 3
    cond_nc: int = 6
    out_nc: int = 3

    def __post_init__(self):
        for name in ("ndf", "n_layers", "num_D", "temporal_scales", "cond_nc", "out_nc"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise FaceflowError(f"DiscriminatorConfig.{name} must be a positive integer, got {v!r}")
        if self.flow_nc not in (0, 2, 3):
            raise FaceflowError(f"DiscriminatorConfig.flow_nc must be 0, 2 or 3, got {self.flow_nc!r}")
        if self.norm not in NORMS:
            raise FaceflowError(f"DiscriminatorConfig.norm must be one of {NORMS}, got {self.norm!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def presets() -> dict[str, DiscriminatorConfig]:
    """``"paper"``: ndf 64, 3 layers, 2 spatial scales, 3 temporal scales; ``"tiny"``: ndf 16,
    2 layers (tests, CPU smoke runs)."""
    return {
        "paper": DiscriminatorConfig(),
        "tiny": DiscriminatorConfig(ndf=16, n_layers=2, num_D=2, temporal_scales=3),
    }


def image_discriminator(cfg: DiscriminatorConfig | None = None) -> MultiscaleDiscriminator:
    """Conditional image D on ``cat(X_t, Y_t)`` (B, cond_nc + out_nc, H, W)."""
    cfg = cfg if cfg is not None else DiscriminatorConfig()
    return MultiscaleDiscriminator(cfg.cond_nc + cfg.out_nc, cfg.ndf, cfg.n_layers, cfg.num_D, cfg.norm)


def mouth_discriminator(cfg: DiscriminatorConfig | None = None) -> MultiscaleDiscriminator:
    """Mouth D: the image D's architecture on :func:`mouth_crop` of ``cat(X_t, Y_t)``."""
    return image_discriminator(cfg)


def dynamics_discriminator(cfg: DiscriminatorConfig | None = None) -> "DynamicsDiscriminator":
    cfg = cfg if cfg is not None else DiscriminatorConfig()
    return DynamicsDiscriminator(cfg.flow_nc, cfg.temporal_scales, cfg.ndf, cfg.n_layers, cfg.num_D,
                                 cfg.norm, out_nc=cfg.out_nc)


def build_discriminators(cfg: DiscriminatorConfig | None = None) -> dict[str, nn.Module]:
    """{"image", "mouth", "dynamics"} discriminators for ``cfg`` (separate weights)."""
    return {"image": image_discriminator(cfg), "mouth": mouth_discriminator(cfg),
            "dynamics": dynamics_discriminator(cfg)}


# ----------------------------------------------------------------------------- mouth

MOUTH_SIDE_256 = 72  # mouth box side at frame height 256 (thesis)


def mouth_size(h: int) -> int:
    """Side of the square mouth crop for frames of height ``h``: 72 px at 256 (thesis), rounded half
    up (``floor(72 h / 256 + 0.5)``), the one rule of the boxes stored by preprocessing and of the
    crops the mouth discriminator takes."""
    return (2 * MOUTH_SIDE_256 * int(h) + 256) // 512


def mouth_boxes(centres: torch.Tensor, h: int, w: int, size: int | None = None) -> torch.Tensor:
    """Square boxes (B, 4) int64 (x0, y0, x1, y1), x1/y1 exclusive, of side ``size`` (default
    :func:`mouth_size` of h) centred on ``centres`` (B, 2) (x, y pixels), shifted (not shrunk) to
    lie inside the h x w image. The box holds ``image[y0:y1, x0:x1]``; its corner is the integer
    nearest ``centre - size / 2`` (halves up: ``floor(c - size / 2 + 0.5)``, in float64), then
    clamped to [0, w - size] x [0, h - size]. The one box geometry of the project
    (:func:`reenact.conditioning.mouth_boxes` places its boxes with it)."""
    s = mouth_size(h) if size is None else int(size)
    if centres.dim() != 2 or centres.shape[1] != 2:
        raise ValueError(f"mouth_boxes: centres must be (B, 2), got {tuple(centres.shape)}")
    if not 1 <= s <= min(h, w):
        raise FaceflowError(f"mouth_boxes: crop side {s} does not fit a {h}x{w} image")
    c = centres.detach().to(torch.float64)
    x0 = torch.floor(c[:, 0] - s / 2 + 0.5).clamp(0, w - s).long()
    y0 = torch.floor(c[:, 1] - s / 2 + 0.5).clamp(0, h - s).long()
    return torch.stack([x0, y0, x0 + s, y0 + s], 1)


def mouth_crop(x: torch.Tensor, boxes: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """Crop square boxes from x (B, C, H, W) -> (B, C, s, s) by slicing (differentiable w.r.t. x).

    boxes: (B, 4) integer (x0, y0, x1, y1), x1/y1 exclusive, each of side ``s = size`` (default
    :func:`mouth_size` of H) and inside the image; anything else raises FaceflowError.
    """
    if x.dim() != 4:
        raise ValueError(f"mouth_crop: x must be (B, C, H, W), got {tuple(x.shape)}")
    B, _, H, W = x.shape
    s = mouth_size(H) if size is None else int(size)
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or tuple(boxes.shape) != (B, 4):
        raise FaceflowError(f"mouth_crop: boxes must be ({B}, 4) (x0, y0, x1, y1), "
                            f"got {tuple(getattr(boxes, 'shape', ()))}")
    if boxes.dtype.is_floating_point or boxes.dtype == torch.bool or boxes.is_complex():
        raise FaceflowError(f"mouth_crop: boxes must be integer pixel coordinates, got {boxes.dtype}")
    bl = boxes.tolist()
    crops = []
    for i, (x0, y0, x1, y1) in enumerate(bl):
        if x1 - x0 != s or y1 - y0 != s:
            raise FaceflowError(f"mouth_crop: box {i} {(x0, y0, x1, y1)} is {x1 - x0}x{y1 - y0}, "
                                f"expected a {s}x{s} square")
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
            raise FaceflowError(f"mouth_crop: box {i} {(x0, y0, x1, y1)} leaves the {W}x{H} image")
        crops.append(x[i, :, y0:y1, x0:x1])
    return torch.stack(crops, 0)


# ----------------------------------------------------------------------------- dynamics

def temporal_windows(T: int, k: int, n: int = 3) -> list[tuple[int, ...]]:
    """All windows of ``n`` frames with stride ``k`` in a ``T``-frame sequence, EVERY start:
    ``[(t, t+k, ..., t+(n-1)k) for t in range(T - (n-1)k)]`` (empty when T is too short)."""
    if k < 1 or n < 1 or T < 0:
        raise ValueError(f"temporal_windows: need T >= 0, k >= 1, n >= 1, got T={T}, k={k}, n={n}")
    return [tuple(t + j * k for j in range(n)) for t in range(max(0, T - (n - 1) * k))]


def _check_flows(flows: torch.Tensor, frames: torch.Tensor | None = None) -> None:
    if not isinstance(flows, torch.Tensor) or flows.dim() != 5 or flows.shape[2] not in (0, 2, 3):
        raise ValueError(f"flows must be (B, T, Cf, H, W) with Cf in (0, 2, 3), "
                         f"got {tuple(getattr(flows, 'shape', ()))}")
    if frames is not None:
        B, T, _, H, W = frames.shape
        if (flows.shape[0], flows.shape[1], flows.shape[3], flows.shape[4]) != (B, T, H, W):
            raise ValueError(f"flows {tuple(flows.shape)} do not match frames {tuple(frames.shape)}")


def strided_flows(flows: torch.Tensor, k: int) -> torch.Tensor:
    """flows (B, T, Cf, H, W) with ``flows[:, t] = F_{t->t-1}`` -> (B, T, Cf, H, W) with
    ``out[:, t] = F_{t->t-k}`` for t >= k (zeros for t < k), composed with
    :func:`vid2vid.warp.compose`: ``F_{t->t-j-1} = compose(F_{t->t-j}, F_{t-j->t-j-1})``."""
    _check_flows(flows)
    if k < 1:
        raise ValueError(f"strided_flows: k must be >= 1, got {k}")
    B, T, C, H, W = flows.shape
    if k == 1 or C == 0:
        out = flows.clone()
        out[:, :k] = 0
        return out
    out = torch.zeros_like(flows)
    if T <= k:
        return out
    n = T - k  # targets t = k .. T-1
    acc = flows[:, k:].reshape(B * n, C, H, W)
    for j in range(1, k):
        nxt = flows[:, k - j:T - j].reshape(B * n, C, H, W)  # F_{t-j -> t-j-1}
        acc = compose(acc, nxt)
    out[:, k:] = acc.reshape(B, n, C, H, W)
    return out


def dynamics_inputs(frames: torch.Tensor, flows: torch.Tensor | None, k: int, n: int = 3) -> torch.Tensor | None:
    """Inputs of the dynamics D at temporal stride k.

    frames (B, T, C, H, W) (C = 3 images in [-1, 1]); flows (B, T, Cf, H, W) per-frame flows
    ``F_{t->t-1}`` or None (= Cf 0). For every window ``(t, t+k, ..., t+(n-1)k)``
    (:func:`temporal_windows`) the channels are the n frames, oldest first, then the n-1 flows
    ``F_{t+k->t}, .., F_{t+(n-1)k->t+(n-2)k}`` -> (B * nW, n*C + (n-1)*Cf, H, W), batch-major
    (row ``b * nW + w``). None when T < (n-1)k + 1.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 5:
        raise ValueError(f"dynamics_inputs: frames must be (B, T, C, H, W), got {tuple(getattr(frames, 'shape', ()))}")
    B, T, C, H, W = frames.shape
    if flows is not None:
        _check_flows(flows, frames)
        if flows.shape[2] == 0:
            flows = None
    wins = temporal_windows(T, k, n)
    if not wins:
        return None
    idx = torch.tensor(wins, device=frames.device)  # (nW, n)
    nW = len(wins)
    parts = [frames[:, idx].reshape(B, nW, n * C, H, W)]
    if flows is not None:
        sf = strided_flows(flows, k)
        parts.append(sf[:, idx[:, 1:]].reshape(B, nW, (n - 1) * flows.shape[2], H, W))
    x = torch.cat(parts, 2)
    return x.reshape(B * nW, x.shape[2], H, W)


class DynamicsDiscriminator(nn.Module):
    """Dynamics D of eq. (7.9): one :class:`MultiscaleDiscriminator` per temporal scale i
    (stride ``2**i``), each on ``3 * out_nc + 2 * flow_nc`` channels (:func:`dynamics_inputs`).
    ``forward(x, scale_index) -> list`` (per spatial scale) of lists of features."""

    def __init__(self, flow_nc: int, temporal_scales: int = 3, ndf: int = 64, n_layers: int = 3,
                 num_D: int = 2, norm: str = "instance", out_nc: int = 3, n_frames: int = 3):
        super().__init__()
        if flow_nc not in (0, 2, 3):
            raise FaceflowError(f"DynamicsDiscriminator: flow_nc must be 0, 2 or 3, got {flow_nc}")
        if temporal_scales < 1:
            raise FaceflowError(f"DynamicsDiscriminator: temporal_scales must be >= 1, got {temporal_scales}")
        self.flow_nc, self.n_frames, self.out_nc = flow_nc, n_frames, out_nc
        self.in_nc = n_frames * out_nc + (n_frames - 1) * flow_nc
        self.scales = nn.ModuleList(MultiscaleDiscriminator(self.in_nc, ndf, n_layers, num_D, norm)
                                    for _ in range(temporal_scales))

    @property
    def strides(self) -> list[int]:
        """Temporal stride of every scale: 1, 2, 4, ..."""
        return [2 ** i for i in range(len(self.scales))]

    def inputs(self, frames: torch.Tensor, flows: torch.Tensor | None, scale_index: int) -> torch.Tensor | None:
        """:func:`dynamics_inputs` at this scale's stride (None when the sequence is too short)."""
        if flows is not None and flows.shape[2] != self.flow_nc:
            raise ValueError(f"DynamicsDiscriminator: built for {self.flow_nc} flow channels, "
                             f"got flows {tuple(flows.shape)}")
        if flows is None and self.flow_nc != 0:
            raise ValueError(f"DynamicsDiscriminator: built for {self.flow_nc} flow channels, got no flows")
        return dynamics_inputs(frames, flows, self.strides[self._check_index(scale_index)], self.n_frames)

    def _check_index(self, i: int) -> int:
        if not 0 <= i < len(self.scales):
            raise ValueError(f"DynamicsDiscriminator: scale_index {i} out of range 0..{len(self.scales) - 1}")
        return i

    def forward(self, x: torch.Tensor, scale_index: int) -> list[list[torch.Tensor]]:
        return self.scales[self._check_index(scale_index)](x)
