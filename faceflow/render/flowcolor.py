"""Colour coding of 2D and 3D flow fields (thesis Sec. 6.3.3).

- 2D flow: a colour wheel. Direction is hue (image axes, y pointing down: flow to the right is
  red, down is yellow-green, left cyan, up blue-violet), magnitude is colour intensity
  (saturation); no motion is white.
- 3D flow: spherical coordinates mapped to HSV. theta (azimuth of the x-y part, same wheel as
  2D) -> hue, phi (polar angle from the +z axis, into the screen, in [0, pi]) -> saturation
  (phi / pi), r (magnitude) -> value; no motion is black.

Magnitudes are divided by ``max_magnitude`` (the colour saturates there); pass the same value
(e.g. from :func:`shared_max_magnitude`, or a fixed one) to make several pairs comparable.
Magnitudes below ``min_magnitude`` render as "no motion", so that the sub-pixel noise of a
still face does not show as amplified speckle when the scale is small.
:mod:`faceflow.render.figures` draws the legends of both codes.
"""

from __future__ import annotations

import numpy as np


def _np(x, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _in_mask_box(code, flow, mask, background: int, **kw) -> np.ndarray | None:
    """``code`` run on the bounding box of ``mask`` only, the rest ``background`` (a single flow
    (H, W, C) with a mask (H, W): the colours are the same, the work is the face's box); None
    for other shapes."""
    f = _np(flow, np.float32)
    if mask is None or f.ndim != 3:
        return None
    m = _np(mask, bool)
    if m.shape != f.shape[:2]:
        return None
    out = np.full(f.shape[:2] + (3,), background, np.uint8)
    rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    if len(rows):
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        out[box] = code(f[box], m[box], **kw)
    return out


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB; h in [0, 1) (turns), s and v in [0, 1]. Returns (..., 3) floats."""
    h6 = np.mod(h, 1.0) * 6.0
    k = np.mod(h6[..., None] + np.asarray([5.0, 3.0, 1.0], h6.dtype), 6.0)
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


def nice_scale(x: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is >= x (> 0): a colour scale that reads."""
    x = float(x)
    if not np.isfinite(x) or x <= 0:
        return 1.0
    k = np.floor(np.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10 ** k >= x * (1 - 1e-9):
            return float(m * 10 ** k)
    return float(10 ** (k + 1))


def _motion_mask(mag: np.ndarray, mask, min_magnitude: float) -> np.ndarray:
    """Where a pixel shows motion: inside ``mask`` and at least ``min_magnitude``."""
    keep = mag >= float(min_magnitude) if min_magnitude > 0 else np.ones(mag.shape, bool)
    return keep if mask is None else keep & _np(mask, bool)


def flow2d_to_rgb(flow, mask=None, max_magnitude: float | None = None, min_magnitude: float = 0.0) -> np.ndarray:
    """2D flow (..., H, W, 2) (or 3D flow, whose x, y are used) -> uint8 RGB (..., H, W, 3).

    Pixels outside ``mask`` and motion below ``min_magnitude`` are white (no motion).
    ``max_magnitude`` (where the colour saturates) defaults to this flow's 99th percentile magnitude.
    """
    f = _np(flow, np.float32)[..., :2]
    if max_magnitude is None:
        max_magnitude = shared_max_magnitude([f], None if mask is None else [mask])
    boxed = _in_mask_box(_flow2d_rgb, f, mask, 255, max_magnitude=max_magnitude, min_magnitude=min_magnitude)
    return boxed if boxed is not None else _flow2d_rgb(f, mask, max_magnitude, min_magnitude)


def _flow2d_rgb(f: np.ndarray, mask, max_magnitude: float, min_magnitude: float) -> np.ndarray:
    mag = np.sqrt((f * f).sum(-1))
    hue = np.mod(np.arctan2(f[..., 1], f[..., 0]) / np.float32(2 * np.pi), 1.0)
    sat = np.clip(mag / np.float32(max_magnitude), 0.0, 1.0)
    mask = _motion_mask(mag, mask, min_magnitude) if (mask is not None or min_magnitude > 0) else None
    if mask is not None:
        sat = np.where(mask, sat, np.float32(0))
    rgb = hsv_to_rgb(hue, sat, np.ones_like(sat))
    return np.round(rgb * 255).astype(np.uint8)


def flow3d_to_rgb(flow, mask=None, max_magnitude: float | None = None, min_magnitude: float = 0.0) -> np.ndarray:
    """3D flow (..., H, W, 3) -> uint8 RGB (..., H, W, 3); black = no motion (below
    ``min_magnitude``, and the background outside ``mask``); the value saturates at ``max_magnitude``."""
    f = _np(flow, np.float32)
    if max_magnitude is None:
        max_magnitude = shared_max_magnitude([f], None if mask is None else [mask])
    boxed = _in_mask_box(_flow3d_rgb, f, mask, 0, max_magnitude=max_magnitude, min_magnitude=min_magnitude)
    return boxed if boxed is not None else _flow3d_rgb(f, mask, max_magnitude, min_magnitude)


def _flow3d_rgb(f: np.ndarray, mask, max_magnitude: float, min_magnitude: float) -> np.ndarray:
    r = np.sqrt((f * f).sum(-1))
    theta = np.mod(np.arctan2(f[..., 1], f[..., 0]) / np.float32(2 * np.pi), 1.0)
    phi = np.arccos(np.clip(f[..., 2] / np.maximum(r, np.float32(1e-12)), -1.0, 1.0))
    val = np.clip(r / np.float32(max_magnitude), 0.0, 1.0)
    mask = _motion_mask(r, mask, min_magnitude) if (mask is not None or min_magnitude > 0) else None
    if mask is not None:
        val = np.where(mask, val, np.float32(0))
    rgb = hsv_to_rgb(theta, phi / np.float32(np.pi), val)
    return np.round(rgb * 255).astype(np.uint8)


def colour_wheel(size: int = 128) -> np.ndarray:
    """Legend for :func:`flow2d_to_rgb`: (size, size, 3) uint8, centre = no motion, rim = max."""
    c = (np.arange(size) + 0.5 - size / 2) / (size / 2)
    x, y = np.meshgrid(c, c)
    inside = x * x + y * y <= 1.0
    return flow2d_to_rgb(np.stack([x, y], -1), mask=inside, max_magnitude=1.0)
