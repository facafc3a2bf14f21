"""Sampling an image at pixel coordinates: the project's one door to ``grid_sample``.

Convention (the whole project's): pixel (i, j) of an (H, W) image covers [j, j + 1) x [i, i + 1)
and is centred at (x, y) = (j + 0.5, i + 0.5), x right, y down, in pixels. ``grid_sample`` with
``align_corners=False`` maps the normalised coordinate -1 to the image's left edge x = 0 and +1
to its right edge x = W, so the conversion ``x_norm = 2 x / W - 1`` (and ``2 y / H - 1``) is exact
for this convention: sampling at a pixel centre returns that pixel.

    pixel_centres(h, w)            (1, h, w, 2) the centres (x, y) of an (h, w) grid
    to_grid(xy, height, width)     pixels -> normalised coordinates of a (height, width) image
    sample(image, xy)              image (B, C, H, W) at xy (B, h, w, 2) pixels -> (B, C, h, w)
    sample_points(image, xy)       image (B, C, H, W) at xy (B, N, 2) pixels -> (B, N, C)
    affine_grid(theta, h, w)       (N, h, w, 2) normalised grid of an affine map, exact in float64
    sample_normalised(image, grid) the raw call, for grids already normalised (``affine_grid``)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pixel_centres", "to_grid", "sample", "sample_points", "affine_grid", "sample_normalised"]


def pixel_centres(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, h, w, 2) pixel-centre coordinates: ``[0, i, j] = (j + 0.5, i + 0.5)``."""
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).unsqueeze(0)


def to_grid(xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates xy (..., 2) of an image (height, width) -> ``grid_sample`` coordinates
    (..., 2) for ``align_corners=False``: ``(2 x / width - 1, 2 y / height - 1)``, computed in
    xy's own dtype (float64 stays float64; cast afterwards)."""
    return torch.stack([2 * xy[..., 0] / width - 1, 2 * xy[..., 1] / height - 1], -1)


def sample_normalised(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear",
                      padding_mode: str = "border") -> torch.Tensor:
    """``grid_sample(image, grid, align_corners=False)``: image (B, C, H, W), grid (B, h, w, 2) in
    normalised coordinates (cast to image's dtype). Returns (B, C, h, w)."""
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode=padding_mode, align_corners=False)


def sample(image: torch.Tensor, xy: torch.Tensor, mode: str = "bilinear",
           padding_mode: str = "border") -> torch.Tensor:
    """Sample image (B, C, H, W) at pixel coordinates xy (B, h, w, 2) (x, y; pixel centres at
    j + 0.5, i + 0.5). ``mode``: bilinear / nearest / bicubic; ``padding_mode`` (outside the
    image): border / zeros / reflection. Returns (B, C, h, w) in image's dtype; the
    normalisation is done in xy's dtype before the cast."""
    H, W = image.shape[-2:]
    return sample_normalised(image, to_grid(xy, H, W), mode, padding_mode)


def sample_points(image: torch.Tensor, xy: torch.Tensor, mode: str = "bilinear",
                  padding_mode: str = "border") -> torch.Tensor:
    """Sample image (B, C, H, W) at N points xy (B, N, 2) pixels. Returns (B, N, C)."""
    B, N = xy.shape[:2]
    return sample(image, xy.reshape(B, 1, N, 2), mode, padding_mode)[:, :, 0].transpose(1, 2)


def affine_grid(theta: torch.Tensor, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    """Normalised sampling grid (N, h, w, 2) of an affine map ``theta`` (N, 2, 3) from normalised
    output coordinates (align_corners=False: output pixel centre j -> (2 j + 1) / w - 1) to
    normalised input coordinates, as ``F.affine_grid`` but exact for large outputs.

    The grid is affine in (column, row), so it is built as a per-column plus a per-row term, each
    computed in theta's dtype (float64 for exactness) and cast to ``dtype`` before the (N, h, w)
    sum: no (N, h, w) float64 array is ever held, which keeps 8k outputs memory-light."""
    u = (torch.arange(w, dtype=theta.dtype, device=theta.device) * 2 + 1) / w - 1
    v = (torch.arange(h, dtype=theta.dtype, device=theta.device) * 2 + 1) / h - 1
    cols = (theta[:, :, None, 0] * u).to(dtype).transpose(1, 2)  # (N, w, 2)
    rows = (theta[:, :, None, 1] * v + theta[:, :, None, 2]).to(dtype).transpose(1, 2)  # (N, h, 2)
    return rows[:, :, None, :] + cols[:, None, :, :]
