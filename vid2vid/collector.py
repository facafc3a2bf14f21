"""Sequential generation and the loss collector (the few-shot-vid2vid split: generator /
discriminators / losses, tied together here).

:func:`generate` rolls the generator over a sequence (thesis eq. (7.4),
``Y~_t = G(X_{t-2:t}, Y~_{t-2:t-1})``): the conditioning window repeats the first frame at the
start, and the previously generated frames start as zeros (grey), exactly as at inference
(:class:`StreamGenerator`), so training and reenactment see the same first frames. Previous
outputs are fed back detached (vid2vid's truncated back-propagation through time).

:func:`discriminator_losses` and :func:`generator_losses` return the named LSGAN / feature
matching / perceptual / temporal terms (eqs. (7.5)-(7.9)); the task sums them with
:class:`vid2vid.losses.LossWeights`. Real and fake go through each discriminator in one batch
(instance norm keeps samples independent).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vid2vid import discriminators as dsc
from vid2vid import losses as L

__all__ = ["generate", "StreamGenerator", "SequenceGenerator", "DiscriminatorSet", "discriminator_losses",
           "generator_losses", "frame_inputs"]


def frame_inputs(cond: torch.Tensor, t: int, n_frames: int) -> torch.Tensor:
    """(B, n_frames * C, H, W): conditioning frames t - n_frames + 1 .. t of ``cond`` (B, T, C, H, W),
    indices clamped at 0 (the first frame repeats)."""
    idx = [max(t - n_frames + 1 + j, 0) for j in range(n_frames)]
    return cond[:, idx].flatten(1, 2)


def generate(G: nn.Module, cond: torch.Tensor, n_frames: int = 3, prev: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Roll ``G`` over ``cond`` (B, T, 6, H, W) in [-1, 1]. ``prev`` (B, n_frames - 1, 3, H, W):
    the previously generated frames before the sequence (default zeros). Returns the frames
    (B, T, 3, H, W) and the stacked extra outputs of a composite generator (``flow``, ``mask``)."""
    B, T, _, H, W = cond.shape
    if prev is None:
        prev = cond.new_zeros(B, n_frames - 1, 3, H, W)
    history = list(prev.unbind(1))
    frames, extras = [], {}
    for t in range(T):
        out = G(frame_inputs(cond, t, n_frames), torch.cat([h.detach() for h in history], 1))
        frames.append(out["image"])
        for k in ("flow", "mask"):
            if k in out:
                extras.setdefault(k, []).append(out[k])
        history = history[1:] + [out["image"]]
    return torch.stack(frames, 1), {k: torch.stack(v, 1) for k, v in extras.items()}


class StreamGenerator:
    """Frame-by-frame inference with the same state rules as :func:`generate`: feed one
    conditioning frame (B, 6, H, W) at a time, get the generated frame (B, 3, H, W)."""

    def __init__(self, G: nn.Module, n_frames: int = 3):
        self.G, self.n = G, int(n_frames)
        self.cond: list[torch.Tensor] = []
        self.prev: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, cond_t: torch.Tensor) -> torch.Tensor:
        if not self.cond:
            self.cond = [cond_t] * self.n
            B, _, H, W = cond_t.shape
            self.prev = [cond_t.new_zeros(B, 3, H, W)] * (self.n - 1)
        else:
            self.cond = self.cond[1:] + [cond_t]
        y = self.G(torch.cat(self.cond, 1), torch.cat(self.prev, 1))["image"]
        self.prev = self.prev[1:] + [y]
        return y


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(0, 1)


class SequenceGenerator(nn.Module):
    """The generator unrolled over a sequence as ONE module call (so DistributedDataParallel
    sees one forward per step): ``forward(cond (B, T, 6, H, W)) -> (B, T, 3, H, W)``."""

    def __init__(self, G: nn.Module, n_frames: int = 3):
        super().__init__()
        self.G, self.n_frames = G, int(n_frames)

    def forward(self, cond: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        return generate(self.G, cond, self.n_frames, prev)[0]


def _split(out, n: int):
    """Feature lists of a batch [real; fake] -> (real, fake) lists (per scale, per layer)."""
    return [[f[:n] for f in scale] for scale in out], [[f[n:] for f in scale] for scale in out]


class DiscriminatorSet(nn.Module):
    """The image, mouth and dynamics discriminators evaluated together in ONE call on real and
    generated sequences (one DDP forward per phase).

    ``forward(cond (B, T, 6, H, W), real, fake (B, T, 3, H, W), mouth (B, T, 4), flows (B, T, C, H, W)
    or None)`` returns ``{"image": (real feats, fake feats), "mouth": ..., "dynamics": [per
    temporal scale k = 1, 2, 4: (real, fake) or None when the sequence is too short]}``; the
    image D sees (X_t, Y_t), the mouth D their mouth crops, the dynamics D three frames
    (t, t+k, t+2k) with the real frames' flows between them (eq. (7.9)).
    """

    def __init__(self, image: nn.Module, mouth: nn.Module, dynamics: nn.Module, temporal_scales: int = 3):
        super().__init__()
        self.image, self.mouth, self.dynamics = image, mouth, dynamics
        self.temporal_scales = int(temporal_scales)

    def forward(self, cond, real, fake, mouth, flows):
        x = _flat(cond)
        img_r, img_f = torch.cat([x, _flat(real)], 1), torch.cat([x, _flat(fake)], 1)
        boxes = _flat(mouth)
        n = img_r.shape[0]
        out = {"image": _split(self.image(torch.cat([img_r, img_f], 0)), n)}
        crops = torch.cat([dsc.mouth_crop(img_r, boxes), dsc.mouth_crop(img_f, boxes)], 0)
        out["mouth"] = _split(self.mouth(crops), n)
        dyn = []
        for s in range(self.temporal_scales):
            r = dsc.dynamics_inputs(real, flows, 2 ** s)
            if r is None:
                dyn.append(None)
                continue
            f = dsc.dynamics_inputs(fake, flows, 2 ** s)
            dyn.append(_split(self.dynamics(torch.cat([r, f], 0), s), r.shape[0]))
        out["dynamics"] = dyn
        return out


def discriminator_losses(outs: dict) -> dict[str, torch.Tensor]:
    """LSGAN losses of the discriminators (eqs. (7.5)-(7.9)): real -> 1, generated -> 0, from a
    :class:`DiscriminatorSet` output computed on DETACHED generated frames. Returns ``D_image``,
    ``D_mouth`` and ``D_dynamics`` (mean over the temporal scales the sequence allows)."""
    out = {"D_image": L.discriminator_loss(*outs["image"]), "D_mouth": L.discriminator_loss(*outs["mouth"])}
    terms = [L.discriminator_loss(*p) for p in outs["dynamics"] if p is not None]
    if terms:
        out["D_dynamics"] = torch.stack(terms).mean()
    return out


def generator_losses(outs: dict, real, fake, flows, conf, *, vgg: nn.Module | None = None,
                     face: nn.Module | None = None, use_l1: bool = False) -> dict[str, torch.Tensor]:
    """The generator's terms from a :class:`DiscriminatorSet` output on the (non-detached)
    generated frames: ``G_image``, ``G_mouth``, ``G_dynamics`` (LSGAN, generated -> 1),
    ``G_feat`` / ``G_dynamics_feat`` (feature matching on the image / dynamics discriminators,
    the latter averaged over temporal scales), ``G_vgg`` (VGG-19,
    when ``vgg`` has weights), ``G_face`` (:class:`vid2vid.losses.FaceFeatureLoss`, when ``face``
    is given), ``G_temporal`` (previous generated frame warped by the REAL flow
    vs. the current one, masked by the flow confidence; when flows carry x, y) and ``G_l1``
    (when ``use_l1``). real / fake (B, T, 3, H, W), flows (B, T, C, H, W) or None, conf
    (B, T, 1, H, W)."""
    r, f = outs["image"]
    out = {"G_image": L.generator_adv_loss(f)}
    out["G_feat"] = L.feature_matching_loss(f, r)
    out["G_mouth"] = L.generator_adv_loss(outs["mouth"][1])
    adv, feat = [], []
    for p in outs["dynamics"]:
        if p is not None:
            adv.append(L.generator_adv_loss(p[1]))
            feat.append(L.feature_matching_loss(p[1], p[0]))
    if adv:
        out["G_dynamics"] = torch.stack(adv).mean()
        out["G_dynamics_feat"] = torch.stack(feat).mean()
    if vgg is not None and getattr(vgg, "available", False):
        out["G_vgg"] = vgg(_flat(fake), _flat(real))
    if face is not None:
        out["G_face"] = face(_flat(fake), _flat(real))
    if flows is not None and flows.shape[2] >= 2 and fake.shape[1] > 1:
        out["G_temporal"] = L.temporal_warp_loss(_flat(fake[:, 1:]), _flat(fake[:, :-1]), _flat(flows[:, 1:]),
                                                 _flat(conf[:, 1:]))
    if use_l1:
        out["G_l1"] = (fake - real).abs().mean()
    return out
