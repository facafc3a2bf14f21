"""DFFNet: the 3D facial-flow network of DeepFaceFlow (CVPR 2020, Sec. 4.2, Fig. 3).

A FlowNetC-like U-Net. Inputs are two RGB frames ``i1, i2`` (B, 3, H, W) in [0, 1] and the
PNCC image of the first frame ``pncc`` (B, 3, H, W) in [0, 1] (the 3DMeshReg mesh of frame 1
rendered with its normalised-coordinate colours, Sec. 4.1/4.2).

Architecture (channel counts at ``width=1``; every count is multiplied by ``width``):

- shared feature tower applied to i1 and i2: ``conv1`` 5x5/2 (64), ``conv2`` 5x5/2 (128),
  ``conv3`` 5x5/2 (256) -> 1/8 resolution (28x28 for a 224 input), LeakyReLU(0.1);
- FlowNetC correlation of the two 1/8 feature maps (:func:`faceflow.nets.correlation.correlation`,
  max displacement 20, stride2 2 -> 441 channels, not scaled by ``width``), of unit-length feature
  vectors (cosine similarity; our choice, see ``forward``);
- PNCC branch (``use_pncc='full'``: the 3 PNCC channels; ``'depth'``: its z channel only;
  ``'none'``: absent): 5x5/2 (32), 5x5/2 (64), 3x3/2 (64) -> 1/8 resolution;
- ``conv_redir``: 1x1 conv (32) of i1's 1/8 features, concatenated with the correlation and the
  PNCC features;
- contracting part ``conv3_1`` (256), ``conv4`` /2 (512), ``conv4_1``, ``conv5`` /2 (512),
  ``conv5_1``, ``conv6`` /2 (1024), ``conv6_1`` -> 1/64 (with conv1..conv3: nine conv layers on
  the main path, as FlowNetC);
- expanding part: at each scale a 3x3 conv predicts a 3-channel flow, and a 4x4/2 transposed conv
  upsamples both the features and that flow; these are concatenated with the encoder skip of the
  next scale (conv5_1, conv4_1, conv3_1, conv2 of i1, conv1 of i1, and at full resolution a 3x3
  conv ``conv0`` of [i1, PNCC input]) -> flows at 1/64, 1/32, 1/16, 1/8, 1/4, 1/2 and 1/1.
  Transposed-conv outputs are cropped to the skip size, so any H, W >= 64 works (224 gives
  4, 7, 14, 28, 56, 112, 224).

Classical initialisation (``init='dis'``, issue 14): ``forward`` also takes a 2D flow ``init_flow``
(B, 2, H, W) in pixels (DIS optical flow between i1 and i2: :func:`faceflow.ops.opticalflow.dis_flow`).
It is an input (scaled by ``1 / flow_div``, area-averaged to 1/8 beside the correlation and at full
resolution beside ``conv0``) and the base of every prediction: each scale's output is the network's
residual plus the initial flow averaged to that scale (z starts at 0). The residual heads start at
zero, so an untrained network outputs the initial flow; it then learns the correction of the 2D flow
and the depth component.

Decomposed flow (``decompose=True``, issue 14): every head predicts 6 channels, the rigid
head-motion flow (3) and the expression flow (3); the total flow is their sum. ``forward`` still
returns the total flows, and with ``parts=True`` also the head-motion flows (the expression flow is
the difference). With ``init='dis'`` the initial flow goes into the expression part: the total is
head + expression + initial flow, and the head-motion flow starts at zero.

Flow convention: ``flow[:, 0]`` = dx, ``flow[:, 1]`` = dy (image pixels, y down), ``flow[:, 2]`` =
dz (depth displacement in the same pixel units as the scaled-orthographic mesh depth). EVERY
returned prediction, including the coarse ones, is in pixel units of the FULL-RESOLUTION input
image (a 1/8 prediction value of 8 means 8 full-resolution pixels, i.e. one 1/8 cell). The raw
conv heads output ``flow / flow_div`` (FlowNet's division by 20 keeps targets small).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceflow.errors import FaceflowError
from faceflow.nets.correlation import correlation, correlation_channels

PNCC_MODES = ("full", "depth", "none")
INITS = ("none", "dis")


def _ch(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding=k // 2),
                         nn.LeakyReLU(0.1, inplace=True))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.1, inplace=True))


def _crop(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x[..., :like.shape[-2], :like.shape[-1]]


class DFFNet(nn.Module):
    """DFFNet (Sec. 4.2): ``forward(i1, i2, pncc) -> [flow_1/64, ..., flow_1/2, flow_1/1]``.

    Args:
        use_pncc: ``'full'`` (3-channel PNCC), ``'depth'`` (its z channel) or ``'none'``
            (ablation of Table 3: no PNCC branch; ``pncc`` may then be None).
        width: multiplier of every channel count (e.g. 0.25 for a CPU "tiny" preset).
        max_displacement, stride2: correlation parameters (20, 2 -> 441 channels).
        flow_div: the heads predict ``flow / flow_div``.
        init: ``'none'`` (the paper's network) or ``'dis'`` (the predictions are residuals on an
            initial 2D flow given to ``forward``; see the module docstring).
        decompose: predict the head-motion and expression flows, whose sum is the flow.
    """

    def __init__(self, use_pncc: str = "full", width: float = 1.0, max_displacement: int = 20,
                 stride2: int = 2, flow_div: float = 20.0, init: str = "none", decompose: bool = False):
        super().__init__()
        if init not in INITS:
            raise FaceflowError(f"DFFNet init must be one of {INITS}, got {init!r}")
        self.init, self.decompose = init, bool(decompose)
        nf = 6 if self.decompose else 3  # channels of each prediction: (head, expression) or the flow
        init_ch = 2 if init != "none" else 0
        if use_pncc not in PNCC_MODES:
            raise FaceflowError(f"DFFNet use_pncc must be one of {PNCC_MODES}, got {use_pncc!r}")
        if not width > 0:
            raise FaceflowError(f"DFFNet width must be positive, got {width}")
        self.use_pncc, self.width, self.flow_div = use_pncc, float(width), float(flow_div)
        self.max_displacement, self.stride2 = int(max_displacement), int(stride2)
        c = lambda n: _ch(n, width)
        self.pncc_channels = {"full": 3, "depth": 1, "none": 0}[use_pncc]

        # shared feature tower (Fig. 3, top)
        self.conv1 = _conv(3, c(64), 5, 2)
        self.conv2 = _conv(c(64), c(128), 5, 2)
        self.conv3 = _conv(c(128), c(256), 5, 2)
        # PNCC branch
        if self.pncc_channels:
            self.pncc_branch = nn.Sequential(_conv(self.pncc_channels, c(32), 5, 2),
                                             _conv(c(32), c(64), 5, 2), _conv(c(64), c(64), 3, 2))
            pncc_feat = c(64)
        else:
            self.pncc_branch = None
            pncc_feat = 0
        self.conv_redir = _conv(c(256), c(32), 1, 1)
        corr_ch = correlation_channels(max_displacement, stride2)
        # contracting part
        self.conv3_1 = _conv(corr_ch + c(32) + pncc_feat + init_ch, c(256))
        self.conv4 = _conv(c(256), c(512), 3, 2)
        self.conv4_1 = _conv(c(512), c(512))
        self.conv5 = _conv(c(512), c(512), 3, 2)
        self.conv5_1 = _conv(c(512), c(512))
        self.conv6 = _conv(c(512), c(1024), 3, 2)
        self.conv6_1 = _conv(c(1024), c(1024))
        self.conv0 = _conv(3 + self.pncc_channels + init_ch, c(16))  # full-resolution skip for refinement

        # expanding part: skips at 1/32 .. 1/1 and the decoder feature widths
        skips = [c(512), c(512), c(256), c(128), c(64), c(16)]
        outs = [c(512), c(256), c(128), c(64), c(32), c(16)]
        self.predict = nn.ModuleList([nn.Conv2d(c(1024), nf, 3, 1, 1)])
        self.deconv = nn.ModuleList()
        self.upflow = nn.ModuleList()
        cin = c(1024)
        for skip, out in zip(skips, outs):
            self.deconv.append(_deconv(cin, out))
            self.upflow.append(nn.ConvTranspose2d(nf, nf, 4, 2, 1, bias=False))
            cin = skip + out + nf
            self.predict.append(nn.Conv2d(cin, nf, 3, 1, 1))

        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for up in self.upflow:  # start the flow upsamplers as bilinear 2x upsampling
            with torch.no_grad():
                up.weight.zero_()
                k = torch.tensor([0.25, 0.75, 0.75, 0.25])
                for ch in range(nf):
                    up.weight[ch, ch] = k[:, None] * k[None, :]
        if self.init != "none":  # a classical start begins exactly at the initial flow: residual heads at 0
            for head in self.predict:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def _check_init(self, i1, init_flow):
        if self.init == "none":
            if init_flow is not None:
                raise FaceflowError("this DFFNet (init='none') takes no init_flow")
            return
        if init_flow is None or init_flow.shape != (i1.shape[0], 2, *i1.shape[-2:]) or \
                not init_flow.is_floating_point():
            raise FaceflowError(f"DFFNet (init={self.init!r}) needs init_flow (B, 2, H, W) = "
                                f"{(i1.shape[0], 2, *i1.shape[-2:])}, got "
                                f"{None if init_flow is None else tuple(init_flow.shape)}")

    def _check(self, i1, i2, pncc):
        for name, t in (("i1", i1), ("i2", i2)):
            if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
                raise FaceflowError(f"DFFNet {name} must be a float tensor (B, 3, H, W), got "
                                    f"{getattr(t, 'shape', type(t))}")
        if i1.shape != i2.shape:
            raise FaceflowError(f"DFFNet i1 and i2 differ in shape: {tuple(i1.shape)} vs {tuple(i2.shape)}")
        if min(i1.shape[-2:]) < 64:
            raise FaceflowError(f"DFFNet needs images of at least 64x64, got {tuple(i1.shape[-2:])}")
        if self.pncc_channels:
            if pncc is None or pncc.shape != i1.shape or not pncc.is_floating_point():
                raise FaceflowError(f"DFFNet (use_pncc={self.use_pncc!r}) needs a float PNCC image "
                                    f"{tuple(i1.shape)}, got {None if pncc is None else tuple(pncc.shape)}")

    def forward(self, i1: torch.Tensor, i2: torch.Tensor, pncc: torch.Tensor | None = None,
                init_flow: torch.Tensor | None = None, parts: bool = False):
        """``i1, i2, pncc``: (B, 3, H, W) in [0, 1] (``init_flow`` (B, 2, H, W) pixels with
        ``init='dis'``) -> 7 flows (B, 3, h_s, w_s), coarsest (1/64) to finest (B, 3, H, W), all in
        full-resolution pixel units (see module docstring). ``parts`` (a decomposed network):
        ``(flows, head_flows)``, the head-motion flows at the same scales."""
        if parts and not self.decompose:
            raise FaceflowError("parts=True needs a decomposed DFFNet (decompose=True)")
        self._check(i1, i2, pncc)
        self._check_init(i1, init_flow)
        x1, x2 = i1 - 0.5, i2 - 0.5
        c1a = self.conv1(x1)
        c2a = self.conv2(c1a)
        c3a = self.conv3(c2a)
        c3b = self.conv3(self.conv2(self.conv1(x2)))
        # correlation of unit-length feature vectors (cosine similarity in [-1, 1]): FlowNetC's raw
        # dot product lets the tower shrink its features until the cost volume carries nothing (a CPU
        # run ended with an output independent of I2); normalised features keep the matching signal
        corr = correlation(F.normalize(c3a, dim=1), F.normalize(c3b, dim=1), self.max_displacement, self.stride2,
                           normalize=False)
        corr = F.leaky_relu(corr, 0.1)
        feats = [corr, self.conv_redir(c3a)]
        p = None
        if self.pncc_channels:
            p = (pncc if self.use_pncc == "full" else pncc[:, 2:3]) - 0.5
            feats.append(_crop(self.pncc_branch(p), c3a))
        init = None if init_flow is None else init_flow.to(i1.dtype) / self.flow_div
        if init is not None:
            feats.append(F.adaptive_avg_pool2d(init, c3a.shape[-2:]))
        c3_1 = self.conv3_1(torch.cat(feats, 1))
        c4 = self.conv4_1(self.conv4(c3_1))
        c5 = self.conv5_1(self.conv5(c4))
        c6 = self.conv6_1(self.conv6(c5))
        c0 = self.conv0(torch.cat([x1] + ([] if p is None else [p]) + ([] if init is None else [init]), 1))

        skips = [c5, c4, c3_1, c2a, c1a, c0]
        feat = c6
        raw = self.predict[0](feat)
        flows = [raw]
        for k, skip in enumerate(skips):
            up_feat = _crop(self.deconv[k](feat), skip)
            up_flow = _crop(self.upflow[k](raw), skip)
            feat = torch.cat([skip, up_feat, up_flow], 1)
            raw = self.predict[k + 1](feat)
            flows.append(raw)
        if self.decompose:  # (head, expression) -> the flow is their sum (plus the initial flow)
            heads = [f[:, :3] * self.flow_div for f in flows]
            totals = [_plus_init(f[:, :3] + f[:, 3:], init) * self.flow_div for f in flows]
            return (totals, heads) if parts else totals
        return [_plus_init(f, init) * self.flow_div for f in flows]


def _plus_init(flow: torch.Tensor, init: torch.Tensor | None) -> torch.Tensor:
    """A prediction (B, 3, h, w) as a residual on the initial 2D flow (B, 2, H, W) averaged to its
    scale (z starts at 0); unchanged without one."""
    if init is None:
        return flow
    return flow + F.pad(F.adaptive_avg_pool2d(init, flow.shape[-2:]), (0, 0, 0, 0, 0, 1))
