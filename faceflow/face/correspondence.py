"""A fixed correspondence from mediapipe FaceMesh points to ICT skin-model vertices.

mediapipe gives 478 points per face (468 mesh points and 10 iris points); the fitter
(:mod:`faceflow.face.fitting`) can use them as a second, dense landmark term (the 2D landmark
term of eq. (3.3) of the Head2Head++ thesis, summed over more points) once it knows which model
vertex each point lies on.  This module builds that map once from real video, stores it in
``faceflow/data/mediapipe_ict.json`` and loads it (:func:`load_correspondence`).

How the map is built (``python -m faceflow.face.correspondence build``):

1. From each of several talking-head clips, ``frames_per_video`` evenly spaced frames are
   read and mediapipe detects the 478 points (static-image mode: the frames are far apart).
2. The model is fitted to the 68 landmarks only (:func:`faceflow.face.fitting.fit_video` on chunks
   of 20 frames sharing an identity, every frame its own segment).  Frames whose fitted head is turned
   (|yaw| > 15 deg, |pitch| > 20 deg) or whose fit is poor (mean 68-point error above 5% of
   the inter-ocular distance) are dropped.
3. Every mediapipe point is cast onto the fitted image-space mesh (:func:`surface_hits`: the
   nearest front-facing triangle containing the point, exact barycentrics; a point in an eye
   or mouth opening of the fitted mesh moves to the closest edge within 0.3 cm), and the hit is
   carried to the *mean* face through its triangle and barycentrics
   (:func:`canonical_positions`), so hits from different people and expressions are comparable.
4. Per point, over all kept frames: the coordinate-wise median of the hits; the spread, the
   RMS distance (cm) of the hits from that median, is its reliability; the vertex is the
   inner-face vertex (``model.subset('face')``) nearest the median (:func:`vote`).
5. Marked -1 (unused): the iris points 468-477 (the skin model has no eyeballs), mediapipe's
   face-oval points (``FACEMESH_FACE_OVAL``: an outline slides over the surface as the head
   turns), points hit in fewer than half of the frames, points with spread above 0.5 cm (the
   cheeks next to the outline and a few nose-side points, whose fitted position is not pinned
   by the 68 landmarks), points whose median lies more than 0.4 cm from the inner face, and
   of several points that land on the same vertex all but the one with the smallest spread.

Measured on the committed file (7 tier-A clips, 50 frames each, 344 of the 350 frames kept;
the build took 107 s on two CPU cores shared with other jobs):

- 387 of the 478 points are used: 10 iris and 36 face-oval points are excluded by rule and
  45 for spread > 0.5 cm (cheek points near the outline and beside the nose: the 68 landmarks
  do not pin the fitted surface there); no point failed the hit-fraction, off-face or
  duplicate rules, so all used vertices are distinct;
- spread of the used points: median 0.14 cm, 90th percentile 0.32 cm, max 0.50 cm; lips
  0.04-0.24 cm, eyelids 0.05-0.22 cm, brows 0.07-0.14 cm, nose 0.07-0.38 cm;
- agreement with the model's own 68-landmark annotation: for all 51 interior points (iBUG
  17-67, mediapipe vertices :data:`faceflow.face.landmarks.MP68`) the mapped vertex lies on average
  0.15 cm (max 0.42 cm, the outer eye corners 36 and 45) from ``model.lmk68[k]`` on the mean face.  This
  is partly by construction (the fits pull those very vertices onto those very points); the
  checks below are not;
- left/right symmetry: 124 mirror pairs of used points (found by running mediapipe on two
  photos and their mirror images) map to mirror-image vertices within 0.07 cm on average
  (90th percentile 0.25 cm, max 0.58 cm); the 21 midline points map onto the midline;
- rebuild from 8 frames of a clip not used here (EDTalk_pose_source2): 98% of the used points'
  median hits within 0.5 cm of the committed vertex (median 0.11 cm);
- on two photos the build never saw, fitting the 68 points plus every other mapped point lowers
  the reprojection error of the held-out half by 19% and 13% (8.6 -> 7.0 px and 7.3 -> 6.4 px;
  the same fit with the vertices shuffled: 55 and 36 px).

The stills in ``shared/media/stills`` are not used by the build: the tests keep them for
held-out checks.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from faceflow.errors import FaceflowError, MediaError, run_cli
from faceflow.face.fitting import fit_video
from faceflow.face.landmarks import MediapipeDetector
from faceflow.geometry.morphable import MorphableModel
from faceflow.io import atomic_path, probe, read_frames
from faceflow.runtime.assets import media_dir
from faceflow.runtime.provenance import portable_command as _portable_command

logger = logging.getLogger(__name__)

NUM_POINTS = 478  # mediapipe FaceMesh with iris refinement
IRIS = tuple(range(468, 478))
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "mediapipe_ict.json"
MODEL_NAME = "ict_facekit skin"
# Tier-A clips, one per identity (the 512 px face crops of the 1080x1920 LatentSync originals).
DEFAULT_CLIPS = (
    "EDTalk_uncrop_Obama.mp4", "MimicTalk_Trump_10s.mp4", "LatentSync_demo1_video_facecrop512.mp4",
    "LatentSync_demo3_video_facecrop512.mp4", "HelloMeme_xzy3.mp4", "LivePortrait_d10.mp4",
    "LivePortrait_d13.mp4",
)
STATUSES = ("used", "iris", "face_oval", "few_hits", "spread", "off_face", "duplicate")


@dataclass
class BuildConfig:
    """Frame selection and acceptance rules of the build (angles in degrees, lengths in cm)."""

    frames_per_video: int = 50
    fit_chunk: int = 20  # frames fitted together (one identity); the fit's cost grows faster than T
    max_yaw: float = 15.0
    max_pitch: float = 20.0
    max_fit_error: float = 0.05  # mean 68-landmark error / inter-ocular distance
    min_hit_fraction: float = 0.5  # of the kept frames in which the point hit the mesh
    max_spread: float = 0.5  # RMS distance of the hits from their median, cm
    max_snap: float = 0.4  # distance from the median to the nearest inner-face vertex, cm
    max_gap: float = 0.3  # a point off the mesh (eye, mouth opening) moves to an edge this close, cm

    def __post_init__(self):
        for name in ("frames_per_video", "fit_chunk"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FaceflowError(f"BuildConfig.{name} must be an integer >= 1, got {v!r}")
        for name in ("max_yaw", "max_pitch", "max_fit_error", "max_spread", "max_snap"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise FaceflowError(f"BuildConfig.{name} must be a number > 0, got {v!r}")
        if not isinstance(self.max_gap, (int, float)) or not self.max_gap >= 0:
            raise FaceflowError(f"BuildConfig.max_gap must be a number >= 0, got {self.max_gap!r}")
        if not 0.0 <= float(self.min_hit_fraction) <= 1.0:
            raise FaceflowError(f"BuildConfig.min_hit_fraction must be in [0, 1], got {self.min_hit_fraction!r}")


@dataclass
class Correspondence:
    """The map for all 478 points.

    vertices (478,) int64 ICT skin vertex or -1; spread_cm (478,) float64, NaN where not
    measured; status: one of :data:`STATUSES` per point; meta: method, provenance, thresholds.
    """

    vertices: np.ndarray
    spread_cm: np.ndarray
    status: list[str]
    meta: dict = field(default_factory=dict)

    def used(self) -> tuple[np.ndarray, np.ndarray]:
        """(idx_mp (P,), vertices (P,)) of the used points, mediapipe index increasing."""
        idx = np.flatnonzero(self.vertices >= 0)
        return idx.astype(np.int64), self.vertices[idx].astype(np.int64)

    def to_json(self) -> dict:
        return {
            "vertices": [int(v) for v in self.vertices],
            "spread_cm": [None if not np.isfinite(s) else round(float(s), 4) for s in self.spread_cm],
            "status": list(self.status),
            **self.meta,
        }


@dataclass
class HitStats:
    """Per-point statistics of the hits over N frames.

    median (478, 3) mean-face position (cm, NaN without hits); spread (478,) RMS distance of
    the hits from the median (cm, NaN without hits); hit_fraction (478,); frames: N.
    """

    median: np.ndarray
    spread: np.ndarray
    hit_fraction: np.ndarray
    frames: int


# ----------------------------------------------------------------------------- geometry
def face_oval_points() -> np.ndarray:
    """Sorted mediapipe indices of the face-oval outline (36 points), from mediapipe itself."""
    try:
        from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL
    except ImportError as e:
        raise FaceflowError(f"the face-oval point list comes from mediapipe 0.10.21 ({e})") from None
    return np.array(sorted({i for edge in FACEMESH_FACE_OVAL for i in edge}), np.int64)


def _cross2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangles (a, b, c), arrays (..., 2)."""
    return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (c[..., 0] - a[..., 0]) * (b[..., 1] - a[..., 1])


def _closest_on_triangles(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on triangle boundaries: p (..., 2), t (..., 3, 2) -> distance (...),
    barycentrics (..., 3) of the closest boundary point."""
    best_d = np.full(t.shape[:-2], np.inf)
    best_w = np.zeros(t.shape[:-2] + (3,))
    for i in range(3):
        a, b = t[..., i, :], t[..., (i + 1) % 3, :]
        ab = b - a
        s = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-24), 0.0, 1.0)
        d = np.linalg.norm(a + s[..., None] * ab - p, axis=-1)
        better = d < best_d
        w = np.zeros(best_w.shape)
        w[..., i], w[..., (i + 1) % 3] = 1.0 - s, s
        best_d = np.where(better, d, best_d)
        best_w = np.where(better[..., None], w, best_w)
    return best_d, best_w


def surface_hits(image_vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray,
                 candidates: int = 32, max_gap: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Cast 2D points onto an image-space mesh (orthographic rays along the depth axis).

    image_vertices (V, 3): x, y pixels, z depth (smaller = nearer); triangles (F, 3),
    counter-clockwise seen from outside; points (P, 2) pixels.  Only front-facing triangles
    (clockwise on screen with y down) are considered; among those containing a point the
    nearest wins.  A point that falls in a hole of the mesh (an eye or the mouth opening, where
    the fitted lids or lips are a little more open or closed than the detected ones) or just
    outside it is moved to the closest triangle edge when that is at most ``max_gap`` pixels
    away (0: exact hits only).  The search looks at the ``candidates`` triangles with the
    nearest centroids, which contain the point wherever the mesh is not much coarser than that.
    Returns tri (P,) int64 triangle index or -1 (no hit), bary (P, 3) barycentrics (0 for misses).
    """

    V = np.asarray(image_vertices, np.float64)
    F = np.asarray(triangles, np.int64)
    pts = np.asarray(points, np.float64)
    if V.ndim != 2 or V.shape[1] != 3 or F.ndim != 2 or F.shape[1] != 3 or pts.ndim != 2 or pts.shape[1] != 2:
        raise FaceflowError(f"surface_hits needs vertices (V, 3), triangles (F, 3), points (P, 2); got "
                            f"{V.shape}, {F.shape}, {pts.shape}")
    P = len(pts)
    tri_out = np.full(P, -1, np.int64)
    bary_out = np.zeros((P, 3))
    tri_xy = V[F, :2]  # (F, 3, 2)
    area = _cross2(tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2])
    front = np.flatnonzero((area < -1e-12) & np.isfinite(area))
    ok_pts = np.isfinite(pts).all(1)
    if len(front) == 0 or not ok_pts.any():
        return tri_out, bary_out
    k = min(candidates, len(front))
    _, nn = cKDTree(tri_xy[front].mean(1)).query(pts[ok_pts], k=k)
    cand = front[nn.reshape(int(ok_pts.sum()), k)]  # (P', k)
    t = tri_xy[cand]  # (P', k, 3, 2)
    p = pts[ok_pts][:, None]
    w = np.stack([_cross2(p, t[..., 1, :], t[..., 2, :]), _cross2(t[..., 0, :], p, t[..., 2, :]),
                  _cross2(t[..., 0, :], t[..., 1, :], p)], -1) / area[cand][..., None]
    inside = (w >= -1e-9).all(-1)
    depth = np.where(inside, (w * V[F[cand], 2]).sum(-1), np.inf)
    rows = np.arange(len(cand))
    best = np.argmin(depth, 1)
    hit = np.isfinite(depth[rows, best])
    bw = w[rows, best]
    if max_gap > 0 and not hit.all():  # holes and edges: the closest boundary point within max_gap
        miss = np.flatnonzero(~hit)
        d, wc = _closest_on_triangles(p[miss], t[miss])
        j = np.argmin(d, 1)
        near = d[np.arange(len(miss)), j] <= max_gap
        best[miss[near]] = j[near]
        bw[miss[near]] = wc[np.arange(len(miss)), j][near]
        hit[miss[near]] = True
    sel = np.flatnonzero(ok_pts)
    tri_out[sel[hit]] = cand[rows, best][hit]
    bary_out[sel[hit]] = bw[hit]
    return tri_out, bary_out


def canonical_positions(mean: np.ndarray, triangles: np.ndarray, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Surface points (tri, bary) carried to a reference mesh ``mean`` (V, 3): (P, 3), NaN
    where tri < 0."""
    tri = np.asarray(tri, np.int64)
    out = np.full((len(tri), 3), np.nan)
    ok = tri >= 0
    out[ok] = np.einsum("pk,pkc->pc", bary[ok], np.asarray(mean, np.float64)[np.asarray(triangles)[tri[ok]]])
    return out


# ----------------------------------------------------------------------------- from frames to hits
def _check_points(lmk68: np.ndarray, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lmk68 = np.asarray(lmk68, np.float64)
    dense = np.asarray(dense, np.float64)
    if lmk68.ndim != 3 or lmk68.shape[1:] != (68, 2) or len(lmk68) == 0:
        raise FaceflowError(f"lmk68 must be (T, 68, 2) with T >= 1, got {lmk68.shape}")
    if dense.ndim != 3 or dense.shape[0] != len(lmk68) or dense.shape[1] != NUM_POINTS or dense.shape[2] < 2:
        raise FaceflowError(f"dense must be (T, {NUM_POINTS}, 2 or 3) matching lmk68's T={len(lmk68)} "
                            f"(mediapipe with iris refinement), got {dense.shape}")
    if not (np.isfinite(lmk68).all() and np.isfinite(dense[..., :2]).all()):
        raise FaceflowError("lmk68/dense contain NaN or inf: pass only frames with a detection")
    return lmk68, dense[..., :2]


def frame_hits(model: "MorphableModel", lmk68: np.ndarray, dense: np.ndarray, config: BuildConfig | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Fit the model to the 68 landmarks of T frames of one person (in chunks of
    ``config.fit_chunk`` frames sharing an identity) and cast their dense points onto the
    fitted meshes.

    lmk68 (T, 68, 2), dense (T, 478, 2 or 3) pixels.  Returns positions (T', 478, 3): the hits
    on the mean face (NaN for misses) of the T' frames that pass the pose and fit-error rules,
    and kept (T,) bool.  A chunk whose fit raises is skipped with a warning (its frames are not
    kept); :class:`~faceflow.errors.FaceflowError` if every chunk fails.
    """

    cfg = config or BuildConfig()
    lmk68, dense = _check_points(lmk68, dense)
    T = len(lmk68)
    mean = model.mean.double().cpu().numpy()
    tris = model.triangles.cpu().numpy()
    kept = np.zeros(T, bool)
    out = []
    failures: list[str] = []
    for a in range(0, T, cfg.fit_chunk):
        b = min(T, a + cfg.fit_chunk)
        try:  # frames far apart: every frame its own segment, no temporal terms
            fit = fit_video(model, lmk68[a:b], segment_ids=np.arange(b - a))
        except Exception as e:  # one failed chunk must not end a build over many clips
            logger.warning("fit of frames %d-%d failed (%s: %s); skipped", a, b - 1, type(e).__name__, e)
            failures.append(f"frames {a}-{b - 1}: {type(e).__name__}: {e}")
            continue
        ang = np.asarray(fit.angles, np.float64)
        rel = np.asarray(fit.lmk_error, np.float64) / np.maximum(np.asarray(fit.iod, np.float64), 1e-6)
        ok = (np.abs(ang[:, 1]) <= cfg.max_yaw) & (np.abs(ang[:, 0]) <= cfg.max_pitch) & (rel <= cfg.max_fit_error)
        kept[a:b] = ok
        for t in np.flatnonzero(ok):
            verts = fit.image_vertices(model, frames=slice(int(t), int(t) + 1))[0].double().cpu().numpy()
            tri, bary = surface_hits(verts, tris, dense[a + t], max_gap=cfg.max_gap * float(fit.scale[t]))
            out.append(canonical_positions(mean, tris, tri, bary))
    if failures and len(failures) == -(-T // cfg.fit_chunk):
        raise FaceflowError("the model fit failed on every chunk of frames: " + "; ".join(failures))
    positions = np.stack(out) if out else np.zeros((0, NUM_POINTS, 3))
    return positions, kept


def hit_stats(positions: np.ndarray) -> HitStats:
    """Median, spread and hit fraction per point of positions (N, 478, 3) (NaN = miss)."""
    positions = np.asarray(positions, np.float64)
    if positions.ndim != 3 or positions.shape[2] != 3 or len(positions) == 0:
        raise FaceflowError(f"positions must be (N, P, 3) with N >= 1 frames, got {positions.shape}")
    hit = np.isfinite(positions).all(-1)  # (N, P)
    P = positions.shape[1]
    median = np.full((P, 3), np.nan)
    spread = np.full(P, np.nan)
    any_hit = hit.any(0)
    median[any_hit] = np.nanmedian(positions[:, any_hit], axis=0)
    d2 = ((positions - median[None]) ** 2).sum(-1)  # NaN for misses
    spread[any_hit] = np.sqrt(np.nanmean(d2[:, any_hit], axis=0))
    return HitStats(median, spread, hit.mean(0), len(positions))


def vote(model: "MorphableModel", stats: HitStats, config: BuildConfig | None = None) -> tuple[np.ndarray, list[str]]:
    """Vertices (478,) (-1 = unused) and a status per point from the hit statistics.

    The vertex is the inner-face vertex nearest the median position; the exclusion rules are
    those of :class:`BuildConfig` (see the module docstring).
    """

    cfg = config or BuildConfig()
    P = len(stats.median)
    if P != NUM_POINTS:
        raise FaceflowError(f"expected statistics for {NUM_POINTS} points, got {P}")
    face = model.subset("face").indices.cpu().numpy()
    mean = model.mean.double().cpu().numpy()
    status = ["used"] * P
    verts = np.full(P, -1, np.int64)
    oval = set(face_oval_points().tolist())
    has = np.isfinite(stats.median).all(1)
    snap = np.full(P, np.inf)
    if has.any():
        dist, j = cKDTree(mean[face]).query(stats.median[has])
        snap[has] = dist
        verts[has] = face[j]
    for p in range(P):
        if p in IRIS:
            status[p] = "iris"
        elif p in oval:
            status[p] = "face_oval"
        elif not has[p] or stats.hit_fraction[p] < cfg.min_hit_fraction:
            status[p] = "few_hits"
        elif stats.spread[p] > cfg.max_spread:
            status[p] = "spread"
        elif snap[p] > cfg.max_snap:
            status[p] = "off_face"
    # several points on one vertex: keep the most reliable one
    used = [p for p in range(P) if status[p] == "used"]
    for v in np.unique(verts[used]):
        same = [p for p in used if verts[p] == v]
        if len(same) > 1:
            keep = min(same, key=lambda p: (stats.spread[p], p))
            for p in same:
                if p != keep:
                    status[p] = "duplicate"
    verts[[s != "used" for s in status]] = -1
    return verts, status


# ----------------------------------------------------------------------------- building
def _resolve_video(name: str | os.PathLike) -> Path:
    p = Path(name)
    if p.is_file():
        return p
    for cand in (media_dir() / "videos" / p.name, media_dir() / "extra" / p.name,
                 media_dir() / "videos" / f"{p.name}.mp4", media_dir() / "extra" / f"{p.name}.mp4"):
        if cand.is_file():
            return cand
    raise MediaError(f"video {str(name)!r} not found (looked at it as a path and in {media_dir() / 'videos'} "
                     f"and {media_dir() / 'extra'}; set FACEFLOW_MEDIA to the shared media folder)")


def sample_video(path, frames: int, detector) -> tuple[np.ndarray, np.ndarray, int]:
    """Detect mediapipe points in ``frames`` evenly spaced frames of a video (largest face).

    Returns lmk68 (T, 68, 2), dense (T, 478, 3) of the frames with a face, and the number of
    frames read.
    """

    info = probe(path)
    step = max(1, info.num_frames // frames)
    lmk, dense, n = [], [], 0
    for frame in read_frames(path, step=step, max_frames=frames):
        n += 1
        faces = detector.detect(frame)
        if faces and faces[0].dense is not None and len(faces[0].dense) == NUM_POINTS:
            lmk.append(faces[0].lmk68)
            dense.append(faces[0].dense)
    if not lmk:
        return np.zeros((0, 68, 2), np.float32), np.zeros((0, NUM_POINTS, 3), np.float32), n
    return np.stack(lmk), np.stack(dense), n


def build_correspondence(videos: Sequence[str | os.PathLike] = DEFAULT_CLIPS, config: BuildConfig | None = None,
                         model: "MorphableModel | None" = None, progress: bool = False,
                         command: str | None = None) -> Correspondence:
    """Build the map from real clips (see the module docstring); returns it unsaved."""


    cfg = config or BuildConfig()
    if len(videos) == 0:
        raise FaceflowError("no videos to build the correspondence from")
    paths = [_resolve_video(v) for v in videos]
    model = model if model is not None else MorphableModel.load("skin")
    if model.num_vertices != 11248:
        raise FaceflowError(f"the correspondence is for the ICT skin model (11248 vertices); this model has "
                            f"{model.num_vertices}")
    t0 = time.perf_counter()
    positions, built_from = [], []
    bar = tqdm(total=len(paths), disable=not progress, desc="correspondence", unit="clip")
    with MediapipeDetector(static_image_mode=True, max_faces=1) as det:
        for path in paths:
            bar.set_postfix_str(path.name)
            lmk, dense, n_read = sample_video(path, cfg.frames_per_video, det)
            entry = {"clip": path.name, "frames_read": n_read, "frames_with_face": len(lmk), "frames_used": 0}
            if len(lmk):
                pos, kept = frame_hits(model, lmk, dense, cfg)
                positions.append(pos)
                entry["frames_used"] = int(kept.sum())
            built_from.append(entry)
            bar.update(1)
    bar.close()
    used = sum(e["frames_used"] for e in built_from)
    if used == 0:
        raise FaceflowError("no usable frames: " + "; ".join(
            f"{e['clip']}: {e['frames_read']} read, {e['frames_with_face']} with a face, 0 frontal with a good fit"
            for e in built_from))
    stats = hit_stats(np.concatenate(positions))
    verts, status = vote(model, stats, cfg)
    meta = {
        "method": ("mediapipe 0.10.21 FaceMesh (static, refine) on evenly spaced frames; ICT skin model fitted "
                   "to the 68 landmarks per clip (faceflow.face.fitting.fit_video); frames kept if |yaw| <= "
                   f"{cfg.max_yaw:g} deg, |pitch| <= {cfg.max_pitch:g} deg and mean 68-point error <= "
                   f"{cfg.max_fit_error:g} IOD; each point cast onto the nearest front-facing triangle of the "
                   "fitted mesh and carried to the mean face by its barycentrics; vertex = inner-face vertex "
                   "nearest the per-point median; spread_cm = RMS distance of the hits from that median; -1 for "
                   f"iris, face oval, hit fraction < {cfg.min_hit_fraction:g}, spread > {cfg.max_spread:g} cm, "
                   f"median > {cfg.max_snap:g} cm from the inner face, and duplicates (the smallest spread wins)"),
        "built_from": built_from,
        "frames_total": int(stats.frames),
        "config": asdict(cfg),
        "command": _portable_command(command) if command else "python -m faceflow.face.correspondence build",
        "model": MODEL_NAME,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "hit_fraction": [round(float(h), 3) for h in stats.hit_fraction],
    }
    return Correspondence(verts, stats.spread, status, meta)


# ----------------------------------------------------------------------------- files
def save_correspondence(corr: Correspondence, path: str | os.PathLike = DEFAULT_PATH) -> str:
    """Write the map as JSON atomically; returns the absolute path."""

    path = Path(path)
    if not path.parent.is_dir():
        raise MediaError(f"cannot write {path}: folder {path.parent} does not exist")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:  # one line per key: readable, and diffs show what changed
            f.write("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in corr.to_json().items())
                    + "\n}\n")
    return str(path.resolve())


def read_correspondence(path: str | os.PathLike | None = None) -> Correspondence:
    """Read and check a map written by :func:`save_correspondence` (default: the committed one)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise MediaError(f"correspondence file {path} not found (build it with "
                         f"'python -m faceflow.face.correspondence build')") from None
    except (OSError, ValueError) as e:
        raise MediaError(f"cannot read correspondence file {path}: {e}") from None
    if not isinstance(d, dict) or "vertices" not in d:
        raise MediaError(f"{path} is not a correspondence file (no 'vertices' list)")
    try:
        verts = np.asarray(d["vertices"], np.int64)
        spread = np.array([np.nan if s is None else s for s in d.get("spread_cm", [None] * len(verts))], np.float64)
    except (TypeError, ValueError) as e:
        raise MediaError(f"{path}: malformed vertices/spread_cm ({e})") from None
    if verts.shape != (NUM_POINTS,) or spread.shape != (NUM_POINTS,):
        raise MediaError(f"{path}: expected {NUM_POINTS} vertices and spreads, got {verts.shape} and {spread.shape}")
    if (verts < -1).any() or (verts >= 11248).any():
        raise MediaError(f"{path}: vertex indices must be -1 or in [0, 11248)")
    status = d.get("status")
    if not isinstance(status, list) or len(status) != NUM_POINTS:
        status = ["used" if v >= 0 else "unused" for v in verts]
    meta = {k: v for k, v in d.items() if k not in ("vertices", "spread_cm", "status")}
    return Correspondence(verts, spread, list(status), meta)


def load_correspondence(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The used points of the committed map: (idx_mp (P,), vertices (P,)) int64, so that
    ``fit_image(model, lmk68, dense=face.dense[idx_mp, :2], dense_vertices=vertices)``."""
    return read_correspondence(path).used()


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    d = BuildConfig()
    p = argparse.ArgumentParser(prog="python -m faceflow.face.correspondence",
                                description="mediapipe point -> ICT skin vertex correspondence.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build the map from talking-head clips and write it as JSON",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Fit the ICT model to mediapipe's 68 points on frontal frames of real clips, "
                                   "cast all 478 points onto the fitted meshes and vote per point.")
    b.add_argument("--videos", nargs="+", default=list(DEFAULT_CLIPS),
                   help="video paths, or names in $FACEFLOW_MEDIA/videos or extra")
    b.add_argument("--frames-per-video", type=int, default=d.frames_per_video, help="evenly spaced frames per clip")
    b.add_argument("--max-yaw", type=float, default=d.max_yaw, help="keep frames with |yaw| <= this (deg)")
    b.add_argument("--max-spread", type=float, default=d.max_spread, help="drop points whose spread exceeds this (cm)")
    b.add_argument("--out", default=str(DEFAULT_PATH), help="JSON file to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv

    def build() -> int:
        cfg = BuildConfig(frames_per_video=args.frames_per_video, max_yaw=args.max_yaw, max_spread=args.max_spread)
        if not Path(args.out).resolve().parent.is_dir():  # fail before the build, not after it
            raise MediaError(f"cannot write {args.out}: folder {Path(args.out).resolve().parent} does not exist")
        corr = build_correspondence(args.videos, cfg, progress=True,
                                    command=shlex.join(["python", "-m", "faceflow.face.correspondence", *argv]))
        out = save_correspondence(corr, args.out)
        idx, _ = corr.used()
        sp = corr.spread_cm[idx]
        print(f"wrote {out}: {len(idx)} of {NUM_POINTS} points used, from {corr.meta['frames_total']} frames; "
              f"spread median {np.median(sp):.2f} cm, max {sp.max():.2f} cm ({corr.meta['build_seconds']} s)")
        return 0

    return run_cli(build)


__all__ = [
    "NUM_POINTS", "IRIS", "DEFAULT_PATH", "DEFAULT_CLIPS", "STATUSES", "BuildConfig", "Correspondence", "HitStats",
    "face_oval_points", "surface_hits", "canonical_positions", "frame_hits", "hit_stats", "vote", "sample_video",
    "build_correspondence", "save_correspondence", "read_correspondence", "load_correspondence", "main",
]


if __name__ == "__main__":
    sys.exit(main())
