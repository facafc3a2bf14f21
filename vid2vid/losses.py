"""Losses of the vid2vid generator and discriminators (Head2Head++ thesis chapter, eqs. (7.5)-(7.9)).

- Adversarial terms are LSGAN objectives: a discriminator regresses 1 on real and 0 on fake
  inputs, the generator pushes its fakes towards 1 (:func:`lsgan_loss`,
  :func:`discriminator_loss`, :func:`generator_adv_loss`). The image, mouth and dynamics
  discriminators all use them.
- Feature matching (pix2pixHD): L1 between the discriminator's intermediate features of the fake
  and the (detached) real input (:func:`feature_matching_loss`).
- VGG perceptual loss on ImageNet VGG19 features (:class:`VGG19Loss`); the weights are never
  downloaded, only read from a local file (:func:`find_vgg19_weights`).
- Face-feature perceptual loss (:class:`FaceFeatureLoss`): the same idea on the feature tower of
  the project's own face-trained DFFNet, which needs no download (our stand-in for VGG-19 offline).
- Flow-warping temporal loss (:func:`temporal_warp_loss`): the generated frame t should match the
  generated frame t-1 warped by the real frames' flow, where that flow is trusted.
- :class:`LossWeights` and :func:`weighted_total` combine named terms.

Discriminator outputs: a multi-scale PatchGAN returns a list (one entry per scale) of lists of
tensors (intermediate features ..., final prediction). The functions here also accept a single
tensor (one scale, prediction only) or a flat list of tensors, which is read as ONE scale's
feature list whose last element is the prediction (the pix2pixHD convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from faceflow.engine.weights import load_weights
from faceflow.errors import FaceflowError
from faceflow.io.safeload import load_tensors
from faceflow.runtime.assets import WEIGHTS_DIR, find_torch_weights, torch_cache_candidates
from vid2vid.warp import warp

__all__ = [
    "lsgan_loss", "discriminator_loss", "generator_adv_loss", "feature_matching_loss",
    "VGG19Loss", "find_vgg19_weights", "VGG19_FILENAME", "FaceFeatureLoss", "temporal_warp_loss",
    "LossWeights", "weighted_total",
]

Preds = Union[torch.Tensor, Sequence[torch.Tensor], Sequence[Sequence[torch.Tensor]]]


def _scales(preds: Preds, what: str) -> list[list[torch.Tensor]]:
    """Normalise discriminator outputs to a list (scales) of lists (features, prediction last)."""
    if isinstance(preds, torch.Tensor):
        return [[preds]]
    if not isinstance(preds, (list, tuple)) or len(preds) == 0:
        raise ValueError(f"{what}: expected a tensor, a list of tensors or a list of lists of "
                         f"tensors, got {type(preds).__name__} {preds!r:.60}")
    if all(isinstance(p, torch.Tensor) for p in preds):
        return [list(preds)]  # one scale: features ..., prediction
    out = []
    for i, s in enumerate(preds):
        if isinstance(s, torch.Tensor):
            s = [s]
        if not isinstance(s, (list, tuple)) or len(s) == 0 or not all(isinstance(t, torch.Tensor) for t in s):
            raise ValueError(f"{what}: scale {i} must be a non-empty list of tensors")
        out.append(list(s))
    return out


# ---------------------------------------------------------------------------------------------
# adversarial (LSGAN)


def lsgan_loss(preds: Preds, target_real: bool) -> torch.Tensor:
    """LSGAN objective: mean over scales of ``mean((D - target)^2)`` on each scale's LAST output.

    ``preds``: multi-scale discriminator outputs (see module docstring); each prediction
    (B, 1, h, w) of any size. ``target_real``: regress to 1 (True) or 0 (False). Returns ().
    """
    target = 1.0 if target_real else 0.0
    scales = _scales(preds, "lsgan_loss")
    # LSGAN objectives, eqs. (7.5)-(7.9) of the Head2Head++ chapter: E[(D(x)-1)^2], E[D(G(z))^2]
    losses = [F.mse_loss(s[-1], torch.full_like(s[-1], target)) for s in scales]
    return torch.stack(losses).mean()


def discriminator_loss(real_preds: Preds, fake_preds: Preds) -> torch.Tensor:
    """Discriminator LSGAN loss ``0.5 * (lsgan(real, 1) + lsgan(fake, 0))`` (the average of the
    two halves, as pix2pixHD/vid2vid); ``fake_preds`` must come from DETACHED fakes. Returns ()."""
    # eqs. (7.5)-(7.9) of Head2Head++ (discriminator side of the LSGAN objective)
    return 0.5 * (lsgan_loss(real_preds, True) + lsgan_loss(fake_preds, False))


def generator_adv_loss(fake_preds: Preds) -> torch.Tensor:
    """Generator LSGAN loss ``lsgan(fake, 1)``: fakes pushed towards "real". Returns ()."""
    # eqs. (7.5)-(7.9) of Head2Head++ (generator side of the LSGAN objective)
    return lsgan_loss(fake_preds, True)


def feature_matching_loss(fake_feats: Preds, real_feats: Preds) -> torch.Tensor:
    """pix2pixHD feature matching: sum over scales and intermediate features (all but the last
    output of each scale) of ``w * mean|fake_j - real_j.detach()|``, with
    ``w = (4 / (n_layers + 1)) / num_D``, where ``n_layers + 1`` is the scale's number of
    intermediate features and ``num_D`` the number of scales. Returns () (0 when a scale has only
    its prediction). The weight ``lambda_feat`` is applied by :func:`weighted_total`.
    """
    fake = _scales(fake_feats, "feature_matching_loss (fake)")
    real = _scales(real_feats, "feature_matching_loss (real)")
    if len(fake) != len(real):
        raise ValueError(f"feature_matching_loss: {len(fake)} fake scales but {len(real)} real scales")
    num_d = len(fake)
    total = fake[0][-1].new_zeros(())
    for i, (fs, rs) in enumerate(zip(fake, real)):
        if len(fs) != len(rs):
            raise ValueError(f"feature_matching_loss: scale {i} has {len(fs)} fake but {len(rs)} real outputs")
        n_inter = len(fs) - 1
        if n_inter == 0:
            continue
        w = (4.0 / n_inter) / num_d
        for j in range(n_inter):
            if fs[j].shape != rs[j].shape:
                raise ValueError(f"feature_matching_loss: scale {i} feature {j}: fake "
                                 f"{tuple(fs[j].shape)} vs real {tuple(rs[j].shape)}")
            total = total + w * F.l1_loss(fs[j], rs[j].detach())
    return total


# ---------------------------------------------------------------------------------------------
# VGG19 perceptual loss

VGG19_FILENAME = "vgg19-dcbbb26e.pth"  # torchvision's ImageNet VGG19 checkpoint name
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# indices in vgg19().features of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1, and their weights
_VGG_TAPS = (1, 6, 11, 20, 29)
_VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


def _vgg19_search_paths(path=None) -> list[Path]:
    return torch_cache_candidates(VGG19_FILENAME, "FACEFLOW_VGG19", path)

def find_vgg19_weights(path: str | Path | None = None) -> Path | None:
    """The local VGG19 ImageNet weights file: ``path`` if given (None when it is not a file),
    else ``$FACEFLOW_VGG19``, else ``$TORCH_HOME/hub/checkpoints/vgg19-dcbbb26e.pth``
    (``TORCH_HOME`` defaults to ``~/.cache/torch``). Never downloads."""
    return find_torch_weights(VGG19_FILENAME, "FACEFLOW_VGG19", path)


def _vgg19_trunk() -> nn.Sequential:
    """torchvision's VGG19 ``features`` up to relu5_1 (randomly initialised, no download)."""

    try:  # the same builder torchvision's vgg19() uses, without its 120M-parameter classifier
        from torchvision.models.vgg import cfgs, make_layers
        features = make_layers(cfgs["E"], batch_norm=False)
    except (ImportError, KeyError, TypeError):
        features = torchvision.models.vgg19(weights=None).features
    return features[: _VGG_TAPS[-1] + 1]


def _load_vgg19_state(trunk: nn.Sequential, path: Path) -> None:
    """Load torchvision VGG19 weights (``features.N.weight`` keys; classifier keys ignored; a
    bare features state dict with ``N.weight`` keys works too) into ``trunk``."""

    state = load_tensors(path, "VGG19 weights file", "could not read VGG19 weights file (corrupt or truncated?)")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FaceflowError(f"VGG19 weights file {path} does not hold a state dict "
                            f"(got {type(state).__name__})")
    if any(isinstance(k, str) and k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items()
                 if isinstance(k, str) and k.startswith("features.")}
    need = trunk.state_dict()
    sub = {k: state[k] for k in need if k in state}
    missing = [k for k in need if k not in state]
    if missing:
        raise FaceflowError(f"VGG19 weights file {path} is not a torchvision VGG19 state dict: "
                            f"missing features.{missing[0]} (and {len(missing) - 1} more)")
    for k, v in sub.items():
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(need[k].shape):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise FaceflowError(f"VGG19 weights file {path}: features.{k} has shape {got}, "
                                f"expected {tuple(need[k].shape)}")
    trunk.load_state_dict(sub)


class VGG19Loss(nn.Module):
    """VGG19 perceptual loss (pix2pixHD): ``sum_i w_i * mean|phi_i(x) - phi_i(y)|`` over relu1_1,
    relu2_1, relu3_1, relu4_1, relu5_1 with ``w = 1/32, 1/16, 1/8, 1/4, 1``.

    The ImageNet weights are read only from a local file (:func:`find_vgg19_weights`): an
    explicit ``weights_path``, else ``$FACEFLOW_VGG19``, else torchvision's cache file. When none
    exists, ``available`` is False, ``reason`` says where it looked, and :meth:`forward` returns
    a constant 0 (the term drops out). A corrupt or wrong file raises :class:`FaceflowError`.
    The network is frozen (no parameter gradients, always in eval mode).
    """

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        found = find_vgg19_weights(weights_path)
        self.weights_path: Path | None = found
        self.available = found is not None
        self.reason = ""
        self.net: nn.Sequential | None = None
        if found is None:
            searched = ", ".join(str(p) for p in _vgg19_search_paths(weights_path))
            self.reason = (f"VGG19 ImageNet weights not found (searched: {searched}); the VGG loss "
                           f"is off. Provide torchvision's {VGG19_FILENAME} there, or point "
                           f"FACEFLOW_VGG19 (or the weights path option) at a local copy.")
            return
        net = _vgg19_trunk()
        _load_vgg19_state(net, found)
        net.requires_grad_(False)
        self.net = net.eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGG19Loss":
        super().train(mode)
        if self.net is not None:
            self.net.eval()  # frozen feature extractor: stays in eval mode
        return self

    def _features(self, img: torch.Tensor) -> list[torch.Tensor]:
        x = ((img + 1.0) * 0.5 - self.mean.to(img.dtype)) / self.std.to(img.dtype)
        feats = []
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i in _VGG_TAPS:
                feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, H, W) generated and ``y`` (B, 3, H, W) target, both in [-1, 1]; ``y`` is
        detached. Returns (): the weighted L1 feature distance, or 0 when unavailable."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise ValueError(f"VGG19Loss: x and y must both be (B, 3, H, W), got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        if self.net is None:
            return x.new_zeros(())
        fx = self._features(x)
        with torch.no_grad():
            fy = self._features(y.detach())
        loss = x.new_zeros(())
        for w, a, b in zip(_VGG_WEIGHTS, fx, fy):
            loss = loss + w * F.l1_loss(a, b)
        return loss


class FaceFeatureLoss(nn.Module):
    """Perceptual loss on a face-trained network of our own: the feature tower of DFFNet
    (``conv1``-``conv3``, 5x5 convs at 1/2, 1/4 and 1/8 resolution, the features its correlation
    layer matches between two face images), ``sum_i mean|phi_i(x) - phi_i(y)| / mean|phi_i(y)|``.
    Each layer's L1 is divided by the (detached) mean magnitude of the real frame's features, so
    the three layers weigh alike whatever their scale.

    The weights are a :mod:`faceflow.engine.weights` DFFNet file: ``weights_path``, or the shipped
    ``faceflow/weights/dffnet.pt``; nothing is downloaded. The tower is frozen (no parameter
    gradients, always in eval mode); gradients flow to ``x`` only.
    """

    def __init__(self, weights_path: str | Path | None = None):
        super().__init__()
        self.weights_path = Path(weights_path) if weights_path else WEIGHTS_DIR / "dffnet.pt"
        net = load_weights(self.weights_path, kind="dffnet")
        self.tower = nn.ModuleList([net.conv1, net.conv2, net.conv3])
        self.tower.requires_grad_(False)
        self.available = True
        self.eval()

    def train(self, mode: bool = True) -> "FaceFeatureLoss":
        return super().train(False)  # frozen feature extractor: stays in eval mode

    def features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> the three feature maps (DFFNet's input is RGB in [0, 1] - 0.5)."""
        x, out = img * 0.5, []
        for layer in self.tower:
            x = layer(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, H, W) generated and ``y`` (B, 3, H, W) target, both in [-1, 1]; ``y`` is
        detached. Returns (): the summed relative L1 feature distance (0 when x == y)."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape != y.shape:
            raise ValueError(f"FaceFeatureLoss: x and y must both be (B, 3, H, W), got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        with torch.no_grad():
            fy = self.features(y.detach())
        loss = x.new_zeros(())
        for a, b in zip(self.features(x), fy):
            loss = loss + (a - b).abs().mean() / (b.abs().mean() + 1e-6)
        return loss


# ---------------------------------------------------------------------------------------------
# temporal


def temporal_warp_loss(current: torch.Tensor, previous: torch.Tensor, flow: torch.Tensor,
                       conf: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Flow-warping temporal loss ``sum(conf * |current - W(previous, flow)|) / (sum(conf) * C + eps)``.

    ``current``, ``previous`` (B, C, H, W): generated frames t and t-1 (detach ``previous`` in
    the caller if it should not receive gradients); ``flow`` (B, Cf >= 2, H, W) = F_{t->t-1} in
    pixels (x, y used; :mod:`vid2vid.warp` convention); ``conf`` (B, 1, H, W) in [0, 1]. Returns
    (), a confidence-weighted mean absolute difference; 0 (still in the graph) when conf is 0.
    """
    if current.dim() != 4 or current.shape != previous.shape:
        raise ValueError(f"temporal_warp_loss: current and previous must both be (B, C, H, W), "
                         f"got {tuple(current.shape)} and {tuple(previous.shape)}")
    B, C, H, W = current.shape
    if flow.dim() != 4 or flow.shape[0] != B or flow.shape[1] < 2 or tuple(flow.shape[-2:]) != (H, W):
        raise ValueError(f"temporal_warp_loss: flow must be ({B}, >=2, {H}, {W}), got {tuple(flow.shape)}")
    if conf.shape != (B, 1, H, W):
        raise ValueError(f"temporal_warp_loss: conf must be ({B}, 1, {H}, {W}), got {tuple(conf.shape)}")
    conf = conf.to(current.dtype)
    warped = warp(previous, flow)
    num = (conf * (current - warped).abs()).sum()
    return num / (conf.sum() * C + eps)


# ---------------------------------------------------------------------------------------------
# weights


@dataclass
class LossWeights:
    """Weights of the generator (and discriminator) loss terms.

    ``lambda_feat`` and ``lambda_vgg`` = 10 as pix2pixHD/vid2vid/Head2Head++; ``lambda_mouth``
    weighs the mouth discriminator's terms, ``lambda_dynamics`` the dynamics discriminator's.
    ``lambda_temporal`` = 10 is OUR choice (the flow-warping loss is not weighted in the thesis),
    as is ``lambda_face``, the weight of :class:`FaceFeatureLoss` (when the task turns it on).
    """

    lambda_feat: float = 10.0
    lambda_vgg: float = 10.0
    lambda_face: float = 1.0
    lambda_mouth: float = 1.0
    lambda_dynamics: float = 1.0
    lambda_temporal: float = 10.0

    def table(self) -> dict[str, float]:
        """Loss name -> weight. ``G_*`` are generator terms, ``D_*`` discriminator terms."""
        return {
            "G_image": 1.0,
            "G_mouth": self.lambda_mouth,
            "G_dynamics": self.lambda_dynamics,
            "G_feat": self.lambda_feat,
            "G_mouth_feat": self.lambda_mouth * self.lambda_feat,
            "G_dynamics_feat": self.lambda_dynamics * self.lambda_feat,
            "G_vgg": self.lambda_vgg,
            "G_mouth_vgg": self.lambda_mouth * self.lambda_vgg,
            "G_face": self.lambda_face,
            "G_temporal": self.lambda_temporal,
            "D_image": 1.0,
            "D_mouth": self.lambda_mouth,
            "D_dynamics": self.lambda_dynamics,
        }


def weighted_total(losses: Mapping[str, torch.Tensor], weights: LossWeights | None = None) -> torch.Tensor:
    """``sum_k weight(k) * losses[k]`` over named scalar losses (names in
    :meth:`LossWeights.table`). Raises :class:`FaceflowError` on an unknown name, an empty dict,
    a non-scalar loss, or generator (``G_*``) and discriminator (``D_*``) terms mixed. Returns ()."""
    weights = LossWeights() if weights is None else weights
    table = weights.table()
    if not losses:
        raise FaceflowError("weighted_total: no losses given")
    unknown = sorted(k for k in losses if k not in table)
    if unknown:
        raise FaceflowError(f"weighted_total: unknown loss name(s) {unknown}; known: {sorted(table)}")
    kinds = {k[0] for k in losses}
    if len(kinds) > 1:
        raise FaceflowError(f"weighted_total: generator (G_*) and discriminator (D_*) losses mixed: {sorted(losses)}")
    total = None
    for k, v in losses.items():
        if not isinstance(v, torch.Tensor) or v.numel() != 1:
            raise FaceflowError(f"weighted_total: loss {k!r} must be a scalar tensor")
        term = table[k] * v.reshape(())
        total = term if total is None else total + term
    return total
