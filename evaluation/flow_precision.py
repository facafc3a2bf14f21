"""Precision rows of the flow benchmark: pairs whose flow is known exactly without any model fit.

From any still image with a face (``--stills FILE...``), at the 224x224 registered template of the
still (its 68 landmarks give the image -> template similarity A, as for every benchmark pair):

- **identical**: I2 = I1. The true flow is zero everywhere.
- **in-plane similarity**: I2 is the still moved by a known 2D rigid motion T (a rotation of a few
  degrees about the face centre and a shift of a few pixels, drawn at random from
  ``precision_seed``), registered with I1's transform A. The template pixel q of I1 shows the
  still at A^-1 q, which I2 shows at A T A^-1 q: the true 2D flow is ``A T A^-1 q - q`` and, the
  motion being in the image plane, the true depth flow is 0.

Scored on the face: the convex hull of the 68 landmarks in the template. Per method and kind:
the mean 2D end-point error (for identical pairs: the mean 2D flow magnitude), its 99th
percentile over the face pixels of all pairs, and the mean |z| of 3D methods. Oracle rows that need
the dataset's PNCC (``*_gt_pncc``) have none here and are left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

from faceflow import io as vio
from faceflow.errors import FaceflowError
from faceflow.face.landmarks import MediapipeDetector, NoFaceError, detect_image
from faceflow.face.registration import TEMPLATE_SIZE, register_landmarks, warp_image
from faceflow.geometry.similarity import Similarity
from faceflow.ops.sampling import pixel_centres

__all__ = ["PrecisionPair", "random_motions", "precision_pairs", "face_mask", "score_flow", "evaluate_precision",
           "KINDS"]

KINDS = ("identical", "similarity")


class PrecisionPair:
    """One pair: ``i1``, ``i2`` (3, 224, 224) float in [0, 1], the true 2D flow ``gt`` (224, 224, 2)
    in template pixels, the face ``mask`` (224, 224) bool, its ``kind`` and the ``still``'s name."""

    def __init__(self, still: str, kind: str, i1: torch.Tensor, i2: torch.Tensor, gt: np.ndarray, mask: np.ndarray,
                 motion: dict | None = None):
        self.still, self.kind, self.i1, self.i2, self.gt, self.mask = still, kind, i1, i2, gt, mask
        self.motion = motion or {}


def random_motions(n: int, seed: int, centre, max_shift: float = 4.0, max_angle: float = 3.0) -> list[Similarity]:
    """``n`` rigid 2D motions of the image plane: a rotation by U(-max_angle, max_angle) degrees
    about ``centre`` (x, y) then a shift of U(-max_shift, max_shift) pixels on each axis."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        angle = math.radians(rng.uniform(-max_angle, max_angle))
        shift = rng.uniform(-max_shift, max_shift, 2)
        rot = Similarity.about(centre, 1.0, angle)
        out.append(Similarity.from_params(1.0, 0.0, shift) @ rot)
    return out


def face_mask(lmk_template: np.ndarray, size: int = TEMPLATE_SIZE) -> np.ndarray:
    """(size, size) bool: the pixel centres inside the convex hull of the 68 landmarks (template px)."""
    hull = cv2.convexHull(np.asarray(lmk_template, np.float32))[:, 0].astype(np.float64)  # (K, 2), in order
    q = _template_grid(size)
    edge = np.roll(hull, -1, axis=0) - hull  # (K, 2)
    # a point is inside a convex polygon when it is on the same side of every edge
    cross = edge[:, 0] * (q[..., None, 1] - hull[:, 1]) - edge[:, 1] * (q[..., None, 0] - hull[:, 0])  # (S, S, K)
    return (cross >= 0).all(-1) | (cross <= 0).all(-1)


def _template_grid(size: int) -> np.ndarray:
    """(size, size, 2) float64 pixel centres (x, y) of the template (:func:`faceflow.ops.sampling.pixel_centres`)."""
    return pixel_centres(size, size, dtype=torch.float64)[0].numpy()


def _as_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0


def precision_pairs(path: str | Path, motions: int, seed: int, detector, max_shift: float = 4.0,
                    max_angle: float = 3.0, size: int = TEMPLATE_SIZE) -> list[PrecisionPair]:
    """The identical pair and ``motions`` in-plane-similarity pairs of the still at ``path``."""
    still = vio.read_image(path)
    try:
        lmk = detect_image(still, detector).lmk68
    except NoFaceError as e:
        raise FaceflowError(f"{path}: no face for the precision pairs ({e})") from e
    A = register_landmarks(lmk, size)
    i1 = warp_image(still, A, size)
    mask = face_mask(A.apply(lmk), size)
    name = Path(path).name
    grid = _template_grid(size)
    pairs = [PrecisionPair(name, "identical", _as_tensor(i1), _as_tensor(i1), np.zeros((size, size, 2)), mask)]
    for k, T in enumerate(random_motions(motions, seed, lmk.mean(0), max_shift, max_angle)):
        i2 = warp_image(still, A @ T, size)  # i2(q) = still((A T)^-1 q)
        moved = (A @ T @ A.inverse()).apply(grid.reshape(-1, 2)).reshape(size, size, 2)
        motion = {"index": k, "angle_deg": math.degrees(T.angle), "translation_px": T.translation.tolist()}
        pairs.append(PrecisionPair(name, "similarity", _as_tensor(i1), _as_tensor(i2), moved - grid, mask, motion))
    return pairs


def score_flow(flow: np.ndarray, pair: PrecisionPair, dims: int) -> dict:
    """Face-pixel errors of one predicted flow (224, 224, 2 or 3): the 2D end-point errors (for the
    pooled mean and percentile) and the |z| of a 3D method."""
    err = np.linalg.norm(flow[..., :2] - pair.gt, axis=-1)[pair.mask]
    out = {"epe2d": err.astype(np.float64)}
    if dims == 3 and flow.shape[-1] == 3:
        out["absz"] = np.abs(flow[..., 2][pair.mask]).astype(np.float64)
    return out


def _summary(scores: list[dict]) -> dict:
    epe = np.concatenate([s["epe2d"] for s in scores])
    row = {"epe2d": float(epe.mean()), "epe2d_p99": float(np.percentile(epe, 99)), "pairs": len(scores),
           "pixels": int(epe.size)}
    if all("absz" in s for s in scores):
        row["abs_z"] = float(np.concatenate([s["absz"] for s in scores]).mean())
    return row


def evaluate_precision(stills, methods, motions: int = 4, seed: int = 0, max_shift: float = 4.0,
                       max_angle: float = 3.0) -> dict:
    """``{method: {kind: {"epe2d", "epe2d_p99", "abs_z" (3D methods), "pairs", "pixels"}}}`` over the
    precision pairs of ``stills``, plus ``"pairs"``: what was drawn. ``methods``: the benchmark's
    methods (``method(batch) -> (B, 224, 224, 3)``); oracle rows needing the dataset's PNCC are
    left out by the caller."""
    if not stills:
        raise FaceflowError("the precision rows need at least one still (--stills FILE...)")
    with MediapipeDetector(static_image_mode=True) as det:
        pairs = [p for s in stills for p in precision_pairs(s, motions, seed, det, max_shift, max_angle)]
    table = {}
    for m in methods:
        scores: dict[str, list] = {k: [] for k in KINDS}
        for p in pairs:
            batch = {"i1": p.i1[None], "i2": p.i2[None], "mask": torch.from_numpy(p.mask)[None]}
            with torch.no_grad():
                flow = m(batch)[0].detach().cpu().numpy().astype(np.float64)
            scores[p.kind].append(score_flow(flow, p, m.dims))
        table[m.name] = {k: _summary(v) for k, v in scores.items() if v}
    drawn = [{"still": p.still, "kind": p.kind, **p.motion} for p in pairs]
    return {"rows": table, "pairs": drawn, "motions_per_still": motions, "seed": seed, "max_shift_px": max_shift,
            "max_angle_deg": max_angle}
