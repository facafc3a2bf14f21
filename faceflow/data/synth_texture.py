"""Skin textures of the synthetic heads (:mod:`faceflow.data.synthetic`): per-vertex colours
sampled from real frames of the split through their fitted meshes, and the cached texture bank.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from faceflow.data.synth_geometry import HeadGeometry, project_fitted
from faceflow.data.synth_sources import Clip
from faceflow.ops.sampling import sample_points
from faceflow.render import rasterize, vertex_normals


def sample_texture(geom: HeadGeometry, crop: np.ndarray, id_coeffs, exp, rotation, translation, scale, *,
                   min_facing: float = 0.3, depth_tol_cm: float = 0.3, fill_iterations: int = 300):
    """Per-vertex colours of the skin vertices from one real frame through its fitted mesh.

    crop (S, S, 3) uint8; id_coeffs (100,), exp (53,); rotation (3, 3), translation (3,), scale:
    the fitted camera in crop pixels (``p = scale C R S + t``, :mod:`faceflow.geometry.camera`). A vertex
    is seen when it projects inside the crop, faces the camera (normal z < -min_facing) and
    passes the depth test against the rasterised head. Seen vertices get the bilinearly sampled
    colour; the others a smooth fill (neighbour averaging started from the median colour of the
    seen inner-face vertices). Returns colours (num_skin, 3) float32 in [0, 1], seen (num_skin,) bool.
    """

    H, W = crop.shape[:2]
    ns = geom.num_skin
    with torch.no_grad():
        S = geom.shape(torch.as_tensor(np.asarray(id_coeffs, np.float32))[None],
                       torch.as_tensor(np.asarray(exp, np.float32))[None])
        v = project_fitted(S, rotation, translation, scale)  # (1, V, 3) crop pixels
        frags = rasterize(v, geom.triangles, (H, W), cull_backfaces=True)
        n = vertex_normals(v, geom.triangles)[0, :ns]
        p = v[0, :ns]
        col, row = p[:, 0].floor().long(), p[:, 1].floor().long()
        inside = (p[:, 0] >= 0.5) & (p[:, 0] <= W - 0.5) & (p[:, 1] >= 0.5) & (p[:, 1] <= H - 0.5)
        r, c = row.clamp(0, H - 1), col.clamp(0, W - 1)
        tol = depth_tol_cm * float(np.asarray(scale))
        seen = inside & frags.mask[0, r, c] & (p[:, 2] <= frags.depth[0, r, c] + tol) & (n[:, 2] < -min_facing)
        img = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        colours = sample_points(img, p[None, :, :2], mode="bilinear", padding_mode="border")[0].numpy()
    seen = seen.numpy()
    return _smooth_fill(geom, colours.astype(np.float32), seen, fill_iterations), seen


def _smooth_fill(geom: HeadGeometry, colours: np.ndarray, seen: np.ndarray, iterations: int) -> np.ndarray:
    """Unseen vertices: neighbour averaging over the mesh with the seen ones held fixed."""
    face = np.zeros(geom.num_skin, bool)
    face[geom.face_idx.cpu().numpy()] = True
    ref = seen & face if (seen & face).any() else seen
    start = np.median(colours[ref], 0) if ref.any() else np.full(3, 0.6)
    x = np.where(seen[:, None], colours, start[None]).astype(np.float64)
    fixed = x[seen]
    for _ in range(iterations):
        x = geom.adjacency @ x
        x[seen] = fixed
    return np.clip(x, 0, 1).astype(np.float32)


def build_texture_bank(geom: HeadGeometry, clips: list[Clip], count: int, seed: int,
                       progress: bool = False) -> dict[str, np.ndarray]:
    """``count`` skin textures from random frames of ``clips`` (texture j from (seed, j) alone).

    Returns colours (count, num_skin, 3) uint8, seen (count, num_skin) bool, clip (count,) int64
    (index into ``clips``), frame (count,) int64 (kept-frame index).
    """

    cols, seens, cl, fr = [], [], [], []
    for j in tqdm(range(count), desc="textures", unit="tex", disable=not progress):
        rng = np.random.default_rng([seed, 2, j])
        ci = int(rng.integers(len(clips)))
        c = clips[ci]
        f = int(rng.integers(len(c)))
        col, seen = sample_texture(geom, np.asarray(c.crops[f]), c.id, c.exp[f], c.rotation[f], c.translation[f],
                                   c.scale[f])
        cols.append(np.round(col * 255).astype(np.uint8))
        seens.append(seen)
        cl.append(ci)
        fr.append(f)
    return {"colours": np.stack(cols), "seen": np.stack(seens), "clip": np.array(cl, np.int64),
            "frame": np.array(fr, np.int64)}

