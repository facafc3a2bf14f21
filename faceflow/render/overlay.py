"""Drawing fitted meshes and landmarks over images, for previews and visual checks."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from faceflow.render.rasterize import signed_area

SHIFT = 2  # cv2 sub-pixel bits: coordinates in quarter pixels


def _cv_points(xy: np.ndarray) -> np.ndarray:
    """Our continuous (x, y) (pixel centres at +0.5) -> cv2 fixed-point coordinates."""
    return np.round((np.asarray(xy, np.float64) - 0.5) * (1 << SHIFT)).astype(np.int32)


def draw_wireframe(image: np.ndarray, verts: np.ndarray, triangles: np.ndarray, *, alpha: float = 0.4,
                   colour=(80, 255, 80)) -> np.ndarray:
    """The front-facing triangles of an image-space mesh, verts (V, >=2) pixels and triangles
    (F, 3), drawn over an RGB uint8 image (H, W, 3), blended with weight ``alpha``. Returns a new image."""
    verts = np.asarray(verts)
    tri = np.asarray(triangles)
    front = (signed_area(torch.from_numpy(verts[tri][..., :2].astype(np.float64))) < 0).numpy()
    wire = np.ascontiguousarray(image).copy()
    cv2.polylines(wire, list(_cv_points(verts[tri[front], :2])), True, colour, 1, cv2.LINE_AA, shift=SHIFT)
    return cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, wire, alpha, 0)


def draw_points(image: np.ndarray, points: np.ndarray, *, radius: float = 1.5, colour=(255, 40, 40)) -> np.ndarray:
    """Filled discs at points (N, 2) pixels over an RGB uint8 image; returns a new image."""
    out = np.ascontiguousarray(image).copy()
    for p in _cv_points(points):
        cv2.circle(out, (int(p[0]), int(p[1])), int(round(radius * (1 << SHIFT))), colour, -1, cv2.LINE_AA,
                   shift=SHIFT)
    return out
