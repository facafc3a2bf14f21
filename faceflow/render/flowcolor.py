"""Colour coding of 2D and 3D flow fields (thesis Sec. 6.3.3).

- 2D flow: a colour wheel. Direction is hue (image axes, y pointing down: flow to the right is
  red, down is yellow-green, left cyan, up blue-violet), magnitude is colour intensity
  (saturation); no motion is white.
- 3D flow: spherical coordinates mapped to HSV. theta (azimuth of the x-y part, same wheel as
  2D) -> hue, phi (polar angle from the +z axis, into the screen, in [0, pi]) -> saturation
  (phi / pi), r (magnitude) -> value; no motion is black.

Magnitudes are divided by ``max_magnitude``; pass the same value (e.g. from
:func:`shared_max_magnitude`) to make several pairs comparable.
"""

from __future__ import annotations

import numpy as np


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; h in [0, 1) (turns), s and v in [0, 1]. Returns (..., 3) floats."""
    h6 = (np.mod(h, 1.0) * 6.0)
    k = np.stack([np.mod(5.0 + h6, 6.0), np.mod(3.0 + h6, 6.0), np.mod(1.0 + h6, 6.0)], -1)
    w = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return v[..., None] * (1.0 - s[..., None] * w)


def shared_max_magnitude(flows, masks=None, percentile: float = 99.0) -> float:
    """One normalisation for several flows: the given percentile of the magnitudes inside the
    masks over all of them (flows (..., C) arrays or tensors; masks boolean, same leading shape)."""
    mags = []
    for i, f in enumerate(flows):
        m = np.linalg.norm(_np(f), axis=-1)
        if masks is not None:
            m = m[_np(masks[i]).astype(bool)]
        mags.append(m.ravel())
    allm = np.concatenate(mags) if mags else np.zeros(0)
    if allm.size == 0:
        return 1.0
    return float(max(np.percentile(allm, percentile), 1e-6))


def flow2d_to_rgb(flow, mask=None, max_magnitude: float | None = None) -> np.ndarray:
    """2D flow (..., H, W, 2) (or 3D flow, whose x, y are used) -> uint8 RGB (..., H, W, 3).

    Pixels outside ``mask`` are white (no motion). ``max_magnitude`` defaults to this flow's
    99th percentile magnitude.
    """
    f = _np(flow)[..., :2]
    if max_magnitude is None:
        max_magnitude = shared_max_magnitude([f], None if mask is None else [mask])
    mag = np.linalg.norm(f, axis=-1)
    hue = np.mod(np.arctan2(f[..., 1], f[..., 0]) / (2 * np.pi), 1.0)
    sat = np.clip(mag / max_magnitude, 0.0, 1.0)
    if mask is not None:
        sat = np.where(_np(mask).astype(bool), sat, 0.0)
    rgb = hsv_to_rgb(hue, sat, np.ones_like(sat))
    return np.round(rgb * 255).astype(np.uint8)


def flow3d_to_rgb(flow, mask=None, max_magnitude: float | None = None) -> np.ndarray:
    """3D flow (..., H, W, 3) -> uint8 RGB (..., H, W, 3); black = no motion (and background)."""
    f = _np(flow)
    if max_magnitude is None:
        max_magnitude = shared_max_magnitude([f], None if mask is None else [mask])
    r = np.linalg.norm(f, axis=-1)
    theta = np.mod(np.arctan2(f[..., 1], f[..., 0]) / (2 * np.pi), 1.0)
    phi = np.arccos(np.clip(f[..., 2] / np.maximum(r, 1e-12), -1.0, 1.0))
    val = np.clip(r / max_magnitude, 0.0, 1.0)
    if mask is not None:
        val = np.where(_np(mask).astype(bool), val, 0.0)
    rgb = hsv_to_rgb(theta, phi / np.pi, val)
    return np.round(rgb * 255).astype(np.uint8)


def colour_wheel(size: int = 128) -> np.ndarray:
    """Legend for :func:`flow2d_to_rgb`: (size, size, 3) uint8, centre = no motion, rim = max."""
    c = (np.arange(size) + 0.5 - size / 2) / (size / 2)
    x, y = np.meshgrid(c, c)
    inside = x * x + y * y <= 1.0
    return flow2d_to_rgb(np.stack([x, y], -1), mask=inside, max_magnitude=1.0)
