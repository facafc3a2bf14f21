"""Accuracy metrics of DeepFaceFlow's networks, shared by training's validation
(:mod:`faceflow.engine.dff_tasks`) and the benchmarks (:mod:`evaluation.flow_benchmark`,
:mod:`evaluation.meshreg_benchmark`).

- flow: the end-point error ||F - F_gt||_2 over the ground-truth mask (3D, or its x, y part),
  summed per pair (:func:`endpoint_errors`) or averaged (:func:`aepe`): DeepFaceFlow's AEPE
  (Tables 1 and 2);
- 3DMeshReg: the mean vertex distance of a regressed mesh to the ground truth
  (:func:`vertex_errors`), in 3D and in x, y.
"""
from __future__ import annotations

import torch

from faceflow.errors import FaceflowError


def endpoint_errors(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, dims: int = 3
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair sums of the end-point error over the mask, and the mask counts.

    pred, gt (B, H, W, 3) flows in pixels; mask (B, H, W) bool; ``dims`` 3 (x, y, z) or 2
    (x, y). Off-mask values are ignored whatever they are (NaN included). Returns sums (B,)
    float64 and counts (B,) int64, on the CPU; the AEPE of pair b is ``sums[b] / counts[b]``.
    """
    if dims not in (2, 3):
        raise FaceflowError(f"dims must be 2 or 3, got {dims}")
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[-1] != 3:
        raise FaceflowError(f"pred and gt must both be (B, H, W, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    m = mask.bool().to(pred.device)
    if m.shape != pred.shape[:3]:
        raise FaceflowError(f"mask must be {tuple(pred.shape[:3])}, got {tuple(mask.shape)}")
    d = (pred[..., :dims].double() - gt[..., :dims].to(pred.device).double()).norm(dim=-1)
    d = torch.where(m, d, torch.zeros_like(d))
    return d.sum((1, 2)).cpu(), m.sum((1, 2)).cpu()


def aepe(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, dims: int = 3, average: str = "pixels") -> float:
    """Average end-point error over the masked pixels of a batch (B, H, W, 3).

    ``average='pixels'``: over all masked pixels of all pairs pooled; ``'pairs'``: the mean
    of the per-pair means (pairs with an empty mask are left out). NaN when nothing is masked.
    """
    s, n = endpoint_errors(pred, gt, mask, dims)
    if average == "pixels":
        return float(s.sum() / n.sum()) if n.sum() > 0 else float("nan")
    if average == "pairs":
        ok = n > 0
        return float((s[ok] / n[ok]).mean()) if ok.any() else float("nan")
    raise FaceflowError(f"average must be 'pixels' or 'pairs', got {average!r}")


def vertex_errors(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mesh mean vertex distance of ``pred`` to ``gt`` (B, V, 3), in 3D and in x, y:
    two (B,) tensors on the inputs' device, in the meshes' units (template pixels)."""
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 3:
        raise FaceflowError(f"pred and gt must both be (B, V, 3), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    d = pred - gt.to(pred.device)
    return d.norm(dim=-1).mean(-1), d[..., :2].norm(dim=-1).mean(-1)


__all__ = ["endpoint_errors", "aepe", "vertex_errors"]
