"""The sequential video generator of Head2Head++ (thesis Sec. 7.2.4, eq. (7.4)).

``Y~_t = G(X_{t-2:t}, Y~_{t-2:t-1})``: frame t is generated from the conditioning images of the
current and the ``n_frames - 1`` previous frames (each X = NMFC (3) + eye sketch (3) = 6
channels, stacked oldest first along channels) and the ``n_frames - 1`` previously GENERATED
frames (oldest first). All images are in [-1, 1].

Architecture (``presets()["paper"]``; letters as in the thesis):

- two encoders with the same architecture and separate weights, one for the conditioning
  frames (``n_frames * cond_nc`` input channels), one for the previous generated frames
  (``(n_frames - 1) * out_nc`` channels): ``c64, d128, d256, d512, R512 x 4``;
- their bottleneck features are ADDED; decoder ``R512 x 5, u256, u128, u64``, 7x7 conv to
  ``out_nc`` and tanh.

``c`` = 7x7 conv (reflection padding) - norm - ReLU, ``d`` = 3x3 stride-2 conv - norm - ReLU,
``R`` = residual block (two 3x3 convs, reflection padding, norm, ReLU between, identity skip),
``u`` = x2 upsampling - norm - ReLU. Channel counts are ``min(ngf * 2**i, max_nf)`` at the i-th
resolution level.

Upsampling (``upsample``): the thesis' ``u`` is a 3x3 transposed conv with stride 1/2. Its kernel
overlaps unevenly on the output lattice (a 3x3 kernel at stride 2 hits every other output pixel
with 4, 2 or 1 taps), which paints the classic checkerboard: a regular dot grid over the whole
frame, at periods 2, 4 and 8 after three such layers (Odena et al., "Deconvolution and
Checkerboard Artifacts", Distill 2016). ``"resize"`` (the default) upsamples by nearest-neighbour
x2 and then applies a 3x3 conv (reflection padding), whose taps are even by construction; the
parameter count is the same, and :func:`nearest_x2_conv3x3` computes the pair at the input's
resolution (four 2x2 convs, 1.8x the transposed conv's work instead of 4x). ``"transpose"``
keeps the thesis' layer (models trained before the change load with it:
:meth:`GeneratorConfig.from_saved`).

Optional vid2vid-style compositing (``composite=True``, not in the thesis): a head on the last
decoder features predicts a flow ``F`` (B, 2, H, W) in pixels (:mod:`vid2vid.warp` convention:
where each pixel of frame t is found in frame t-1) and a soft mask ``m`` (B, 1, H, W) in [0, 1];
the output is ``m * W(Y~_{t-1}, F) + (1 - m) * raw``. The flow head starts at zero.

At the first frames of a sequence there are no previous generated frames; the caller passes
zeros (or copies) there, the generator does not special-case it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceflow.errors import FaceflowError
from vid2vid.warp import warp

__all__ = ["GeneratorConfig", "Generator", "presets", "make_norm",
           "ResidualBlock", "Encoder", "Decoder", "NORMS", "UPSAMPLERS", "nearest_x2_conv3x3"]

NORMS = ("instance", "batch", "none")
UPSAMPLERS = ("resize", "transpose")


def make_norm(norm: str, nc: int) -> nn.Module:
    """Normalisation layer by name: ``"instance"`` (no affine, as pix2pixHD), ``"batch"`` or
    ``"none"`` (identity)."""
    if norm == "instance":
        return nn.InstanceNorm2d(nc, affine=False)
    if norm == "batch":
        return nn.BatchNorm2d(nc)
    if norm == "none":
        return nn.Identity()
    raise FaceflowError(f"unknown norm {norm!r}; expected one of {NORMS}")



@dataclass
class GeneratorConfig:
    """Generator hyper-parameters (defaults = the thesis, ``presets()["paper"]``).

    cond_nc: channels of one conditioning frame X (NMFC 3 + eye sketch 3).
    out_nc: channels of one generated frame Y.
    n_frames: conditioning frames per step; previous generated frames = n_frames - 1.
    ngf: channels of the first encoder layer; doubled at each downsampling, capped at max_nf.
    n_down: stride-2 downsamplings (and x2 upsamplings); H, W must be divisible by 2**n_down.
    enc_blocks / dec_blocks: residual blocks at the bottleneck of each encoder / the decoder.
    norm: "instance", "batch" or "none".
    composite: add the vid2vid flow + mask head (see the module docstring).
    upsample: "resize" (nearest x2 + 3x3 conv, no checkerboard) or "transpose" (the thesis' 3x3
        transposed conv); see the module docstring.
    """

    cond_nc: int = 6
    out_nc: int = 3
    n_frames: int = 3
    ngf: int = 64
    n_down: int = 3
    max_nf: int = 512
    enc_blocks: int = 4
    dec_blocks: int = 5
    norm: str = "instance"
    composite: bool = False
    upsample: str = "resize"

    @classmethod
    def from_saved(cls, fields: dict) -> "GeneratorConfig":
        """The config of a saved model: one saved before ``upsample`` existed used transposed convs."""
        return cls(**{"upsample": "transpose", **fields})

    def __post_init__(self):
        for name in ("cond_nc", "out_nc", "n_frames", "ngf", "n_down", "max_nf"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise FaceflowError(f"GeneratorConfig.{name} must be a positive integer, got {v!r}")
        for name in ("enc_blocks", "dec_blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise FaceflowError(f"GeneratorConfig.{name} must be a non-negative integer, got {v!r}")
        if self.norm not in NORMS:
            raise FaceflowError(f"GeneratorConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if self.upsample not in UPSAMPLERS:
            raise FaceflowError(f"GeneratorConfig.upsample must be one of {UPSAMPLERS}, got {self.upsample!r}")
        if self.composite and self.n_frames < 2:
            raise FaceflowError("GeneratorConfig.composite needs n_frames >= 2 (a previous frame to warp)")

    @property
    def prev_nc(self) -> int:
        """Input channels of the previous-frames encoder, ``(n_frames - 1) * out_nc``."""
        return (self.n_frames - 1) * self.out_nc

    @property
    def cond_in_nc(self) -> int:
        """Input channels of the conditioning encoder, ``n_frames * cond_nc``."""
        return self.n_frames * self.cond_nc

    def level_nc(self, i: int) -> int:
        """Channels at resolution level i (0 = full resolution)."""
        return min(self.ngf * 2 ** i, self.max_nf)

    def to_dict(self) -> dict:
        return asdict(self)


def presets() -> dict[str, GeneratorConfig]:
    """``"paper"``: the thesis generator; ``"tiny"``: a narrow one for tests and CPU smoke runs
    (a 256x256 forward + backward in ~0.2 s on one CPU core)."""
    return {
        "paper": GeneratorConfig(),
        "tiny": GeneratorConfig(ngf=8, max_nf=64, enc_blocks=1, dec_blocks=2),
    }


def _conv_block(cin: int, cout: int, k: int, stride: int, norm: str) -> nn.Sequential:
    """Conv - norm - ReLU; a 7x7 stride-1 conv uses reflection padding (``c``), a 3x3 stride-2
    one zero padding (``d``)."""
    bias = norm == "none"  # a norm right after the conv removes any bias
    if stride == 1:
        layers = [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, 1, 0, bias=bias)]
    else:
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias)]
    return nn.Sequential(*layers, make_norm(norm, cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    """``R``: x + [pad-conv3x3-norm-ReLU-pad-conv3x3-norm](x), channels unchanged."""

    def __init__(self, nc: int, norm: str):
        super().__init__()
        bias = norm == "none"  # a norm right after the conv removes any bias
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(nc, nc, 3, bias=bias), make_norm(norm, nc), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(nc, nc, 3, bias=bias), make_norm(norm, nc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """``c ngf, d .. (n_down times), R x enc_blocks``: (B, in_nc, H, W) ->
    (B, level_nc(n_down), H / 2**n_down, W / 2**n_down)."""

    def __init__(self, in_nc: int, cfg: GeneratorConfig):
        super().__init__()
        layers = [_conv_block(in_nc, cfg.level_nc(0), 7, 1, cfg.norm)]
        for i in range(cfg.n_down):
            layers.append(_conv_block(cfg.level_nc(i), cfg.level_nc(i + 1), 3, 2, cfg.norm))
        layers += [ResidualBlock(cfg.level_nc(cfg.n_down), cfg.norm) for _ in range(cfg.enc_blocks)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def nearest_x2_conv3x3(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(reflection_pad_1(nearest_x2(x)))`` for a 3x3 ``conv``, computed at the input's
    resolution: (B, cin, h, w) -> (B, cout, 2h, 2w).

    Output pixel (2i + a, 2j + b) sees input rows i - 1, i (a = 0) or i, i + 1 (a = 1) with the
    3x3 kernel's rows summed as (k0 | k1 + k2) or (k0 + k1 | k2), the same for columns; the
    reflection pad of the upsampled image is the replicate pad of the input. So each of the four
    output phases is a 2x2 conv on the input, 16 instead of 36 multiply-adds per input pixel and
    channel pair, with the same weights (the module and its state dict are unchanged)."""
    w = conv.weight
    rows = ((w[:, :, 0], w[:, :, 1] + w[:, :, 2]), (w[:, :, 0] + w[:, :, 1], w[:, :, 2]))  # each (co, ci, 3)
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h, wd = x.shape[-2:]
    phases = []
    for a in (0, 1):
        ra = torch.stack(rows[a], 2)                                              # (co, ci, 2, 3)
        cols = ((ra[..., 0], ra[..., 1] + ra[..., 2]), (ra[..., 0] + ra[..., 1], ra[..., 2]))
        for b in (0, 1):
            k = torch.stack(cols[b], 3)                                           # (co, ci, 2, 2)
            phases.append(F.conv2d(xp[..., a:a + h + 1, b:b + wd + 1], k, conv.bias))
    y = torch.stack(phases, 2)                                                    # (B, co, 4, h, w), a * 2 + b
    B, co = y.shape[:2]
    return y.view(B, co, 2, 2, h, wd).permute(0, 1, 4, 2, 5, 3).reshape(B, co, 2 * h, 2 * wd)


def _upsample_x2(cin: int, cout: int, how: str, bias: bool) -> list[nn.Module]:
    """The layers of one x2 upsampling (B, cin, h, w) -> (B, cout, 2h, 2w): nearest resize then a
    3x3 conv (``"resize"``), or the thesis' 3x3 transposed conv (``"transpose"``)."""
    if how == "transpose":
        return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3, bias=bias)]


class Decoder(nn.Module):
    """``R x dec_blocks, u .. (n_down times)``: bottleneck -> (B, ngf, H, W) features (the 7x7
    output conv and tanh live in :class:`Generator`, which also feeds these features to the
    composite head)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        nb = cfg.level_nc(cfg.n_down)
        layers: list[nn.Module] = [ResidualBlock(nb, cfg.norm) for _ in range(cfg.dec_blocks)]
        bias = cfg.norm == "none"  # a norm right after the conv removes any bias
        for i in range(cfg.n_down, 0, -1):
            cin, cout = cfg.level_nc(i), cfg.level_nc(i - 1)
            layers += [*_upsample_x2(cin, cout, cfg.upsample, bias), make_norm(cfg.norm, cout), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self.net)
        i = 0
        while i < len(layers):
            if isinstance(layers[i], nn.Upsample):  # nearest x2, reflection pad, 3x3 conv: one fused step
                x = nearest_x2_conv3x3(x, layers[i + 2])
                i += 3
            else:
                x = layers[i](x)
                i += 1
        return x


def _out_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(cin, cout, 7))


class Generator(nn.Module):
    """Head2Head++ generator, eq. (7.4). See the module docstring.

    Attributes: ``cond_encoder``, ``prev_encoder`` (None when n_frames == 1), ``decoder``,
    ``to_image`` (7x7 conv, tanh applied in forward) and, with ``composite``, ``to_flow``,
    ``to_mask`` (7x7 convs; sigmoid applied in forward).
    """

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg if cfg is not None else GeneratorConfig()
        self.cond_encoder = Encoder(cfg.cond_in_nc, cfg)
        self.prev_encoder = Encoder(cfg.prev_nc, cfg) if cfg.prev_nc > 0 else None
        self.decoder = Decoder(cfg)
        self.to_image = _out_conv(cfg.level_nc(0), cfg.out_nc)
        if cfg.composite:
            self.to_flow = _out_conv(cfg.level_nc(0), 2)
            self.to_mask = _out_conv(cfg.level_nc(0), 1)
            nn.init.zeros_(self.to_flow[1].weight)  # start from a zero flow
            nn.init.zeros_(self.to_flow[1].bias)
        else:
            self.to_flow = self.to_mask = None

    def check_inputs(self, cond: torch.Tensor, prev: torch.Tensor | None) -> None:
        """Raise a clear error when shapes do not match the configuration."""
        cfg = self.cfg
        if not isinstance(cond, torch.Tensor) or cond.dim() != 4 or cond.shape[1] != cfg.cond_in_nc:
            raise ValueError(f"Generator: cond must be (B, {cfg.cond_in_nc}, H, W) (n_frames={cfg.n_frames} x "
                             f"cond_nc={cfg.cond_nc}), got {tuple(getattr(cond, 'shape', ()))}")
        B, _, H, W = cond.shape
        m = 2 ** cfg.n_down
        if H % m or W % m:
            raise FaceflowError(f"Generator: frame size {H}x{W} must be divisible by 2**n_down = {m}")
        if H // m < 2 or W // m < 2:
            raise FaceflowError(f"Generator: frame size {H}x{W} too small for n_down = {cfg.n_down} "
                                f"(need at least {2 * m}x{2 * m})")
        if cfg.prev_nc == 0:
            if prev is not None and prev.shape[1] != 0:
                raise ValueError("Generator: n_frames == 1 takes no previous frames (prev must be None)")
            return
        if not isinstance(prev, torch.Tensor) or prev.dim() != 4 or tuple(prev.shape) != (B, cfg.prev_nc, H, W):
            raise ValueError(f"Generator: prev must be ({B}, {cfg.prev_nc}, {H}, {W}) ((n_frames - 1) x out_nc), "
                             f"got {tuple(getattr(prev, 'shape', ()))}")

    def encode(self, cond: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """Bottleneck features: cond_encoder(cond) + prev_encoder(prev) (B, C, H/2^n, W/2^n)."""
        feat = self.cond_encoder(cond)
        if self.prev_encoder is not None:
            feat = feat + self.prev_encoder(prev)
        return feat

    def forward(self, cond: torch.Tensor, prev: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """cond (B, n_frames*cond_nc, H, W), prev (B, (n_frames-1)*out_nc, H, W), both oldest frame
        first, in [-1, 1].

        Returns {"image": (B, out_nc, H, W) in [-1, 1]}; with ``composite`` also "raw" (the tanh
        output), "flow" (B, 2, H, W) pixels, "mask" (B, 1, H, W) in [0, 1] and "warped" (the last
        previous frame warped by the flow).
        """
        self.check_inputs(cond, prev)
        feat = self.decoder(self.encode(cond, prev))
        raw = torch.tanh(self.to_image(feat))
        if not self.cfg.composite:
            return {"image": raw}
        flow = self.to_flow(feat)
        mask = torch.sigmoid(self.to_mask(feat))
        last = prev[:, -self.cfg.out_nc:]
        warped = warp(last, flow)
        image = mask * warped + (1 - mask) * raw
        return {"image": image, "raw": raw, "flow": flow, "mask": mask, "warped": warped}
