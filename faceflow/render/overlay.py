"""Drawing fitted meshes and landmarks over images, for previews and visual checks."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from faceflow.render.rasterize import interpolate, rasterize, signed_area

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


def surface_grid(verts: np.ndarray, triangles: np.ndarray, size: tuple[int, int], coords: np.ndarray | None = None,
                 spacing: float = 8.0) -> np.ndarray:
    """Grid lines drawn on the visible surface of an image-space mesh: a (H, W) bool image.

    verts (V, 3) pixels (x right, y down, z depth away from the camera); triangles (F, 3);
    ``coords`` (V, 2): the surface coordinates whose multiples of ``spacing`` are the lines
    (default: the vertices' own x, y, an even grid on the face; pass the first frame's x, y for a
    moved mesh and the grid moves with the surface). Back faces are culled and the nearest
    surface wins, so the lines cover only the visible face, however dense the mesh.
    """
    V = torch.as_tensor(np.asarray(verts, np.float32))[None]
    tris = torch.as_tensor(np.asarray(triangles, np.int64))
    frags = rasterize(V, tris, size, cull_backfaces=True)
    uv = torch.as_tensor(np.asarray(verts if coords is None else coords, np.float32)[:, :2])
    cell = torch.floor(interpolate(uv, tris, frags)[0] / float(spacing)).numpy()
    inside = frags.mask[0].numpy()
    lines = np.zeros(inside.shape, bool)
    for axis in (0, 1):  # a line where the cell index changes between neighbours on the surface
        change = np.any(np.diff(cell, axis=axis) != 0, -1)
        both = np.logical_and(np.take(inside, range(1, inside.shape[axis]), axis),
                              np.take(inside, range(inside.shape[axis] - 1), axis))
        sl = [slice(None), slice(None)]
        sl[axis] = slice(1, None)
        lines[tuple(sl)] |= change & both
    return lines


def draw_surface_grid(image: np.ndarray, verts: np.ndarray, triangles: np.ndarray, *, coords: np.ndarray | None = None,
                      spacing: float | None = None, colour=(80, 255, 80), alpha: float = 0.75) -> np.ndarray:
    """A readable mesh preview: :func:`surface_grid` lines over an RGB uint8 image (H, W, 3),
    blended with weight ``alpha``; ``spacing`` defaults to 1/24 of the mesh's width (about 24
    lines across the face at any image size). Returns a new image."""
    verts = np.asarray(verts, np.float32)
    if spacing is None:
        ref = verts if coords is None else np.asarray(coords, np.float32)
        spacing = max(float(np.ptp(ref[:, 0])) / 24.0, 2.0)
    lines = surface_grid(verts, triangles, image.shape[:2], coords, spacing)
    out = np.ascontiguousarray(image).copy()
    out[lines] = np.round((1 - alpha) * out[lines] + alpha * np.asarray(colour, np.float64)).astype(np.uint8)
    return out
