"""The energy of the video fit (:mod:`faceflow.face.fitting`, thesis eq. (3.3)) and its solvers.

:class:`FitConfig` holds the weights; :func:`identity_prior` the identity's quadratic prior;
:func:`frame_blocks` the per-frame normal equations of a landmark term, residuals in cm,
optionally including a linearised camera increment; :func:`solve_coefficients` the sparse
bounded least-squares problem over all frames (landmark blocks, priors, temporal smoothness);
:func:`identity_only` the small identity solve of the initialisation. float64 numpy throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import lsq_linear

from faceflow.face.fit_cameras import einsum, image_rows
from faceflow.geometry.morphable import MorphableModel


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
    solver_tol: float = 1e-8  # lsq_linear's stopping tolerance (relative cost change per step)
    jaw_marching: bool = True


def identity_prior(model: MorphableModel, cfg: FitConfig, frames: int = 1) -> np.ndarray:
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


class Bases:
    """Mean and stacked bases [U_exp | U_id] (cm) of a vertex set, as float64 numpy."""

    def __init__(self, model: MorphableModel, idx: np.ndarray):
        t = torch.as_tensor(idx, dtype=torch.long, device=model.device)
        self.mean = model.mean[t].double().cpu().numpy()  # (P, 3)
        B = torch.cat([model.exp_basis[:, t], model.id_basis[:, t]], 0)  # (K, P, 3)
        self.B = B.permute(1, 2, 0).double().cpu().numpy()  # (P, 3, K)
        self.ke = model.num_exp
        self.cache: dict = {}


def frame_blocks(bases: Bases, obs_vidx: np.ndarray, pos: dict, R: np.ndarray, t: np.ndarray,
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
    PR = image_rows(R)  # (T, 2, 3)
    target = (points - t[:, None, :2]) / f[:, None, None]  # (T, P, 2) cm
    fixed = obs_vidx.ndim == 1
    rows = np.array([pos[v] for v in obs_vidx]) if fixed else np.vectorize(pos.__getitem__)(obs_vidx)
    Bj = bases.B[rows]  # (P, 3, K) or (T, P, 3, K)
    mean = bases.mean[rows]
    if fixed:
        M = einsum("tai,taj->tij", PR, PR)  # (T, 3, 3) = R^T diag(1, 1, 0) R
        key = (rows.tobytes(), weights.tobytes())
        H = bases.cache.get(key)
        if H is None:  # independent of the cameras: computed once per vertex set and weights
            Bt = Bj.transpose(1, 2, 0).reshape(-1, len(rows))  # (3K, P)
            H = ((Bt * weights) @ Bt.T).reshape(3, -1, 3, Bt.shape[0] // 3).transpose(0, 2, 1, 3)
            bases.cache[key] = H
        G = einsum("tab,abkl->tkl", M, H)  # 3x3xKxK contraction: O(T K^2), not O(T P K^2)
        resid0 = target - np.matmul(mean[None], PR.transpose(0, 2, 1))  # (T, P, 2)
        q = np.matmul(resid0, PR) * weights[None, :, None]  # (T, P, 3)
        h = q.reshape(T, -1) @ Bj.reshape(-1, Bj.shape[-1])
    else:
        A = np.matmul(PR[:, None], Bj) * np.sqrt(weights)[None, :, None, None]  # (T, P, 2, K)
        A2 = A.reshape(T, -1, A.shape[-1])
        G = A2.transpose(0, 2, 1) @ A2
        resid0 = target - einsum("tab,tpb->tpa", PR, mean)
        h = (A2.transpose(0, 2, 1) @ (resid0 * np.sqrt(weights)[None, :, None]).reshape(T, -1, 1))[..., 0]
    if coef is None:
        return G, h
    if fixed:
        S = mean[None] + (coef @ Bj.reshape(-1, Bj.shape[-1]).T).reshape(T, -1, 3)
    else:
        S = mean + einsum("tpck,tk->tpc", Bj, coef)
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


def solve_coefficients(G: np.ndarray, h: np.ndarray, segment_ids: np.ndarray, cfg: FitConfig, kf: int,
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
        h = h[:, :kf] - einsum("tki,i->tk", G[:, :kf, kf:], ident_fixed)
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
        S = (Gii - einsum("tki,tkj->tij", Rei, Rei)).sum(0) + id_prior
        si = (h[:, kf:] - einsum("tki,tk->ti", Rei, ce)).sum(0)
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
    res = lsq_linear(A, b, bounds=(lo, hi), method="trf", tol=cfg.solver_tol, lsmr_tol="auto",
                     max_iter=cfg.max_solver_iter, lsmr_maxiter=cfg.lsmr_maxiter, verbose=0)
    x = np.clip(res.x, lo, hi)
    info = {"solver_iterations": int(res.nit), "solver_status": int(res.status), "unknowns": n, "nonzeros": int(A.nnz)}
    ident = x[T * kf:] if ident_fixed is None else np.asarray(ident_fixed, np.float64)
    return x[: T * kf].reshape(T, kf), ident, info


def identity_only(G: np.ndarray, h: np.ndarray, exp: np.ndarray, cfg: FitConfig, ke: int, w_lmk: float,
                   id_prior: np.ndarray) -> np.ndarray:
    """Identity with cameras and expressions fixed (init step (b)): a small dense bounded solve."""
    Gii = G[:, ke:, ke:].sum(0) * w_lmk + id_prior
    hi = (h[:, ke:] - einsum("tek,te->tk", G[:, :ke, ke:], exp)).sum(0) * w_lmk
    L = np.linalg.cholesky(Gii)
    res = lsq_linear(L.T, np.linalg.solve(L, hi), bounds=(-cfg.id_bound, cfg.id_bound), method="bvls")
    return res.x
