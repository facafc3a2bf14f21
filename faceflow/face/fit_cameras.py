"""Cameras of the video fit (:mod:`faceflow.face.fitting`): per-frame scaled-orthographic cameras
from 3D-2D correspondences, their temporal smoothing, and the choice of the model vertex behind
each jaw landmark ("landmark marching").

Cameras follow :mod:`faceflow.geometry.camera`: image point ``f (C R X)_xy + t_xy`` with ``C``
flipping y (image y points down, model y up); R (T, 3, 3), t (T, 3) pixels (t_z = 0), f (T,)
pixels per cm. Everything here is float64 numpy.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import make_smoothing_spline

from faceflow.geometry.camera import axis_angle_to_rotation, euler_to_rotation, rotation_to_euler
from faceflow.geometry.morphable import MorphableModel

CHIN = (7, 8, 9)  # jaw landmarks kept on their fixed vertices
MARCHING = tuple(k for k in range(17) if k not in CHIN)
FLIP2 = np.array([1.0, -1.0])  # image y points down, model y up


def einsum(*args):
    """``np.einsum`` with ``optimize=True`` (BLAS-backed contraction paths)."""
    return np.einsum(*args, optimize=True)


def batched_solve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched dense solve A (T, n, n) X = B (T, n, m) (torch's batched LAPACK is much faster than
    numpy's loop here)."""
    A, B = torch.from_numpy(np.ascontiguousarray(A)), torch.from_numpy(np.ascontiguousarray(B))
    return torch.linalg.solve(A, B).numpy()


def image_rows(R: np.ndarray) -> np.ndarray:
    """(T, 3, 3) -> (T, 2, 3): the image rows of C R (x = row 0, y = -row 1)."""
    return R[:, :2, :] * FLIP2[None, :, None]


def estimate_cameras(X: np.ndarray, l: np.ndarray, w: np.ndarray | None = None,
                     iterations: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scaled-orthographic camera of each frame from 3D-2D correspondences.

    Minimises ``sum_j w_j ||f (C R X_j)_xy + t_xy - l_j||^2``: a weighted affine camera,
    projected onto the nearest scaled rotation, then Levenberg-Marquardt on (rotation, log f, t).
    X (T, N, 3) model space; l (T, N, 2) pixels; w (T, N) or None.
    Returns R (T, 3, 3), t (T, 3) (t_z = 0), f (T,).
    """
    X = np.asarray(X, np.float64)
    l = np.asarray(l, np.float64)
    T, N, _ = X.shape
    w = np.ones((T, N)) if w is None else np.asarray(w, np.float64)
    ws = w / w.sum(1, keepdims=True)
    mx = einsum("tn,tnc->tc", ws, X)
    ml = einsum("tn,tnc->tc", ws, l)
    Xc, lc = X - mx[:, None], l - ml[:, None]
    # affine camera rows M (2, 3): lc ~ Xc M^T
    XtX = einsum("tn,tna,tnb->tab", ws, Xc, Xc) + 1e-9 * np.eye(3)
    XtL = einsum("tn,tna,tnb->tab", ws, Xc, lc)
    M = np.linalg.solve(XtX, XtL).transpose(0, 2, 1) * FLIP2[None, :, None]  # rows of f*R[:2]
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    R2 = U @ Vt  # (T, 2, 3) orthonormal rows
    f = S.mean(1)
    R = np.concatenate([R2, np.cross(R2[:, 0], R2[:, 1])[:, None]], 1)
    t = np.zeros((T, 3))
    t[:, :2] = ml - f[:, None] * einsum("tab,tb->ta", image_rows(R), mx)
    lam = np.full(T, 1e-3)
    sw = np.sqrt(w)[..., None]

    def residual(R, f, t):
        return (f[:, None, None] * einsum("tab,tnb->tna", image_rows(R), X) + t[:, None, :2] - l) * sw

    r = residual(R, f, t)
    cost = (r ** 2).sum((1, 2))
    for _ in range(iterations):
        q = einsum("tab,tnb->tna", R, X)  # rotated points (T, N, 3)
        # derivatives of the image point wrt a left rotation increment w: d(Rx) = w x q
        dq = np.zeros((T, N, 3, 3))
        dq[..., 0, 1], dq[..., 0, 2] = q[..., 2], -q[..., 1]
        dq[..., 1, 0], dq[..., 1, 2] = -q[..., 2], q[..., 0]
        dq[..., 2, 0], dq[..., 2, 1] = q[..., 1], -q[..., 0]
        J = np.zeros((T, N, 2, 6))
        J[..., :3] = f[:, None, None, None] * dq[..., :2, :] * FLIP2[None, None, :, None]
        J[..., 3] = f[:, None, None] * q[..., :2] * FLIP2
        J[..., 0, 4] = 1.0
        J[..., 1, 5] = 1.0
        J = (J * sw[..., None]).reshape(T, 2 * N, 6)
        g = einsum("tki,tk->ti", J, r.reshape(T, -1))
        H = einsum("tki,tkj->tij", J, J)
        damp = lam[:, None, None] * (np.diagonal(H, axis1=1, axis2=2)[:, None, :] * np.eye(6) + 1e-9 * np.eye(6))
        step = -batched_solve(H + damp, g[..., None])[..., 0]
        Rn = rodrigues(step[:, :3]) @ R
        fn = f * np.exp(step[:, 3])
        tn = t.copy()
        tn[:, :2] += step[:, 4:]
        rn = residual(Rn, fn, tn)
        cn = (rn ** 2).sum((1, 2))
        better = cn <= cost  # accept per frame; otherwise damp more (Levenberg-Marquardt)
        R, f, t = np.where(better[:, None, None], Rn, R), np.where(better, fn, f), np.where(better[:, None], tn, t)
        r, cost = np.where(better[:, None, None], rn, r), np.where(better, cn, cost)
        lam = np.where(better, lam * 0.3, lam * 10)
    return R, t, f


def rodrigues(w: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) of rotation vectors (T, 3), float64 numpy."""
    return axis_angle_to_rotation(torch.from_numpy(np.asarray(w, np.float64))).numpy()


def smooth_series(y: np.ndarray, segment_ids: np.ndarray | None = None, lam: float | None = None) -> np.ndarray:
    """Cubic smoothing spline over time of every column of y (T, ...), independently per
    segment (frames with the same ``segment_ids``); ``lam`` None picks it by GCV. Segments
    shorter than 5 frames are returned unchanged."""
    y = np.asarray(y, np.float64)
    out = y.copy()
    seg = np.zeros(len(y), int) if segment_ids is None else np.asarray(segment_ids)
    for s in np.unique(seg):
        idx = np.flatnonzero(seg == s)
        if len(idx) < 5:
            continue
        flat = y[idx].reshape(len(idx), -1)
        x = np.arange(len(idx), dtype=np.float64)
        sm = make_smoothing_spline(x, flat, lam=lam)(x)  # every column at once
        out[idx] = sm.reshape(y[idx].shape)
    return out


def smooth_cameras(R: np.ndarray, t: np.ndarray, f: np.ndarray, segment_ids: np.ndarray | None = None):
    """Smooth a camera sequence (thesis Sec. 3.2): log scale, unwrapped Euler angles and
    translation, each with a cubic smoothing spline. Returns R, t, f like the input."""
    ang = rotation_to_euler(torch.from_numpy(R)).numpy()
    ang = np.unwrap(ang, axis=0)
    params = np.concatenate([np.log(f)[:, None], ang, t[:, :2]], 1)
    sm = smooth_series(params, segment_ids)
    Rs = euler_to_rotation(torch.from_numpy(sm[:, 1:4])).numpy()
    ts = t.copy()
    ts[:, :2] = sm[:, 4:6]
    return Rs, ts, np.exp(sm[:, 0])


# ---------------------------------------------------------------------- jaw contour

class JawContour:
    """Per-frame choice of the model vertex for each jaw landmark ("landmark marching").

    For jaw landmark k (not the chin, 7-9) the candidates are the skin vertices in a horizontal
    band (+-``band`` cm in the mean face) through the landmark's vertex, on its side of the face,
    from slightly inside the landmark out to the model's outer contour (``jaw_*_ext``). Given a
    head rotation, the candidate furthest out in the image (roll removed) is the one on the
    visible outline, where a 2D detector puts the landmark.
    """

    def __init__(self, model: MorphableModel, band: float = 0.45, inward: float = 1.5):
        mean = model.mean.double().cpu().numpy()
        lmk = model.lmk68.cpu().numpy()
        ext = np.concatenate([model.jaw_right_ext.cpu().numpy(), model.jaw_left_ext.cpu().numpy()])
        region = model.vertex_region.cpu().numpy()
        skin = np.isin(region, [model.region_names.index(n) for n in ("face", "head_neck")])
        self.fixed = lmk[:17].copy()
        self.candidates: list[np.ndarray] = []
        for k in range(17):
            v = lmk[k]
            if k in CHIN:
                self.candidates.append(np.array([v]))
                continue
            side = np.sign(mean[v, 0])
            z_min = mean[ext, 2][np.abs(mean[ext, 1] - mean[v, 1]) < 1.5].min() - 0.3
            sel = (skin & (np.abs(mean[:, 1] - mean[v, 1]) < band) & (np.sign(mean[:, 0]) == side)
                   & (np.abs(mean[:, 0]) >= abs(mean[v, 0]) - inward) & (mean[:, 2] >= z_min))
            cand = np.flatnonzero(sel)
            self.candidates.append(np.union1d(cand, [v]))
        self.all = np.unique(np.concatenate(self.candidates))
        self._cols = [np.searchsorted(self.all, cand) for cand in self.candidates]  # positions in self.all
        self.side = np.array([-1.0 if k < 8 else 1.0 for k in range(17)])

    def select(self, cand_pts: np.ndarray, R: np.ndarray) -> np.ndarray:
        """cand_pts (T, len(self.all), 3) model-space positions of ``self.all``; R (T, 3, 3).
        Returns (T, 17) chosen vertex indices."""
        ang = rotation_to_euler(torch.from_numpy(np.asarray(R, np.float64))).numpy()
        ang[:, 2] = 0.0  # roll does not change what is on the outline
        Rn = euler_to_rotation(torch.from_numpy(ang)).numpy()
        x = einsum("tb,tnb->tn", Rn[:, 0], cand_pts)  # camera x of every candidate
        out = np.empty((len(R), 17), np.int64)
        for k, (cand, cols) in enumerate(zip(self.candidates, self._cols)):
            best = np.argmax(self.side[k] * x[:, cols], axis=1)
            out[:, k] = cand[best]
        return out
