"""Differentiable, occlusion-aware warping W of DeepFaceFlow's flow loss, eq. (5).

DFFNet's photometric term of eq. (5) is ``alpha || I1 - W(F, PNCC; I2) ||^2``: every face
point p seen at an I1 pixel (recovered from the PNCC image, eq. (3), with
:func:`faceflow.render.pncc.pncc_to_points`) is moved by its 3D flow, ``p2 = p + F``
(F = p2 - p1 as in :mod:`faceflow.render.flow`), and I2 is sampled bilinearly at p2's
image position (backward warping of I2 into I1's frame).

Conventions: image-space points (x, y, z) in pixels, pixel (i, j) centred at
(j + 0.5, i + 0.5), y down, smaller z = nearer the camera. Sampling goes through
:func:`faceflow.ops.sampling.sample`, exact for this pixel-centre convention.

Occlusion: a moved point is hidden in I2 when another moved face point lands on the same I2
pixel nearer to the camera. A z-buffer of the moved points is built on I2's pixel grid
(``scatter_reduce`` amin, each point splatted to the up-to-4 pixels whose centres surround it,
i.e. its bilinear footprint, so a stretched near surface leaves no holes), and a point is
visible when its depth is within ``z_tolerance`` of the z-buffer at its nearest pixel.
"""

from __future__ import annotations

import torch

from faceflow.errors import FaceflowError
from faceflow.ops.sampling import sample

__all__ = ["warp_by_flow", "moved_zbuffer"]


def _check(image2, pncc_points, flow, mask) -> None:
    for name, t in (("image2", image2), ("pncc_points", pncc_points), ("flow", flow), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise FaceflowError(f"warp_by_flow: {name} must be a torch tensor, got {type(t).__name__}")
    if image2.dim() != 4 or image2.numel() == 0:
        raise FaceflowError(f"warp_by_flow: image2 must be a non-empty (B, C, H, W) tensor, got {tuple(image2.shape)}")
    B, _, H, W = image2.shape
    for name, t in (("pncc_points", pncc_points), ("flow", flow)):
        if tuple(t.shape) != (B, H, W, 3):
            raise FaceflowError(f"warp_by_flow: {name} must be (B, H, W, 3) = {(B, H, W, 3)}, got {tuple(t.shape)}")
    if tuple(mask.shape) != (B, H, W):
        raise FaceflowError(f"warp_by_flow: mask must be (B, H, W) = {(B, H, W)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise FaceflowError(f"warp_by_flow: mask must be bool, got {mask.dtype}")
    for name, t in (("image2", image2), ("pncc_points", pncc_points), ("flow", flow)):
        if not t.is_floating_point():
            raise FaceflowError(f"warp_by_flow: {name} must be floating point, got {t.dtype}")


def moved_zbuffer(points: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Z-buffer of points (B, N, 3) (image space, pixels) on a (H, W) pixel grid.

    Only points with ``valid`` (B, N) count; each is splatted (amin of z) to the 4 pixels whose
    centres surround its (x, y) (those with a non-zero bilinear weight: a point exactly on a
    pixel centre marks that pixel only). Returns (B, H, W), +inf where nothing landed.
    Not differentiable (a visibility test only).
    """
    H, W = size
    B, N, _ = points.shape
    p = points.detach()
    z = p[..., 2]
    fx, fy = torch.floor(p[..., 0] - 0.5), torch.floor(p[..., 1] - 0.5)
    x0, y0 = fx.long(), fy.long()
    # the second neighbour only when its bilinear weight is > 0 (a point exactly on a pixel
    # centre marks that pixel alone)
    has = {(0, 0): valid, (0, 1): valid & (p[..., 0] - 0.5 > fx),
           (1, 0): valid & (p[..., 1] - 0.5 > fy)}
    has[(1, 1)] = has[(0, 1)] & has[(1, 0)]
    zbuf = torch.full((B, H * W), float("inf"), dtype=p.dtype, device=p.device)
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            ok = has[(dy, dx)] & (xi >= 0) & (xi < W) & (yi >= 0) & (yi < H)
            idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1))
            zz = torch.where(ok, z, torch.full_like(z, float("inf")))
            zbuf.scatter_reduce_(1, idx, zz, reduce="amin", include_self=True)
    return zbuf.view(B, H, W)


def warp_by_flow(image2: torch.Tensor, pncc_points: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor, *,
                 occlusion: bool = True, z_tolerance: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp I2 into I1's frame with a 3D flow: W(F, PNCC; I2) of eq. (5).

    image2 (B, C, H, W) floating; pncc_points (B, H, W, 3) the image-space points seen at I1's
    pixels (pixels, z smaller = nearer); flow (B, H, W, 3) in pixels (F = p2 - p1); mask (B, H, W)
    bool face pixels of I1. Returns ``warped`` (B, C, H, W) = I2 sampled bilinearly at
    (p + F)_xy, zero where not valid, and ``valid`` (B, H, W) bool = mask & the moved point lies
    in the image (0 <= x <= W, 0 <= y <= H; border-replicated within half a pixel of the edge)
    & (when ``occlusion``) it is not hidden by a nearer moved point (z <= zbuffer + z_tolerance,
    z_tolerance in pixels of depth). Differentiable w.r.t. image2 and the x, y of flow and
    pncc_points where valid.
    """
    _check(image2, pncc_points, flow, mask)
    B, C, H, W = image2.shape
    p2 = pncc_points.to(flow.dtype) + flow  # eq. (5): points moved into I2
    x, y = p2[..., 0], p2[..., 1]
    with torch.no_grad():
        finite = torch.isfinite(p2).all(-1)
        inside = finite & (x >= 0) & (x <= W) & (y >= 0) & (y <= H)
        valid = mask & inside
        if occlusion:
            zbuf = moved_zbuffer(p2.reshape(B, H * W, 3), valid.reshape(B, H * W), (H, W))
            xi = torch.floor(x).long().clamp(0, W - 1)
            yi = torch.floor(y).long().clamp(0, H - 1)
            zb = zbuf.view(B, H * W).gather(1, (yi * W + xi).view(B, H * W)).view(B, H, W)
            valid = valid & (p2[..., 2] <= zb + z_tolerance)
    # exact pixel-centre convention for align_corners=False; non-valid points sample anything
    safe = torch.where(valid.unsqueeze(-1), p2[..., :2], torch.zeros_like(p2[..., :2]))
    sampled = sample(image2, safe, mode="bilinear", padding_mode="border")
    warped = sampled * valid.unsqueeze(1).to(sampled.dtype)
    return warped, valid
