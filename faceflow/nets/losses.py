"""DFFNet's training loss, eq. (5) of DeepFaceFlow (CVPR 2020, Sec. 4.2):

    L = sum_i w_i * EPE_i(F_i, F_gt)  +  alpha * || I1 - W(F, PNCC; I2) ||^2

- ``EPE_i``: masked mean end-point error (L2 norm over the 3 flow channels dx, dy, dz) of the
  prediction at scale i, compared at the prediction's own resolution. The ground truth
  (B, H, W, 3) is downsampled with a *masked* average (adaptive average pooling of ``gt * mask``
  divided by that of ``mask``), so background zeros never bias the face cells, and each coarse
  cell is weighted by its face fraction (pooled mask): the loss averages face pixels only.
  All predictions are in full-resolution pixel units (see :mod:`faceflow.nets.dffnet`), so the
  ground truth is not rescaled.
- the photometric term: I2 is backward-warped into I1's frame with the finest prediction,
  :func:`faceflow.nets.warp.warp_by_flow` (occlusion-aware), and the squared colour error
  (summed over channels) is averaged over the valid pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from faceflow.errors import FaceflowError
from faceflow.nets.warp import warp_by_flow


def default_scale_weights(n: int) -> list[float]:
    """w_i for ``n`` predictions: 1 at every scale, as in the paper (Sec. 5.2b). Every scale's
    EPE is in full-resolution pixels, so the coarse scales (which only the correlation path can
    get right) weigh as much as the fine ones; this is also what makes training start: with
    weights decaying toward the coarse scales, a short CPU run learnt to predict ~0 everywhere."""
    return [1.0] * n


def masked_downsample(gt: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked average of ``gt`` (B, C, H, W) over ``mask`` (B, 1, H, W) float onto ``size``.

    Returns (gt_small (B, C, h, w), face fraction (B, 1, h, w) in [0, 1]); gt_small is 0 where
    the fraction is 0. Identity when ``size == (H, W)``."""
    if tuple(gt.shape[-2:]) == tuple(size):
        return gt * mask, mask
    frac = F.adaptive_avg_pool2d(mask, size)
    s = F.adaptive_avg_pool2d(gt * mask, size)
    return torch.where(frac > 0, s / frac.clamp_min(1e-12), torch.zeros_like(s)), frac


def masked_epe(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor,
               pair_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean end-point error of ``pred`` (B, 3, h, w) against ``gt`` (B, 3, H, W) with face
    ``mask`` (B, 1, H, W) float; gt already zeroed outside the mask. Scalar; 0 for an empty mask.
    ``pair_weights`` (B,): each pair's pixels count with its weight in the sum (not in the
    normaliser: a pair of weight 0.5 contributes half of its error)."""
    g, w = masked_downsample(gt, mask, tuple(pred.shape[-2:]))
    epe = torch.sqrt(((pred - g) ** 2).sum(1, keepdim=True) + 1e-12)
    num = epe * w if pair_weights is None else epe * w * pair_weights.to(epe).view(-1, 1, 1, 1)
    return num.sum() / w.sum().clamp_min(1e-12)


def flow_loss(preds: list[torch.Tensor], gt: torch.Tensor, mask: torch.Tensor,
              weights: list[float] | None = None, i1: torch.Tensor | None = None,
              i2: torch.Tensor | None = None, pncc_points: torch.Tensor | None = None,
              alpha: float = 10.0, pair_weights: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. (5). ``preds``: DFFNet outputs, list of (B, 3, h_i, w_i) coarse -> fine (full-res pixel
    units); ``gt`` (B, H, W, 3) ground-truth 3D flow in pixels; ``mask`` (B, H, W) face pixels
    (bool or {0, 1}); ``weights`` w_i (default :func:`default_scale_weights`); ``pair_weights``
    (B,) optional weight of each pair in the end-point terms (:func:`masked_epe`).

    The photometric term (``i1``, ``i2`` (B, C, H, W) images, ``pncc_points`` (B, H, W, 3) the
    image-space points of I1's pixels) uses the finest prediction, which must be (B, 3, H, W);
    it is skipped when ``alpha == 0`` or any of i1, i2, pncc_points is None.

    Returns ``(total, parts)``, parts: ``epe_<i>`` per scale, ``epe`` (weighted sum),
    ``photometric`` (unweighted; 0 when skipped).
    """
    if not isinstance(preds, (list, tuple)) or len(preds) == 0:
        raise FaceflowError("flow_loss needs a non-empty list of flow predictions")
    if gt.ndim != 4 or gt.shape[-1] != 3:
        raise FaceflowError(f"flow_loss gt must be (B, H, W, 3), got {tuple(gt.shape)}")
    B, H, W, _ = gt.shape
    if tuple(mask.shape) != (B, H, W):
        raise FaceflowError(f"flow_loss mask must be (B, H, W) = {(B, H, W)}, got {tuple(mask.shape)}")
    for p in preds:
        if p.ndim != 4 or p.shape[0] != B or p.shape[1] != 3:
            raise FaceflowError(f"flow_loss predictions must be (B={B}, 3, h, w), got {tuple(p.shape)}")
    weights = default_scale_weights(len(preds)) if weights is None else list(weights)
    if len(weights) != len(preds):
        raise FaceflowError(f"flow_loss got {len(weights)} weights for {len(preds)} predictions")

    m = (mask > 0) if mask.dtype != torch.bool else mask
    mf = m.unsqueeze(1).to(gt.dtype)
    g = gt.permute(0, 3, 1, 2)
    g = torch.where(mf > 0, g, torch.zeros_like(g))  # ignore (even non-finite) values off the face
    parts: dict[str, torch.Tensor] = {}
    epe_total = gt.new_zeros(())
    for i, (p, w) in enumerate(zip(preds, weights)):
        e = masked_epe(p, g, mf, pair_weights)
        parts[f"epe_{i}"] = e
        epe_total = epe_total + w * e
    parts["epe"] = epe_total

    photo = gt.new_zeros(())
    if alpha != 0 and i1 is not None and i2 is not None and pncc_points is not None:
        fine = preds[-1]
        if tuple(fine.shape[-2:]) != (H, W) or i1.shape != i2.shape or tuple(i1.shape[-2:]) != (H, W):
            raise FaceflowError(f"flow_loss photometric term needs the finest prediction and images at "
                                f"{(H, W)}, got {tuple(fine.shape)}, {tuple(i1.shape)}, {tuple(i2.shape)}")
        warped, valid = warp_by_flow(i2, pncc_points, fine.permute(0, 2, 3, 1), m, occlusion=True)
        v = valid.unsqueeze(1).to(i1.dtype)
        err = ((i1 - warped) ** 2 * v).sum(1)
        photo = err.sum() / v.sum().clamp_min(1.0)
    parts["photometric"] = photo
    return epe_total + alpha * photo, parts
