"""Fitting the morphable model to 2D landmarks over a whole video (Head2Head++ thesis Sec. 3.2,
eqs. (3.2)-(3.3)); a photo is the one-frame case.

Unknowns: one identity vector ``i`` shared by the video, one expression vector ``e_f`` and one
scaled-orthographic camera ``(f_f, R_f, t_f)`` per frame (see :mod:`faceflow.geometry.camera`).

1. **Initialisation** (rigid face, ``e = 0``): alternate (a) per-frame cameras from the
   landmarks with the shape fixed (:func:`estimate_cameras`) and (b) the identity with the
   cameras fixed; then smooth the camera sequence (log scale, Euler angles, translation) with
   cubic smoothing splines (:func:`smooth_cameras`).
2. **Main fit**, cameras fixed, eq. (3.3) of the thesis::

       w_l sum_f ||Pi_f(x(i, e_f))_lmk - l_f||^2 + w_pr (a_id ||i||^2 + a_exp sum_f ||e_f||^2)
           + w_sm sum_f ||e_{f-1} - 2 e_f + e_{f+1}||^2,     lo <= i, e <= hi

   It is linear in ``(e_1..e_T, i)``; we solve it as one sparse bounded linear least-squares
   problem with ``scipy.optimize.lsq_linear`` (trust-region reflective). Each frame's landmark
   block is compressed exactly to 53 rows (a Cholesky factor of its normal matrix, built from a
   precomputed 3x3xKxK contraction, :func:`_frame_blocks`); the identity-only remainders of all
   frames add up to one 100-row block.
3. The cameras are re-estimated with the fitted shapes, smoothed, and step 2 repeated
   (``iterations`` rounds).
4. **Joint refinement**: Gauss-Newton on the same energy over cameras and coefficients together
   (camera increments eliminated per frame by a Schur complement, Levenberg damping), because
   the camera/shape alternation zig-zags along the pose-shape valley (on synthetic data it left
   a 1-2 degree pitch bias that this step removes).
5. The cameras are smoothed once more and the expressions re-solved for them.

Clips longer than ``id_frames`` (100) take the identity from that many evenly spaced key frames
(steps 1-5 without temporal terms) and then run steps 1-5 on every frame with the identity
fixed, which removes the dense identity columns from the big sparse problem (a 1,499-frame clip
is then fitted in about 56 s on 2 CPU cores). The identity prior grows with the number of
frames (:func:`identity_prior`).

Residuals are measured in centimetres (pixels divided by the frame's scale ``f_f``), so the
weights do not depend on the image resolution. Jaw landmarks 0-6 and 10-16 are matched, per
frame, to the model vertex on the visible outline (:class:`JawContour`, "landmark marching"):
a 2D detector puts them on the silhouette, which moves over the cheek as the head turns.
Besides the 68 points, mediapipe's dense points can enter as a second landmark term through a
fixed point-to-vertex correspondence (:mod:`faceflow.face.correspondence`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import torch
from scipy.interpolate import make_smoothing_spline
from scipy.optimize import lsq_linear
from scipy.stats import chi2

from faceflow.errors import FaceflowError
from faceflow.geometry.camera import Camera, axis_angle_to_rotation, euler_to_rotation, rotation_to_euler
from faceflow.geometry.morphable import MorphableModel


def _es(*args):
    return np.einsum(*args, optimize=True)  # BLAS-backed contraction paths


def _bsolve(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched dense solve (torch's batched LAPACK is much faster than numpy's loop here)."""
    A, B = torch.from_numpy(np.ascontiguousarray(A)), torch.from_numpy(np.ascontiguousarray(B))
    return torch.linalg.solve(A, B).numpy()


CHIN = (7, 8, 9)  # jaw landmarks kept on their fixed vertices
MARCHING = tuple(k for k in range(17) if k not in CHIN)
FLIP2 = np.array([1.0, -1.0])  # image y points down, model y up


@dataclass
class FitConfig:
    """Weights and schedule of the fit. Residuals are in cm, so ``1 / lmk_sigma**2`` is the
    landmark weight ``w_l`` for a landmark noise of ``lmk_sigma`` cm (about 1.5 px at 10 px/cm)."""

    lmk_sigma: float = 0.15  # w_l = 1 / lmk_sigma^2
    jaw_weight: float = 0.5  # relative weight of jaw landmarks 0-16 (less reliable outline)
    dense_weight: float = 0.3  # relative weight of each dense (mediapipe) point; 0 disables the term
    a_id: float = 1.0  # identity prior per frame: w_pr a_id = a_id * T (see identity_prior)
    a_exp: float = 0.05  # expression prior, per frame
    exp_smooth_sigma: float = 0.1  # w_sm = 1 / sigma^2: expected second difference of e per frame
    rigid_id_sigma: float = 0.02  # cm RMS: penalty on the part of an identity that is a rigid/scale motion
    id_bound: float = 3.0  # |i_k| <= id_bound
    exp_bounds: tuple[float, float] = (0.0, 1.0)
    init_alternations: int = 5
    iterations: int = 2  # (cameras, expression+identity) rounds after the initialisation
    refine_iterations: int = 3  # joint camera+coefficient Gauss-Newton steps at the end
    camera_smoothing: bool = True
    id_frames: int = 100  # clips longer than this take the identity from this many key frames
    max_solver_iter: int = 60  # trust-region-reflective iterations of lsq_linear
    lsmr_maxiter: int = 100  # inner LSMR iterations per trust-region step
    jaw_marching: bool = True


@dataclass
class VideoFit:
    """Result for T frames: coefficients, cameras and fit statistics (numpy, float32)."""

    id: np.ndarray  # (K_id,)
    exp: np.ndarray  # (T, K_exp)
    rotation: np.ndarray  # (T, 3, 3)
    translation: np.ndarray  # (T, 3) pixels
    scale: np.ndarray  # (T,) pixels per cm
    jaw_vertices: np.ndarray  # (T, 17) model vertices matched to jaw landmarks 0-16
    lmk_error: np.ndarray  # (T,) mean 68-landmark reprojection error, pixels
    iod: np.ndarray  # (T,) inter-ocular distance of the input landmarks (outer corners), pixels
    stats: dict = field(default_factory=dict)

    @property
    def relative_error(self) -> np.ndarray:
        """(T,) landmark reprojection error as a fraction of the inter-ocular distance."""
        return self.lmk_error / np.maximum(self.iod, 1e-6)

    @property
    def angles(self) -> np.ndarray:
        """(T, 3) Euler angles (pitch, yaw, roll) in degrees."""
        return np.degrees(rotation_to_euler(torch.from_numpy(self.rotation.astype(np.float64))).numpy())

    def camera(self, device="cpu") -> Camera:
        f = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
        return Camera(f(self.rotation), f(self.translation), f(self.scale))

    def vertices(self, model: MorphableModel, frames=slice(None), vertex_idx=None) -> torch.Tensor:
        """Model-space meshes (T', V, 3) of ``frames`` (a slice or index array)."""
        exp = torch.from_numpy(np.ascontiguousarray(self.exp[frames]))
        ident = torch.from_numpy(self.id)[None].expand(exp.shape[0], -1)
        return model.shape(ident.to(model.device), exp.to(model.device), vertex_idx)

    def image_vertices(self, model: MorphableModel, frames=slice(None), vertex_idx=None) -> torch.Tensor:
        """Image-space meshes (T', V, 3): x, y pixels, z depth (see :mod:`faceflow.geometry.camera`)."""
        return self.camera(model.device)[frames].project(self.vertices(model, frames, vertex_idx))


# ---------------------------------------------------------------------- plausibility

def identity_plausibility(id_coeffs: np.ndarray, quantile: float = 0.99) -> dict:
    """Thesis Sec. 3.2: an identity with ``||i||^2`` above the chi-square ``quantile`` for
    K_id degrees of freedom is implausible under the N(0, I) prior (a failed fit)."""
    k = int(np.asarray(id_coeffs).size)
    norm2 = float(np.sum(np.asarray(id_coeffs, dtype=np.float64) ** 2))
    threshold = float(chi2.ppf(quantile, k))
    return {"id_norm2": norm2, "chi2_threshold": threshold, "quantile": quantile, "dof": k,
            "plausible": norm2 <= threshold}


def identity_prior(model: MorphableModel, cfg: "FitConfig", frames: int = 1) -> np.ndarray:
    """(K_id, K_id) quadratic prior on the identity: ``a_id T I + Q`` for T ``frames``.

    The weight grows with T: the differences between a detector's landmark definitions and the
    model's are the same in every frame, so frames are not independent evidence about the
    identity; with a fixed weight a long clip pushes ``||i||^2`` far past the chi-square bound
    (on 60 frames of a real clip: 360 with a fixed weight of 1, 130 with 0.5 per frame, 76 with
    1 per frame, at a median landmark error of 2.4, 2.7 and 2.9 px). ``i^T Q i`` penalises the
    component of the identity displacement that is an infinitesimal similarity motion of the
    face (3 rotations, 3 translations, scale about the centroid), measured as RMS cm over the
    inner face against ``rigid_id_sigma``. The ICT identity modes contain some head rotation
    (about 70% of a 1-degree pitch field lies in their span), which without this term trades
    pose for identity under sparse landmarks."""
    k = model.num_id
    prior = cfg.a_id * frames * np.eye(k)
    if cfg.rigid_id_sigma <= 0:
        return prior
    face = model.subset("face").indices
    mean = model.mean[face].double().cpu().numpy()
    c = mean - mean.mean(0)
    fields = ([np.cross(np.eye(3)[a], c) for a in range(3)]
              + [np.broadcast_to(np.eye(3)[a], c.shape) for a in range(3)] + [c])
    Q, _ = np.linalg.qr(np.stack([f.ravel() for f in fields], 1))  # (3N, 7) orthonormal
    U = model.id_basis[:, face].double().cpu().numpy().reshape(k, -1).T  # (3N, K_id)
    QU = Q.T @ U
    return prior + QU.T @ QU / (len(face) * cfg.rigid_id_sigma ** 2)


# ---------------------------------------------------------------------- cameras

def _proj_rows(R: np.ndarray) -> np.ndarray:
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
    mx = _es("tn,tnc->tc", ws, X)
    ml = _es("tn,tnc->tc", ws, l)
    Xc, lc = X - mx[:, None], l - ml[:, None]
    # affine camera rows M (2, 3): lc ~ Xc M^T
    XtX = _es("tn,tna,tnb->tab", ws, Xc, Xc) + 1e-9 * np.eye(3)
    XtL = _es("tn,tna,tnb->tab", ws, Xc, lc)
    M = np.linalg.solve(XtX, XtL).transpose(0, 2, 1) * FLIP2[None, :, None]  # rows of f*R[:2]
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    R2 = U @ Vt  # (T, 2, 3) orthonormal rows
    f = S.mean(1)
    R = np.concatenate([R2, np.cross(R2[:, 0], R2[:, 1])[:, None]], 1)
    t = np.zeros((T, 3))
    t[:, :2] = ml - f[:, None] * _es("tab,tb->ta", _proj_rows(R), mx)
    lam = np.full(T, 1e-3)
    sw = np.sqrt(w)[..., None]

    def residual(R, f, t):
        return (f[:, None, None] * _es("tab,tnb->tna", _proj_rows(R), X) + t[:, None, :2] - l) * sw

    r = residual(R, f, t)
    cost = (r ** 2).sum((1, 2))
    for _ in range(iterations):
        q = _es("tab,tnb->tna", R, X)  # rotated points (T, N, 3)
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
        g = _es("tki,tk->ti", J, r.reshape(T, -1))
        H = _es("tki,tkj->tij", J, J)
        damp = lam[:, None, None] * (np.diagonal(H, axis1=1, axis2=2)[:, None, :] * np.eye(6) + 1e-9 * np.eye(6))
        step = -_bsolve(H + damp, g[..., None])[..., 0]
        Rn = _rodrigues(step[:, :3]) @ R
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


def _rodrigues(w: np.ndarray) -> np.ndarray:
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
        x = _es("tb,tnb->tn", Rn[:, 0], cand_pts)  # camera x of every candidate
        out = np.empty((len(R), 17), np.int64)
        for k, (cand, cols) in enumerate(zip(self.candidates, self._cols)):
            best = np.argmax(self.side[k] * x[:, cols], axis=1)
            out[:, k] = cand[best]
        return out


# ---------------------------------------------------------------------- the fit

class _Bases:
    """Mean and stacked bases [U_exp | U_id] (cm) of a vertex set, as float64 numpy."""

    def __init__(self, model: MorphableModel, idx: np.ndarray):
        t = torch.as_tensor(idx, dtype=torch.long, device=model.device)
        self.mean = model.mean[t].double().cpu().numpy()  # (P, 3)
        B = torch.cat([model.exp_basis[:, t], model.id_basis[:, t]], 0)  # (K, P, 3)
        self.B = B.permute(1, 2, 0).double().cpu().numpy()  # (P, 3, K)
        self.ke = model.num_exp
        self.cache: dict = {}


def _frame_blocks(bases: _Bases, obs_vidx: np.ndarray, pos: dict, R: np.ndarray, t: np.ndarray,
                  f: np.ndarray, points: np.ndarray, weights: np.ndarray, coef: np.ndarray | None = None):
    """Per-frame normal equations of one landmark term, residuals in cm:
    ``sum_j w_j ||P R_f (mean_j + B_j x_f) - (l_fj - t_f) / f_f||^2``, x_f = [e_f, i].

    obs_vidx (P,) fixed or (T, P) per-frame vertex ids (looked up in ``pos``).
    Returns G (T, K, K), h (T, K) over x_f. With ``coef`` (T, K), the current coefficients, the
    system also covers a camera increment c_f = (rotation vector, log-scale, tx, ty) linearised
    at the current shapes: it returns G, h, G_cx (T, 6, K), G_cc (T, 6, 6), h_c (T, 6), the
    blocks of the normal equations over [x_f, c_f].
    """
    T = len(R)
    PR = _proj_rows(R)  # (T, 2, 3)
    target = (points - t[:, None, :2]) / f[:, None, None]  # (T, P, 2) cm
    fixed = obs_vidx.ndim == 1
    rows = np.array([pos[v] for v in obs_vidx]) if fixed else np.vectorize(pos.__getitem__)(obs_vidx)
    Bj = bases.B[rows]  # (P, 3, K) or (T, P, 3, K)
    mean = bases.mean[rows]
    if fixed:
        M = _es("tai,taj->tij", PR, PR)  # (T, 3, 3) = R^T diag(1, 1, 0) R
        key = (rows.tobytes(), weights.tobytes())
        H = bases.cache.get(key)
        if H is None:  # independent of the cameras: computed once per vertex set and weights
            Bt = Bj.transpose(1, 2, 0).reshape(-1, len(rows))  # (3K, P)
            H = ((Bt * weights) @ Bt.T).reshape(3, -1, 3, Bt.shape[0] // 3).transpose(0, 2, 1, 3)
            bases.cache[key] = H
        G = _es("tab,abkl->tkl", M, H)  # 3x3xKxK contraction: O(T K^2), not O(T P K^2)
        resid0 = target - np.matmul(mean[None], PR.transpose(0, 2, 1))  # (T, P, 2)
        q = np.matmul(resid0, PR) * weights[None, :, None]  # (T, P, 3)
        h = q.reshape(T, -1) @ Bj.reshape(-1, Bj.shape[-1])
    else:
        A = np.matmul(PR[:, None], Bj) * np.sqrt(weights)[None, :, None, None]  # (T, P, 2, K)
        A2 = A.reshape(T, -1, A.shape[-1])
        G = A2.transpose(0, 2, 1) @ A2
        resid0 = target - _es("tab,tpb->tpa", PR, mean)
        h = (A2.transpose(0, 2, 1) @ (resid0 * np.sqrt(weights)[None, :, None]).reshape(T, -1, 1))[..., 0]
    if coef is None:
        return G, h
    if fixed:
        S = mean[None] + (coef @ Bj.reshape(-1, Bj.shape[-1]).T).reshape(T, -1, 3)
    else:
        S = mean + _es("tpck,tk->tpc", Bj, coef)
    qv = np.matmul(S, R.transpose(0, 2, 1))  # rotated current points (T, P, 3)
    Jc = np.zeros(qv.shape[:2] + (2, 6))
    Jc[..., 0, 1], Jc[..., 0, 2] = qv[..., 2], -qv[..., 1]  # d(w x q)/dw, image x row
    Jc[..., 1, 0], Jc[..., 1, 2] = qv[..., 2], -qv[..., 0]  # image y row (sign flipped)
    Jc[..., 0, 3], Jc[..., 1, 3] = qv[..., 0], -qv[..., 1]  # d/d log f
    Jc[..., 0, 4] = Jc[..., 1, 5] = 1.0 / f[:, None]  # d/d t
    Jw = Jc * weights[None, :, None, None]
    Jw2 = Jw.reshape(T, -1, 6).transpose(0, 2, 1)  # (T, 6, 2P)
    Gcc = Jw2 @ Jc.reshape(T, -1, 6)
    hc = (Jw2 @ resid0.reshape(T, -1, 1))[..., 0]
    Y = np.matmul(Jw.transpose(0, 1, 3, 2), PR[:, None])  # (T, P, 6, 3)
    if fixed:
        Gcx = np.matmul(Y.transpose(0, 2, 1, 3).reshape(T, 6, -1), Bj.reshape(-1, Bj.shape[-1]))
    else:
        Gcx = Y.transpose(0, 2, 1, 3).reshape(T, 6, -1) @ Bj.reshape(T, -1, Bj.shape[-1])
    return G, h, Gcx, Gcc, hc


def _solve_coefficients(G: np.ndarray, h: np.ndarray, segment_ids: np.ndarray, cfg: FitConfig, kf: int,
                        w_lmk: float, id_prior: np.ndarray, frame_prior: np.ndarray,
                        frame_lo: np.ndarray, frame_hi: np.ndarray, ke: int,
                        ident_fixed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Eq. (3.3) as one sparse bounded linear least-squares problem over all frames.

    G (T, K, K), h (T, K): per-frame normal equations of the landmark terms (unweighted by w_l)
    over x_f = [u_f, i], where u_f (kf,) are the per-frame unknowns (expressions, optionally
    followed by camera increments) with a diagonal prior ``frame_prior`` (T, kf) and bounds
    ``frame_lo/hi`` (kf,). Each frame is compressed exactly to kf rows [R_uu | R_ui] (Cholesky);
    the identity-only remainders are summed into one K_id-row block; the smoothness rows
    ``w_sm ||e_{f-1} - 2 e_f + e_{f+1}||^2`` (first ``ke`` columns, within segments) are added
    as they are. With ``ident_fixed`` the identity is a constant (moved to the right-hand side).
    Returns u (T, kf), i (K_id,), solver info.
    """
    T, K, _ = G.shape
    G = G * w_lmk
    h = h * w_lmk
    if ident_fixed is not None:
        h = h[:, :kf] - _es("tki,i->tk", G[:, :kf, kf:], ident_fixed)
        G = G[:, :kf, :kf]
        K = kf
    ki = K - kf
    G[:, np.arange(kf), np.arange(kf)] += frame_prior  # w_pr a_exp ||e_f||^2 folded into the frame blocks
    Gee, Gei, Gii = G[:, :kf, :kf], G[:, :kf, kf:], G[:, kf:, kf:]
    Lt = torch.linalg.cholesky(torch.from_numpy(np.ascontiguousarray(Gee)))  # (T, kf, kf) lower; R_uu = L^T
    L = Lt.numpy()
    Rei = torch.linalg.solve_triangular(Lt, torch.from_numpy(np.ascontiguousarray(Gei)), upper=False).numpy()
    hf = torch.from_numpy(np.ascontiguousarray(h[:, :kf, None]))
    ce = torch.linalg.solve_triangular(Lt, hf, upper=False).numpy()[..., 0]
    if ki:
        S = (Gii - _es("tki,tkj->tij", Rei, Rei)).sum(0) + id_prior
        si = (h[:, kf:] - _es("tki,tk->ti", Rei, ce)).sum(0)
        Li = np.linalg.cholesky(S)
        ci = np.linalg.solve(Li, si)
    else:
        Li, ci = np.zeros((0, 0)), np.zeros(0)

    n = T * kf + ki
    rows, cols, vals = [], [], []
    Ree = L.transpose(0, 2, 1)
    iu, ju = np.triu_indices(kf)
    fr = np.repeat(np.arange(T), len(iu))
    rows.append(fr * kf + np.tile(iu, T))
    cols.append(fr * kf + np.tile(ju, T))
    vals.append(Ree[:, iu, ju].ravel())
    ii, jj = np.meshgrid(np.arange(kf), np.arange(ki), indexing="ij")
    fr = np.repeat(np.arange(T), kf * ki)
    rows.append(fr * kf + np.tile(ii.ravel(), T))
    cols.append(T * kf + np.tile(jj.ravel(), T))
    vals.append(Rei.reshape(-1))
    r0 = T * kf
    iu2, ju2 = np.triu_indices(ki)
    rows.append(r0 + iu2)
    cols.append(T * kf + ju2)
    vals.append(Li.T[iu2, ju2])
    r0 += ki
    rhs = [ce.ravel(), ci]
    f0 = np.flatnonzero((segment_ids[:-2] == segment_ids[1:-1]) & (segment_ids[1:-1] == segment_ids[2:]))
    if len(f0) and cfg.exp_smooth_sigma > 0:
        ws = 1.0 / cfg.exp_smooth_sigma
        m = len(f0) * ke
        rr = r0 + np.arange(m)
        base = (f0[:, None] * kf + np.arange(ke)[None]).ravel()
        for d, c in ((0, 1.0), (1, -2.0), (2, 1.0)):
            rows.append(rr)
            cols.append(base + d * kf)
            vals.append(np.full(m, c * ws))
        rhs.append(np.zeros(m))
        r0 += m
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r0, n))
    b = np.concatenate(rhs)
    lo = np.concatenate([np.tile(frame_lo, T), np.full(ki, -cfg.id_bound)])
    hi = np.concatenate([np.tile(frame_hi, T), np.full(ki, cfg.id_bound)])
    res = lsq_linear(A, b, bounds=(lo, hi), method="trf", tol=1e-8, lsmr_tol="auto",
                     max_iter=cfg.max_solver_iter, lsmr_maxiter=cfg.lsmr_maxiter, verbose=0)
    x = np.clip(res.x, lo, hi)
    info = {"solver_iterations": int(res.nit), "solver_status": int(res.status), "unknowns": n, "nonzeros": int(A.nnz)}
    ident = x[T * kf:] if ident_fixed is None else np.asarray(ident_fixed, np.float64)
    return x[: T * kf].reshape(T, kf), ident, info


def _identity_only(G: np.ndarray, h: np.ndarray, exp: np.ndarray, cfg: FitConfig, ke: int, w_lmk: float,
                   id_prior: np.ndarray) -> np.ndarray:
    """Identity with cameras and expressions fixed (init step (b)): a small dense bounded solve."""
    Gii = G[:, ke:, ke:].sum(0) * w_lmk + id_prior
    hi = (h[:, ke:] - _es("tek,te->tk", G[:, :ke, ke:], exp)).sum(0) * w_lmk
    L = np.linalg.cholesky(Gii)
    res = lsq_linear(L.T, np.linalg.solve(L, hi), bounds=(-cfg.id_bound, cfg.id_bound), method="bvls")
    return res.x


def fit_video(model: MorphableModel, lmk68: np.ndarray, dense: np.ndarray | None = None,
              dense_vertices: np.ndarray | None = None, segment_ids: np.ndarray | None = None,
              config: FitConfig | None = None, progress=None) -> VideoFit:
    """Fit identity, per-frame expressions and cameras to landmarks (thesis eqs. (3.2)-(3.3)).

    lmk68 (T, 68, 2) pixels, no NaN (smooth/fill the track first); dense (T, P, 2) extra points
    (e.g. mediapipe's, x/y pixels) observed on model vertices ``dense_vertices`` (P,), or None;
    segment_ids (T,) keeps smoothing within continuous segments (default: one segment).
    ``progress`` is an optional callable(str) for stage messages.

    Clips longer than ``config.id_frames`` are fitted in two passes: the identity from that many
    evenly spaced key frames (the whole procedure, no temporal terms), then every frame with
    the identity fixed, which keeps the big sparse problem block-banded.
    """
    cfg = config or FitConfig()
    lmk68 = np.asarray(lmk68, np.float64)
    if lmk68.ndim != 3 or lmk68.shape[1:] != (68, 2) or len(lmk68) == 0:
        raise FaceflowError(f"landmarks must be (T, 68, 2) with T >= 1, got {lmk68.shape}")
    if not np.isfinite(lmk68).all():
        raise FaceflowError("landmarks contain NaN/inf: fit only frames with a detection (fill gaps first)")
    T = len(lmk68)
    seg = np.zeros(T, int) if segment_ids is None else np.asarray(segment_ids)
    if len(seg) != T:
        raise FaceflowError(f"segment_ids has {len(seg)} entries for {T} frames")
    if (dense is None) != (dense_vertices is None):
        raise FaceflowError("pass dense points and dense_vertices together (or neither)")
    use_dense = dense is not None and cfg.dense_weight > 0
    if use_dense:
        dense_vertices = np.asarray(dense_vertices)
        if (dense_vertices.ndim != 1 or not np.issubdtype(dense_vertices.dtype, np.integer)
                or (dense_vertices < 0).any() or (dense_vertices >= model.num_vertices).any()):
            raise FaceflowError(f"dense_vertices must be (P,) vertex indices in [0, {model.num_vertices})")
        dense = np.asarray(dense, np.float64)[..., :2]
        if dense.shape[:2] != (T, len(dense_vertices)) or not np.isfinite(dense).all():
            raise FaceflowError(f"dense points must be finite (T, P, 2) with P = {len(dense_vertices)}, "
                                f"got {dense.shape}")
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    ident = None
    key_stats = {}
    if T > cfg.id_frames:
        keys = np.unique(np.linspace(0, T - 1, cfg.id_frames).round().astype(int))
        say(f"identity from {len(keys)} key frames")
        key_fit = _fit(model, lmk68[keys], dense[keys] if use_dense else None,
                       dense_vertices if use_dense else None, np.arange(len(keys)), cfg, say, None)
        ident = key_fit.id.astype(np.float64)
        key_stats = {"key_frames": int(len(keys)), "key_timings": key_fit.stats["timings"]}
    # with the identity known, one fixed-camera round before the joint refinement is enough
    cfg_all = cfg if ident is None else replace(cfg, iterations=1)
    fit = _fit(model, lmk68, dense if use_dense else None, dense_vertices if use_dense else None, seg, cfg_all, say,
               ident)
    fit.stats.update(key_stats)
    fit.stats["timings"]["total_s"] = time.perf_counter() - t0
    return fit


# complexity: issue 13 splits it into the five steps its docstring names
def _fit(model, lmk68, dense, dense_vertices, seg, cfg: FitConfig, say, ident_fixed) -> VideoFit:  # noqa: C901
    """The fit proper (see :func:`fit_video`); ``ident_fixed`` (K_id,) or None to estimate it."""
    T = len(lmk68)
    use_dense = dense is not None
    timings = {}
    t_start = time.perf_counter()

    jaw = JawContour(model)
    id_prior = identity_prior(model, cfg, T)
    lmk_v = model.lmk68.cpu().numpy()
    inner_v = lmk_v[17:]
    dense_v = np.asarray(dense_vertices, np.int64) if use_dense else np.zeros(0, np.int64)
    vset = np.unique(np.concatenate([jaw.all, inner_v, dense_v]))
    bases = _Bases(model, vset)
    pos = {int(v): i for i, v in enumerate(vset)}
    cand_rows = np.array([pos[v] for v in jaw.all])
    inner_rows = np.array([pos[v] for v in inner_v])
    ke = bases.ke
    K = bases.B.shape[2]
    w_lmk = 1.0 / cfg.lmk_sigma ** 2
    jaw_w = np.full(17, cfg.jaw_weight)
    inner_w = np.ones(51)

    ident = np.zeros(K - ke) if ident_fixed is None else np.asarray(ident_fixed, np.float64)
    exp = np.zeros((T, ke))
    jaw_idx = np.broadcast_to(lmk_v[:17], (T, 17)).copy()

    def shapes_at(rows):
        return bases.mean[rows][None] + _es("pck,tk->tpc", bases.B[rows],
                                                  np.concatenate([exp, np.broadcast_to(ident, (T, ident.size))], 1))

    def all_points():
        """(T, 68, 3) current model-space landmark positions (per-frame jaw vertices)."""
        jaw_rows = np.vectorize(pos.__getitem__)(jaw_idx)
        coef = np.concatenate([exp, np.broadcast_to(ident, (T, ident.size))], 1)
        jaw_pts = bases.mean[jaw_rows] + _es("tpck,tk->tpc", bases.B[jaw_rows], coef)
        return np.concatenate([jaw_pts, shapes_at(inner_rows)], 1)

    weights68 = np.concatenate([jaw_w, inner_w])

    def cameras():
        X = all_points()
        return estimate_cameras(X, lmk68, np.broadcast_to(weights68, (T, 68)))

    def march(R):
        if cfg.jaw_marching:
            return jaw.select(shapes_at(cand_rows), R)
        return jaw_idx

    dense_pts = dense
    dense_w = np.full(len(dense_v), cfg.dense_weight)

    def blocks(R, t, f, joint=False):
        """Sum of the landmark terms' normal equations (see :func:`_frame_blocks`)."""
        coef = np.concatenate([exp, np.broadcast_to(ident, (T, ident.size))], 1) if joint else None
        terms = [(jaw_idx, lmk68[:, :17], jaw_w), (inner_v, lmk68[:, 17:], inner_w)]
        if use_dense:
            terms.append((dense_v, dense_pts, dense_w))
        parts = [_frame_blocks(bases, v, pos, R, t, f, pts, w, coef) for v, pts, w in terms]
        return tuple(sum(p[k] for p in parts) for k in range(len(parts[0])))

    def cost(R, t, f, exp, ident, norm):
        """The energy of eq. (3.3), data term in cm (pixels / ``norm``, per-frame scales), with
        the current jaw vertices."""
        coef = np.concatenate([exp, np.broadcast_to(ident, (T, ident.size))], 1)
        jaw_rows = np.vectorize(pos.__getitem__)(jaw_idx)
        terms = [(bases.mean[jaw_rows] + _es("tpck,tk->tpc", bases.B[jaw_rows], coef), lmk68[:, :17], jaw_w),
                 (bases.mean[inner_rows][None] + _es("pck,tk->tpc", bases.B[inner_rows], coef),
                  lmk68[:, 17:], inner_w)]
        if use_dense:
            rows = np.array([pos[v] for v in dense_v])
            terms.append((bases.mean[rows][None] + _es("pck,tk->tpc", bases.B[rows], coef), dense_pts, dense_w))
        data = 0.0
        for X, l, w in terms:
            r = (f[:, None, None] * _es("tab,tpb->tpa", _proj_rows(R), X) + t[:, None, :2] - l) / norm[:, None, None]
            data += float(_es("p,tpa->", w, r ** 2))
        d2 = exp[:-2] - 2 * exp[1:-1] + exp[2:]
        same = (seg[:-2] == seg[1:-1]) & (seg[1:-1] == seg[2:])
        smooth = float((d2[same] ** 2).sum()) / cfg.exp_smooth_sigma ** 2 if cfg.exp_smooth_sigma > 0 else 0.0
        return w_lmk * data + cfg.a_exp * float((exp ** 2).sum()) + float(ident @ id_prior @ ident) + smooth

    e_lo, e_hi = np.full(ke, cfg.exp_bounds[0]), np.full(ke, cfg.exp_bounds[1])

    # 1. initialisation: rigid face, alternate cameras / identity
    say("initialising (rigid face)")
    for _ in range(cfg.init_alternations):
        R, t, f = cameras()
        jaw_idx = march(R)
        if ident_fixed is None:
            G, h = blocks(R, t, f)
            ident = _identity_only(G, h, exp, cfg, ke, w_lmk, id_prior)
    R, t, f = cameras()
    jaw_idx = march(R)
    if cfg.camera_smoothing and T >= 5:
        R, t, f = smooth_cameras(R, t, f, seg)
        jaw_idx = march(R)
    timings["init_s"] = time.perf_counter() - t_start

    # 2. main fit with the cameras fixed (eq. (3.3)); 3. cameras of the fitted shapes, repeat
    info = {}
    for it in range(cfg.iterations):
        say(f"solving expressions and identity (round {it + 1}/{cfg.iterations})")
        t0 = time.perf_counter()
        G, h = blocks(R, t, f)
        exp, ident, info = _solve_coefficients(G, h, seg, cfg, ke, w_lmk, id_prior,
                                               np.full((T, ke), cfg.a_exp), e_lo, e_hi, ke, ident_fixed)
        timings[f"solve{it + 1}_s"] = time.perf_counter() - t0
        if it + 1 < cfg.iterations:
            R, t, f = cameras()
            if cfg.camera_smoothing and T >= 5:
                R, t, f = smooth_cameras(R, t, f, seg)
            jaw_idx = march(R)

    # 4. joint refinement: cameras and coefficients together (Gauss-Newton on the same energy,
    # the camera increments as extra unbounded per-frame unknowns with Levenberg damping). The
    # alternation above zig-zags along the pose/shape valley; this step walks down it.
    t0 = time.perf_counter()
    lam = 1e-2
    refine = []
    for it in range(cfg.refine_iterations):
        say(f"joint refinement {it + 1}/{cfg.refine_iterations}")
        Gxx, hx, Gcx, Gcc, hc = blocks(R, t, f, joint=True)
        Gxc = Gcx.transpose(0, 2, 1)
        current = cost(R, t, f, exp, ident, f)
        trials = 0
        while True:
            # the unbounded camera increments are eliminated per frame (Schur complement), so the
            # sparse bounded problem keeps the size and conditioning of eq. (3.3)
            Gcc_d = Gcc + lam * np.diagonal(Gcc, axis1=1, axis2=2)[:, :, None] * np.eye(6) + 1e-12 * np.eye(6)
            W = _bsolve(Gcc_d, Gxc.transpose(0, 2, 1))  # (T, 6, K)
            wc = _bsolve(Gcc_d, hc[..., None])[..., 0]  # (T, 6)
            Gr = Gxx - _es("tkc,tcl->tkl", Gxc, W)
            hr = hx - _es("tkc,tc->tk", Gxc, wc)
            exp_n, ident_n, info = _solve_coefficients(Gr, hr, seg, cfg, ke, w_lmk, id_prior,
                                                       np.full((T, ke), cfg.a_exp), e_lo, e_hi, ke, ident_fixed)
            x_n = np.concatenate([exp_n, np.broadcast_to(ident_n, (T, ident_n.size))], 1)
            dc = wc - _es("tck,tk->tc", W, x_n)
            R_n = _rodrigues(dc[:, :3]) @ R
            f_n = f * np.exp(dc[:, 3])
            t_n = t.copy()
            t_n[:, :2] += dc[:, 4:6]
            new = cost(R_n, t_n, f_n, exp_n, ident_n, f)
            trials += 1
            if new <= current or trials >= 3:
                break
            lam *= 10
        if new > current:
            break
        improvement = (current - new) / max(current, 1e-12)
        R, t, f, exp, ident = R_n, t_n, f_n, exp_n, ident_n
        lam = max(lam / 10, 1e-6)
        jaw_idx = march(R)
        refine.append(new)
        if improvement < 1e-3:
            break
    timings["refine_s"] = time.perf_counter() - t0
    info["refine_costs"] = refine

    # 5. the refinement moves every frame's camera on its own: smooth the camera sequence again
    # (as in the initialisation) and re-solve the expressions for those cameras
    if cfg.camera_smoothing and T >= 5:
        t0 = time.perf_counter()
        R, t, f = smooth_cameras(R, t, f, seg)
        jaw_idx = march(R)
        G, h = blocks(R, t, f)
        exp, _, _ = _solve_coefficients(G, h, seg, cfg, ke, w_lmk, id_prior, np.full((T, ke), cfg.a_exp),
                                        e_lo, e_hi, ke, ident)
        timings["final_s"] = time.perf_counter() - t0

    # statistics: 68-landmark reprojection error in pixels
    X = all_points()
    proj = f[:, None, None] * _es("tab,tnb->tna", _proj_rows(R), X) + t[:, None, :2]
    err = np.linalg.norm(proj - lmk68, axis=-1).mean(1)
    iod = np.linalg.norm(lmk68[:, 45] - lmk68[:, 36], axis=-1)
    timings["total_s"] = time.perf_counter() - t_start
    stats = {"frames": T, "segments": int(len(np.unique(seg))), **info, "timings": timings,
             "config": asdict(cfg), "dense_points": int(len(dense_v)),
             **identity_plausibility(ident)}
    f32 = np.float32
    return VideoFit(ident.astype(f32), exp.astype(f32), R.astype(f32), t.astype(f32), f.astype(f32),
                    jaw_idx, err.astype(f32), iod.astype(f32), stats)


def fit_image(model: MorphableModel, lmk68: np.ndarray, dense: np.ndarray | None = None,
              dense_vertices: np.ndarray | None = None, config: FitConfig | None = None) -> VideoFit:
    """Single-image fit (a photo): the video fit with one frame. lmk68 (68, 2) or (1, 68, 2)."""
    lmk68 = np.asarray(lmk68, np.float64)
    if lmk68.shape not in ((68, 2), (1, 68, 2)):
        raise FaceflowError(f"fit_image takes one frame's landmarks (68, 2), got {lmk68.shape}")
    lmk68 = lmk68.reshape(1, 68, 2)
    if dense is not None:
        dense = np.asarray(dense, np.float64)
        if dense.ndim not in (2, 3) or (dense.ndim == 3 and dense.shape[0] != 1):
            raise FaceflowError(f"fit_image takes one frame's dense points (P, 2|3), got {dense.shape}")
        dense = dense.reshape(1, -1, dense.shape[-1])
    return fit_video(model, lmk68, dense, dense_vertices, None, config)


def reprojection_summary(fit: VideoFit) -> dict:
    """Median / 95th percentile of the per-frame mean landmark error, in pixels and as a
    fraction of the inter-ocular distance."""
    e = fit.lmk_error.astype(np.float64)
    rel = fit.relative_error.astype(np.float64)
    return {"median_px": float(np.median(e)), "p95_px": float(np.percentile(e, 95)),
            "mean_px": float(e.mean()), "median_iod": float(np.median(rel)),
            "p95_iod": float(np.percentile(rel, 95))}
