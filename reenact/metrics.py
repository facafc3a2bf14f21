"""APD, the average pixel distance of Head2Head++ ("average pixel distance", thesis ch. 7): the
one implementation, used by training's validation (:mod:`reenact.task`), ``reenact run``'s
score against the held-out frames (:mod:`reenact.run`) and the self-reenactment tables
(:mod:`evaluation.self_reenact_metrics`, whose numpy ``apd`` wraps this one).

It lives in :mod:`reenact`, the lowest package that uses it: faceflow (the 3D flow) and vid2vid
(the networks) never score a generated frame against a real one.
"""
from __future__ import annotations

import torch

__all__ = ["pixel_distance", "apd"]


def pixel_distance(fake: torch.Tensor, real: torch.Tensor, dim: int = -3, scale: float = 1.0) -> torch.Tensor:
    """Per-pixel ``||scale * (fake - real)||_2`` over the colour channels at ``dim``.

    fake, real: the same shape, e.g. (..., 3, H, W) with ``dim=-3`` or (T, H, W, 3) with
    ``dim=-1``; computed in float64 when either is float64, else in float32. ``scale`` brings
    the values to 0-255 (127.5 for images in [-1, 1], 1 for 0-255). Returns the shape without
    ``dim``, e.g. (..., H, W).
    """
    dtype = torch.float64 if torch.float64 in (fake.dtype, real.dtype) else torch.float32
    return ((fake.to(dtype) - real.to(dtype)) * scale).norm(dim=dim)


def apd(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None = None, *, dim: int = -3,
        scale: float = 127.5) -> torch.Tensor:
    """Average pixel distance: the mean over pixels of :func:`pixel_distance` (RGB L2 on 0-255).

    fake, real (..., 3, H, W) in [-1, 1] by default (``dim``, ``scale``: see
    :func:`pixel_distance`, e.g. ``dim=-1, scale=1`` for (T, H, W, 3) on 0-255). ``mask``
    restricts the mean to its pixels (MAPD): the distance's shape (..., H, W), or with a size-1
    channel axis at ``dim`` (..., 1, H, W); nonzero = inside. An empty mask gives 0. Returns a
    0-dim tensor.
    """
    d = pixel_distance(fake, real, dim, scale)
    if mask is None:
        return d.mean()
    m = mask.squeeze(dim) if mask.dim() == fake.dim() else mask
    m = m.to(d.dtype)
    return (d * m).sum() / m.sum().clamp_min(1.0)
