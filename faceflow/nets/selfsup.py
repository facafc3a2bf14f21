"""Self-supervised flow losses for real video pairs, whose only ground truth is a smooth model fit.

The pseudo ground truth of a real pair (the annotation tool's 3DMM fits) is smooth: it cannot show
a cheek that moves differently from the fitted blendshapes, and I2 warped by it matches I1 worse
than by OpenCV's DIS (README, flow tables). The images themselves say more about the 2D flow:

- **census data term** (robust to lighting): each pixel's 7x7 neighbourhood is described by the
  soft signs of its grey-level differences to the centre, ``d / sqrt(0.81 + d^2)`` (grey in 0-255),
  so a brightness or contrast change between the frames leaves it unchanged; the distance of two
  descriptors is ``sum (t1 - t2)^2 / (0.1 + (t1 - t2)^2)`` over the 49 neighbours, and the loss is
  its robust mean ``(dist^2 + 1e-6)^0.45 - 1e-6^0.45`` over the pixels of I1 whose moved point is visible in
  I2 -- occlusion-masked through the PNCC warping of eq. (5) (:func:`faceflow.nets.warp.warp_by_flow`).
  This is the ternary census loss of unsupervised optical flow (UnFlow, Meister et al. 2018).
- **edge-aware smoothness**: the robust first difference of each flow channel between neighbouring
  face pixels, down-weighted across image edges by ``exp(-10 |grad I1|)``;
- optionally an **RGB photometric term** (``photo_weight``): the robust mean absolute difference
  of I1 and the warped I2 (0-255) on the same valid pixels. Census ignores lighting changes but
  also the colour and the exact grey levels; this term is the error the photometric check of the
  benchmark measures (README, "Photometric check").

Neither constrains the depth flow z: real pairs keep a (down-weighted) end-point term to their
pseudo ground truth for it (:class:`faceflow.engine.dff_tasks.DFFNetTask`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from faceflow.nets.warp import warp_by_flow

__all__ = ["census_descriptor", "census_distance", "smoothness", "self_supervised_loss"]

_LUMA = (0.299, 0.587, 0.114)


def _grey255(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 1, H, W) grey level in 0-255."""
    w = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True) * 255.0


def census_descriptor(images: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Soft ternary census of ``images`` (B, 3, H, W) in [0, 1]: (B, window^2, H, W), each
    channel ``d / sqrt(0.81 + d^2)`` of the grey difference d to one neighbour (edges replicated)."""
    g = _grey255(images)
    B, _, H, W = g.shape
    r = window // 2
    patches = F.unfold(F.pad(g, (r, r, r, r), mode="replicate"), window).view(B, window * window, H, W)
    d = patches - g
    return d / torch.sqrt(0.81 + d * d)


def census_distance(t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """Soft Hamming distance (B, H, W) of two census descriptors (B, K, H, W)."""
    sq = (t1 - t2) ** 2
    return (sq / (0.1 + sq)).sum(1)


def _robust(x: torch.Tensor, q: float = 0.45) -> torch.Tensor:
    """Generalised Charbonnier ``(x^2 + 1e-6)^q``, shifted to be 0 at x = 0."""
    return (x * x + 1e-6) ** q - 1e-6 ** q


def smoothness(flow: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, edge: float = 10.0) -> torch.Tensor:
    """Edge-aware first-order smoothness of ``flow`` (B, C, H, W) over pairs of horizontally or
    vertically adjacent pixels both in ``mask`` (B, H, W) bool, weighted by
    ``exp(-edge * mean_c |I(p) - I(q)|)`` of ``image`` (B, 3, H, W) in [0, 1]. Scalar."""
    m = mask.unsqueeze(1).to(flow.dtype)
    total, count = flow.new_zeros(()), flow.new_zeros(())
    for dim in (2, 3):
        n = flow.shape[dim] - 1
        df = flow.narrow(dim, 1, n) - flow.narrow(dim, 0, n)
        di = (image.narrow(dim, 1, n) - image.narrow(dim, 0, n)).abs().mean(1, keepdim=True)
        both = m.narrow(dim, 1, n) * m.narrow(dim, 0, n)
        w = torch.exp(-edge * di) * both
        total = total + (_robust(df) * w).sum()
        count = count + both.sum() * flow.shape[1]
    return total / count.clamp_min(1.0)


def self_supervised_loss(flow: torch.Tensor, i1: torch.Tensor, i2: torch.Tensor, pncc_points: torch.Tensor,
                         mask: torch.Tensor, smooth_weight: float = 0.5, photo_weight: float = 0.0
                         ) -> tuple[torch.Tensor, dict]:
    """Census data term + ``smooth_weight`` x smoothness (+ ``photo_weight`` x the RGB photometric
    term) of a 3D flow (B, 3, H, W) in pixels
    (F = p2 - p1) for I1, I2 (B, 3, H, W) in [0, 1], I1's image-space points (B, H, W, 3) (NaN
    where none) and face ``mask`` (B, H, W) bool.

    Returns ``(total, {"census", "smooth", "photo", "valid_fraction"})``. I2 is warped into I1's frame with
    the flow (bilinear, occlusion-aware) and both are described in I1's frame; only valid pixels
    (on the face, moved into the image, not occluded) enter the data term."""
    warped, valid = warp_by_flow(i2, pncc_points, flow.permute(0, 2, 3, 1), mask, occlusion=True)
    dist = census_distance(census_descriptor(i1), census_descriptor(warped))
    v = valid.to(flow.dtype)
    census = (_robust(dist) * v).sum() / v.sum().clamp_min(1.0)
    smooth = smoothness(flow, i1, mask)
    photo = (_robust((i1 - warped).abs().mean(1) * 255.0) * v).sum() / v.sum().clamp_min(1.0)
    frac = v.sum() / mask.to(flow.dtype).sum().clamp_min(1.0)
    total = census + smooth_weight * smooth + (photo_weight * photo if photo_weight else 0.0)
    return total, {"census": census, "smooth": smooth, "photo": photo, "valid_fraction": frac.detach()}
