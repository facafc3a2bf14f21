"""Tests of faceflow.face.fitting: the video fit of the morphable model to 68 landmarks (Head2Head++
thesis eqs. (3.2)-(3.3)) and its pieces (faceflow.face.fit_cameras, faceflow.face.fit_energy).

Ground truth comes from synthetic renders: an identity, smooth expression and pose sequences,
projected with :class:`faceflow.geometry.camera.Camera`; the 68 input landmarks are the projected model
landmarks, with the jaw points on the silhouette (chosen by :meth:`JawContour.select` on the true
shapes, as a 2D detector would place them). The solvers are checked against brute-force
references (scipy's ``least_squares`` / dense ``lsq_linear(method='bvls')`` on the uncompressed
system, finite differences). Real media (one still, one clip) come from ``$FACEFLOW_MEDIA`` or
``<repo>/../shared/media``; those tests skip when it is absent (fail with
FACEFLOW_REQUIRE_ASSETS=1).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _media import media
from scipy.optimize import least_squares, lsq_linear
from scipy.spatial.transform import Rotation
from scipy.stats import chi2

from faceflow.errors import FaceflowError
from faceflow.face import fit_cameras as FC
from faceflow.face import fit_energy as FE
from faceflow.face import fitting as F
from faceflow.face.fit_cameras import rodrigues
from faceflow.face.fit_energy import Bases, frame_blocks, solve_coefficients
from faceflow.geometry.camera import Camera, euler_to_rotation, rotation_to_euler

FLIP2 = np.array([1.0, -1.0])  # image y down, model y up


# ----------------------------------------------------------------------------- synthetic harness

def make_scene(model, T: int, seed: int, yaw: float = 30.0, yaw0: float = 0.0, pitch: float = 8.0,
               roll: float = 5.0, id_sd: float = 0.8, n_exp: int = 8) -> dict:
    """A synthetic clip: identity ~ N(0, id_sd^2), ``n_exp`` expression coefficients moving
    smoothly in [0, 1], pose yaw0 + yaw sin, pitch sin, roll sin (degrees); f = 10 px/cm.
    Returns ident (K_id,), exp (T, K_exp), R (T, 3, 3), img (T, V, 3) image-space vertices,
    lmk (T, 68, 2) input landmarks (jaw on the silhouette), jaw (T, 17) their jaw vertices."""
    rng = np.random.default_rng(seed)
    ident = rng.normal(0, id_sd, model.num_id).astype(np.float32)
    tt = np.arange(T)
    exp = np.zeros((T, model.num_exp), np.float32)
    for j in rng.choice(model.num_exp, n_exp, replace=False):
        exp[:, j] = np.clip(0.5 + 0.5 * np.sin(tt / 7.0 + rng.uniform(0, 6)), 0, 1) * rng.uniform(0.3, 1)
    ang = np.radians(np.stack([pitch * np.sin(tt / 11), yaw0 + yaw * np.sin(tt / 13 + 0.3), roll * np.sin(tt / 9)], 1))
    R = euler_to_rotation(torch.from_numpy(ang)).float()
    cam = Camera(R, torch.tensor([[128.0, 140.0, 0.0]]).expand(T, 3), torch.full((T,), 10.0))
    verts = model.shape(torch.from_numpy(ident)[None].expand(T, -1), torch.from_numpy(exp))
    img = cam.project(verts).double().numpy()
    contour = FC.JawContour(model)
    jaw = contour.select(verts[:, contour.all].double().numpy(), R.double().numpy())
    inner = model.lmk68.numpy()[17:]
    lmk = np.concatenate([img[np.arange(T)[:, None], jaw, :2], img[:, inner, :2]], 1)
    return {"ident": ident, "exp": exp, "R": R.double().numpy(), "img": img, "lmk": lmk, "jaw": jaw}


def rotation_error_deg(R1: np.ndarray, R2: np.ndarray) -> np.ndarray:
    """(T,) geodesic angle between rotations (T, 3, 3), degrees."""
    c = (np.einsum("tij,tij->t", np.asarray(R1, np.float64), np.asarray(R2, np.float64)) - 1) / 2
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def fit_errors(model, fit: F.VideoFit, scene: dict) -> dict:
    """rot: (T,) rotation error (deg); mesh: (T,) mean image-space (x, y) error of the inner-face
    vertices / inter-ocular distance; lmk: (T,) mean 68-landmark reprojection error (px)."""
    face = model.subset("face").indices
    V = fit.image_vertices(model, vertex_idx=face).numpy()
    true = scene["img"][:, face.numpy(), :2]
    iod = np.linalg.norm(scene["lmk"][:, 45] - scene["lmk"][:, 36], axis=-1)
    mesh = np.linalg.norm(V[..., :2] - true, axis=-1).mean(1) / iod
    return {"rot": rotation_error_deg(scene["R"], fit.rotation), "mesh": mesh, "lmk": fit.lmk_error.astype(np.float64)}


def report(name: str, e: dict) -> None:
    print(f"{name}: rot max {e['rot'].max():.3f} deg, mesh mean {100 * e['mesh'].mean():.2f}% IOD "
          f"(max {100 * e['mesh'].max():.2f}%), lmk mean {e['lmk'].mean():.3f} px")


T_VIDEO = 20


@pytest.fixture(scope="module")
def scene(skin_model):
    sc = make_scene(skin_model, T_VIDEO, seed=1)
    face = skin_model.subset("face").indices.numpy()
    sc["dense_v"] = np.sort(np.random.default_rng(5).choice(face, 400, replace=False))
    return sc


@pytest.fixture(scope="module")
def fit_dense(skin_model, scene):
    return F.fit_video(skin_model, scene["lmk"], scene["img"][:, scene["dense_v"], :2], scene["dense_v"])


@pytest.fixture(scope="module")
def fit_noisy(skin_model, scene):
    """Landmarks and dense points with N(0, 0.5 px) noise."""
    rng = np.random.default_rng(11)
    lmk = scene["lmk"] + rng.normal(0, 0.5, scene["lmk"].shape)
    dense = scene["img"][:, scene["dense_v"], :2] + rng.normal(0, 0.5, (T_VIDEO, len(scene["dense_v"]), 2))
    return F.fit_video(skin_model, lmk, dense, scene["dense_v"])


# ----------------------------------------------------------------------------- 1. synthetic recovery

@pytest.mark.slow
def test_video_recovery_with_dense_points(skin_model, scene, fit_dense):
    e = fit_errors(skin_model, fit_dense, scene)
    report("video + dense", e)
    assert e["rot"].max() < 2.0
    assert e["mesh"].mean() < 0.02 and e["mesh"].max() < 0.03
    assert e["lmk"].max() < 1.0
    assert fit_dense.stats["plausible"]
    # the Euler angles agree too (yaw up to 30 degrees, away from gimbal lock)
    true_ang = np.degrees(rotation_to_euler(torch.from_numpy(scene["R"])).numpy())
    assert np.abs(fit_dense.angles - true_ang).max() < 2.0
    assert fit_dense.exp.shape == (T_VIDEO, skin_model.num_exp) and fit_dense.id.shape == (skin_model.num_id,)
    assert (fit_dense.exp >= 0).all() and (fit_dense.exp <= 1).all()


@pytest.mark.slow
def test_video_recovery_landmarks_only(skin_model, scene):
    fit = F.fit_video(skin_model, scene["lmk"])
    e = fit_errors(skin_model, fit, scene)
    report("video, 68 landmarks only", e)
    assert e["rot"].max() < 2.0
    assert e["mesh"].mean() < 0.03
    assert e["lmk"].max() < 1.0
    assert fit.stats["dense_points"] == 0


@pytest.mark.slow
def test_video_recovery_with_landmark_noise(skin_model, scene, fit_noisy):
    e = fit_errors(skin_model, fit_noisy, scene)
    report("video + dense, 0.5 px noise", e)
    assert e["rot"].max() < 2.0
    assert e["mesh"].mean() < 0.03
    # the reprojection error is against the noisy input: about the noise level (0.5 * sqrt(pi/2))
    assert 0.3 < e["lmk"].mean() < 1.0


@pytest.mark.slow
def test_output_cameras_are_temporally_smooth(skin_model, scene, fit_noisy):
    true_ang = np.degrees(rotation_to_euler(torch.from_numpy(scene["R"])).numpy())
    err = fit_noisy.angles - true_ang
    jitter = np.sqrt((np.diff(err, 2, axis=0) ** 2).mean(0))  # RMS second difference of the error
    print("angle-error jitter (pitch, yaw, roll) deg:", jitter.round(3))
    assert jitter.max() < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("yaw", [35.0, -35.0])
def test_image_turned_head_needs_jaw_marching(skin_model, yaw):
    sc = make_scene(skin_model, 1, seed=1, yaw=0.0, yaw0=yaw, pitch=0.0, roll=0.0)
    fit = F.fit_image(skin_model, sc["lmk"][0])
    off = F.fit_image(skin_model, sc["lmk"][0], config=FE.FitConfig(jaw_marching=False))
    e, e_off = fit_errors(skin_model, fit, sc), fit_errors(skin_model, off, sc)
    report(f"image yaw {yaw:+.0f}, marching", e)
    report(f"image yaw {yaw:+.0f}, no marching", e_off)
    assert e["rot"][0] < 2.0
    assert e["mesh"][0] < 0.05
    assert e["lmk"][0] < 1.0
    assert fit.stats["plausible"]
    # marching finds the silhouette vertices the landmarks were made from (most jaw points exactly)
    assert (fit.jaw_vertices[0] == sc["jaw"][0]).mean() >= 0.75
    # without marching the jaw points pull the pose: clearly worse on every measure
    assert e_off["rot"][0] > max(2.0, 3 * e["rot"][0])
    assert e_off["lmk"][0] > max(1.0, 3 * e["lmk"][0])
    assert e_off["mesh"][0] > 2 * e["mesh"][0]


# ----------------------------------------------------------------------------- 2. cameras

def _project(R, f, t, X):
    return f[:, None, None] * np.einsum("tab,tnb->tna", R[:, :2], X) * FLIP2 + t[:, None, :2]


def _camera_problem(skin_model, noise: float, seed: int, T: int = 8):
    """Half random point clouds, half noisy copies of the model's 68 landmarks; random rotations,
    scales and translations; per-point weights."""
    rng = np.random.default_rng(seed)
    face = skin_model.mean[skin_model.lmk68].double().numpy()
    X = np.concatenate([rng.normal(0, 4, (T // 2, 68, 3)), face + rng.normal(0, 0.3, (T - T // 2, 68, 3))])
    R = Rotation.random(T, random_state=seed).as_matrix()
    f = rng.uniform(3, 20, T)
    t = np.c_[rng.uniform(50, 400, (T, 2)), np.zeros(T)]
    w = rng.uniform(0.2, 2.0, (T, 68))
    l = _project(R, f, t, X) + rng.normal(0, noise, (T, 68, 2))
    return X, l, w, R, f, t


def test_estimate_cameras_exact_without_noise(skin_model):
    X, l, w, R, f, t = _camera_problem(skin_model, 0.0, seed=3)
    for weights in (None, w):
        Re, te, fe = FC.estimate_cameras(X, l, weights)
        assert np.abs(Re - R).max() < 1e-6
        assert np.abs(fe / f - 1).max() < 1e-6
        assert np.abs(te - t).max() < 1e-6
        assert np.allclose(np.linalg.det(Re), 1.0)


def test_estimate_cameras_matches_least_squares_reference(skin_model):
    X, l, w, R, f, t = _camera_problem(skin_model, 5.0, seed=4)
    Re, te, fe = FC.estimate_cameras(X, l, w)
    worst = 0.0
    for k in range(len(X)):
        def resid(p):
            Rk = Rotation.from_rotvec(p[:3]).as_matrix()
            return ((np.exp(p[3]) * (X[k] @ Rk.T)[:, :2] * FLIP2 + p[4:6] - l[k]) * np.sqrt(w[k])[:, None]).ravel()

        starts = [np.r_[Rotation.from_matrix(R[k]).as_rotvec(), np.log(f[k]), t[k, :2]],
                  np.r_[Rotation.from_matrix(Re[k]).as_rotvec(), np.log(fe[k]), te[k, :2]]]
        best = min(2 * least_squares(resid, p0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15).cost for p0 in starts)
        ours = float((resid(np.r_[Rotation.from_matrix(Re[k]).as_rotvec(), np.log(fe[k]), te[k, :2]]) ** 2).sum())
        worst = max(worst, ours / best - 1)
    print(f"estimate_cameras: worst relative excess cost over least_squares {worst:.2e}")
    assert worst < 1e-6


def test_rodrigues_matches_scipy():
    w = np.random.default_rng(0).normal(0, 1.5, (20, 3))
    w[0] = 0.0
    w[1] = [1e-10, 0, 0]
    assert np.abs(rodrigues(w) - Rotation.from_rotvec(w).as_matrix()).max() < 1e-12


def test_smooth_cameras_reduces_jitter():
    T = 60
    tt = np.arange(T)
    rng = np.random.default_rng(2)
    ang = np.radians(np.stack([5 * np.sin(tt / 9), 25 * np.sin(tt / 15), 4 * np.cos(tt / 11)], 1))
    f = 10 * np.exp(0.05 * np.sin(tt / 10))
    t = np.c_[200 + 20 * np.sin(tt / 12), 150 + 10 * np.cos(tt / 8), np.zeros(T)]
    R = euler_to_rotation(torch.from_numpy(ang)).numpy()
    Rn = rodrigues(rng.normal(0, np.radians(1.0), (T, 3))) @ R
    fn, tn = f * np.exp(rng.normal(0, 0.02, T)), t + np.c_[rng.normal(0, 2, (T, 2)), np.zeros(T)]
    Rs, ts, fs = FC.smooth_cameras(Rn, tn, fn)
    assert rotation_error_deg(Rs, R).mean() < 0.5 * rotation_error_deg(Rn, R).mean()
    assert np.abs(ts - t)[:, :2].mean() < 0.5 * np.abs(tn - t)[:, :2].mean()
    assert np.abs(np.log(fs / f)).mean() < 0.5 * np.abs(np.log(fn / f)).mean()
    assert (ts[:, 2] == tn[:, 2]).all()


# ----------------------------------------------------------------------------- 3. the sparse solve

def _explicit_rows(model, vid, R, t, f, l, w):
    """Per-frame dense landmark rows, straight from the model tensors: A_f (2P, K) and b_f (2P,)
    with sqrt(w_j) (P R_f B_j x - ((l_fj - t_f) / f_f - P R_f mean_j)), x = [e, i]."""
    mean = model.mean[vid].double().numpy()
    B = torch.cat([model.exp_basis[:, vid], model.id_basis[:, vid]], 0).double().numpy()  # (K, P, 3)
    sw = np.sqrt(np.repeat(w, 2))
    A, b = [], []
    for k in range(len(R)):
        PR = R[k, :2] * FLIP2[:, None]
        A.append(sw[:, None] * np.einsum("ac,kpc->pak", PR, B).reshape(2 * len(vid), -1))
        b.append(sw * ((l[k] - t[k, :2]) / f[k] - mean @ PR.T).ravel())
    return A, b


@pytest.fixture(scope="module")
def small_problem(skin_model):
    """T=4 frames, inner 51 landmarks with 1 px noise and random weights, random cameras."""
    rng = np.random.default_rng(0)
    T, ke, ki = 4, skin_model.num_exp, skin_model.num_id
    vid = skin_model.lmk68.numpy()[17:]
    w = rng.uniform(0.5, 1.5, len(vid))
    R = Rotation.from_euler("xyz", rng.uniform(-20, 20, (T, 3)), degrees=True).as_matrix()
    f = rng.uniform(8, 12, T)
    t = np.c_[rng.uniform(100, 200, (T, 2)), np.zeros(T)]
    e_true = np.clip(rng.normal(0.1, 0.3, (T, ke)), 0, 1)
    i_true = rng.normal(0, 1, ki)
    mean = skin_model.mean[vid].double().numpy()
    B = torch.cat([skin_model.exp_basis[:, vid], skin_model.id_basis[:, vid]], 0).double().numpy()
    X = mean + np.einsum("kpc,tk->tpc", B, np.c_[e_true, np.broadcast_to(i_true, (T, ki))])
    l = _project(R, f, t, X) + rng.normal(0, 1.0, (T, len(vid), 2))
    A, b = _explicit_rows(skin_model, vid, R, t, f, l, w)
    G = np.stack([a.T @ a for a in A])
    h = np.stack([a.T @ c for a, c in zip(A, b)])
    return {"T": T, "ke": ke, "ki": ki, "vid": vid, "w": w, "R": R, "f": f, "t": t, "l": l,
            "A": A, "b": b, "G": G, "h": h, "i_true": i_true}


def _dense_system(p, cfg: FE.FitConfig, id_prior, seg, ident_fixed=None):
    """The uncompressed eq. (3.3) as one dense least-squares system over [e_1..e_T, (i)]: every
    landmark row, sqrt(a_exp) I, chol(id prior)^T, and second differences / exp_smooth_sigma
    within segments. Returns A, b, lo, hi."""
    T, ke, ki = len(seg), p["ke"], p["ki"]
    n = T * ke + (ki if ident_fixed is None else 0)
    w_lmk = 1.0 / cfg.lmk_sigma ** 2
    rows, rhs = [], []
    for k in range(T):
        Ak = np.zeros((len(p["b"][k]), n))
        Ak[:, k * ke:(k + 1) * ke] = p["A"][k][:, :ke]
        bk = p["b"][k].copy()
        if ident_fixed is None:
            Ak[:, T * ke:] = p["A"][k][:, ke:]
        else:
            bk -= p["A"][k][:, ke:] @ ident_fixed
        rows.append(np.sqrt(w_lmk) * Ak)
        rhs.append(np.sqrt(w_lmk) * bk)
    rows.append(np.sqrt(cfg.a_exp) * np.eye(T * ke, n))
    rhs.append(np.zeros(T * ke))
    if ident_fixed is None:
        Ai = np.zeros((ki, n))
        Ai[:, T * ke:] = np.linalg.cholesky(id_prior).T
        rows.append(Ai)
        rhs.append(np.zeros(ki))
    for k in range(T - 2):
        if seg[k] == seg[k + 1] == seg[k + 2]:
            As = np.zeros((ke, n))
            for d, c in ((0, 1.0), (1, -2.0), (2, 1.0)):
                As[:, (k + d) * ke:(k + d + 1) * ke] = c / cfg.exp_smooth_sigma * np.eye(ke)
            rows.append(As)
            rhs.append(np.zeros(ke))
    lo = np.r_[np.full(T * ke, cfg.exp_bounds[0]), np.full(n - T * ke, -cfg.id_bound)]
    hi = np.r_[np.full(T * ke, cfg.exp_bounds[1]), np.full(n - T * ke, cfg.id_bound)]
    return np.concatenate(rows), np.concatenate(rhs), lo, hi


# segment ids (their length = the frames used) and whether the identity is fixed; in the second
# case the smoothness triple (1, 2, 3) crosses a segment boundary and must be left out
CASES = {"free identity": (np.array([0, 0, 0, 0]), False), "fixed identity": (np.array([0, 0, 0, 1]), True)}


@pytest.fixture(scope="module")
def exact_optima(skin_model, small_problem):
    """BVLS (exact active-set) optimum of the dense system of each case."""
    cfg = FE.FitConfig()
    id_prior = FE.identity_prior(skin_model, cfg)
    out = {}
    for name, (seg, fixed) in CASES.items():
        ident = small_problem["i_true"] + 0.2 if fixed else None
        A, b, lo, hi = _dense_system(small_problem, cfg, id_prior, seg, ident)
        Q, Rq = np.linalg.qr(A)  # same minimiser, fewer rows for BVLS's inner dense solves
        ref = lsq_linear(Rq, Q.T @ b, bounds=(lo, hi), method="bvls", tol=1e-10)
        g = A.T @ (A @ ref.x - b)  # KKT: gradient >= 0 at lower bounds, <= 0 at upper, ~0 inside
        at_lo, at_hi = ref.x <= lo + 1e-9, ref.x >= hi - 1e-9
        free = ~(at_lo | at_hi)
        assert np.abs(g[free]).max() < 1e-6 * np.abs(A.T @ b).max()
        assert (g[at_lo] > -1e-6).all() and (g[at_hi] < 1e-6).all()
        assert at_lo.sum() > 20  # the bounds matter in this problem
        out[name] = (A, b, ref.x, ident, seg)
    return id_prior, out


def _solve(p, cfg, id_prior, seg, ident):
    T, ke = len(seg), p["ke"]
    return solve_coefficients(p["G"][:T].copy(), p["h"][:T].copy(), seg, cfg, ke, 1.0 / cfg.lmk_sigma ** 2, id_prior,
                                 np.full((T, ke), cfg.a_exp), np.full(ke, cfg.exp_bounds[0]),
                                 np.full(ke, cfg.exp_bounds[1]), ke, ident)


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_solve_coefficients_is_the_exact_minimiser(small_problem, exact_optima, case):
    """With enough solver iterations the compressed sparse problem has the dense problem's optimum
    (the compression, priors, smoothness rows, segments and fixed identity are exact)."""
    id_prior, optima = exact_optima
    A, b, x_ref, ident, seg = optima[case]
    # the default tolerance stops on a small relative cost *change*, which does not bound the
    # distance to the optimum (1.3e-6 above it seen once); a tight one converges fully
    cfg = FE.FitConfig(max_solver_iter=2000, lsmr_maxiter=2000, solver_tol=1e-13)
    e, i, info = _solve(small_problem, cfg, id_prior, seg, ident)
    x = e.ravel() if ident is not None else np.r_[e.ravel(), i]
    cost, best = float(((A @ x - b) ** 2).sum()), float(((A @ x_ref - b) ** 2).sum())
    print(f"{case}: converged sparse cost {cost:.6f}, exact {best:.6f}, rel {cost / best - 1:.1e}, {info}")
    assert cost / best - 1 < 1e-9
    assert e.shape == (len(seg), small_problem["ke"])
    if ident is not None:
        assert np.array_equal(i, ident)


# ----------------------------------------------------------------------------- 4. frame blocks

def test_frame_blocks_equal_explicit_rows(skin_model, small_problem):
    p = small_problem
    vset = np.unique(p["vid"])
    bases = Bases(skin_model, vset)
    pos = {int(v): j for j, v in enumerate(vset)}
    scale = np.abs(p["G"]).max(), np.abs(p["h"]).max()
    for vidx in (p["vid"], np.broadcast_to(p["vid"], (p["T"], len(p["vid"])))):  # fixed and per-frame paths
        G, h = frame_blocks(bases, vidx, pos, p["R"], p["t"], p["f"], p["l"], p["w"])
        assert np.abs(G - p["G"]).max() < 1e-10 * scale[0]
        assert np.abs(h - p["h"]).max() < 1e-10 * scale[1]


def _joint_system(G, h, Gcx, Gcc, hc, ke):
    """The joint normal equations over [e, c, i] from frame_blocks' blocks over [e, i] and c."""
    K = G.shape[1]
    order = np.r_[np.arange(ke), K + np.arange(6), ke + np.arange(K - ke)]
    full = np.block([[G, Gcx.transpose(0, 2, 1)], [Gcx, Gcc]])
    return full[:, order][:, :, order], np.concatenate([h, hc], 1)[:, order]


def test_frame_blocks_joint_camera_columns_match_finite_differences(skin_model, scene):
    """Joint system [e, c, i] = normal equations of the residual linearised in the camera
    increment c = (left rotation vector, log scale, tx, ty) at the current shapes: G = J^T W J,
    h = -J^T W r(x=0, c=0), with J from central differences (checked away from the truth)."""
    T, ke, ki = 3, skin_model.num_exp, skin_model.num_id
    rng = np.random.default_rng(3)
    inner = skin_model.lmk68.numpy()[17:]
    jaw = scene["jaw"][:T]
    vset = np.unique(np.concatenate([jaw.ravel(), inner]))
    bases = Bases(skin_model, vset)
    pos = {int(v): j for j, v in enumerate(vset)}
    R = rodrigues(rng.normal(0, 0.05, (T, 3))) @ scene["R"][:T]
    f = 10.0 * np.exp(rng.normal(0, 0.05, T))
    t = np.c_[128 + rng.normal(0, 2, (T, 2)), np.zeros(T)]
    coef = np.c_[np.clip(scene["exp"][:T] + rng.normal(0, 0.1, (T, ke)), 0, 1),
                 np.broadcast_to(scene["ident"] + rng.normal(0, 0.3, ki), (T, ki))]
    terms = ((jaw, scene["lmk"][:T, :17], np.full(17, 0.5)),  # per-frame (T, 17) vertex ids
             (inner, scene["lmk"][:T, 17:], rng.uniform(0.5, 1.5, 51)))  # fixed (51,) vertex ids
    for vidx, pts, w in terms:
        G, h = frame_blocks(bases, vidx, pos, R, t, f, pts, w)
        Gj, hj = _joint_system(*frame_blocks(bases, vidx, pos, R, t, f, pts, w, coef), ke)
        keep = np.r_[np.arange(ke), ke + 6 + np.arange(ki)]
        assert np.abs(Gj[:, keep][:, :, keep] - G).max() <= 1e-12 * np.abs(G).max()
        assert np.abs(hj[:, keep] - h).max() <= 1e-12 * np.abs(h).max()
        for fr in range(T):
            v = vidx[fr] if vidx.ndim == 2 else vidx
            mean = skin_model.mean[v].double().numpy()
            B = torch.cat([skin_model.exp_basis[:, v], skin_model.id_basis[:, v]], 0).double().numpy()

            def resid(z):  # z = [e, c, i]; residual in cm (pixels / f of the current camera)
                x, c = np.r_[z[:ke], z[ke + 6:]], z[ke:ke + 6]
                Rc = Rotation.from_rotvec(c[:3]).as_matrix() @ R[fr]
                S = mean + np.einsum("kpc,k->pc", B, x)
                img = f[fr] * np.exp(c[3]) * (S @ Rc.T)[:, :2] * FLIP2 + t[fr, :2] + c[4:6]
                return ((img - pts[fr]) / f[fr]).ravel()

            z0 = np.r_[coef[fr, :ke], np.zeros(6), coef[fr, ke:]]
            eps = 1e-6
            J = np.stack([(resid(z0 + eps * d) - resid(z0 - eps * d)) / (2 * eps) for d in np.eye(len(z0))], 1)
            Wj = J * np.repeat(w, 2)[:, None]
            G_ref, h_ref = Wj.T @ J, -Wj.T @ resid(np.zeros_like(z0))
            assert np.abs(Gj[fr] - G_ref).max() < 1e-6 * np.abs(G_ref).max()
            assert np.abs(hj[fr] - h_ref).max() < 1e-6 * np.abs(h_ref).max()


# ----------------------------------------------------------------------------- 5. jaw contour

def _euler_R(pitch, yaw, roll):
    return euler_to_rotation(torch.tensor(np.radians([[pitch, yaw, roll]]), dtype=torch.float64)).numpy()


def test_jaw_contour_frontal_is_symmetric(skin_model):
    jaw = FC.JawContour(skin_model)
    mean = skin_model.mean.double().numpy()
    sel = jaw.select(mean[jaw.all][None], _euler_R(0, 0, 0))[0]
    assert all(sel[k] == jaw.fixed[k] for k in FC.CHIN)
    for k in range(8):
        a, b = mean[sel[k]], mean[sel[16 - k]]
        assert abs(a[0] + b[0]) < 1e-4 and np.abs(a[1:] - b[1:]).max() < 1e-4, k
        assert a[0] < 0 < b[0]  # landmarks 0-7 on the model's -x side (image left)
    assert all(sel[k] in jaw.candidates[k] for k in range(17))


@pytest.mark.parametrize("pitch,yaw", [(0.0, 30.0), (0.0, -30.0), (10.0, 40.0), (-8.0, -20.0)])
def test_jaw_contour_picks_the_silhouette(skin_model, scene, pitch, yaw):
    jaw = FC.JawContour(skin_model)
    shape = skin_model.shape(torch.from_numpy(scene["ident"])[None], torch.from_numpy(scene["exp"][:1])).double()
    R = _euler_R(pitch, yaw, 0.0)
    sel = jaw.select(shape[:, jaw.all].numpy(), R)[0]
    img = Camera(torch.from_numpy(R), torch.tensor([[100.0, 50.0, 0.0]], dtype=torch.float64),
                 torch.tensor([7.0], dtype=torch.float64)).project(shape)[0].numpy()
    for k, cand in enumerate(jaw.candidates):  # brute force: the candidate furthest out in the image
        x = img[cand, 0]
        assert sel[k] == cand[np.argmin(x) if k < 8 else np.argmax(x)], k
    # the far side (turned away) marched onto the cheek: more frontal (larger z) than when frontal
    front = jaw.select(shape[:, jaw.all].numpy(), _euler_R(pitch, 0.0, 0.0))[0]
    far = range(10, 17) if yaw > 0 else range(0, 7)
    z = skin_model.mean.double().numpy()[:, 2]
    assert all(z[sel[k]] > z[front[k]] for k in far)


@pytest.mark.parametrize("pitch,yaw", [(0.0, 0.0), (0.0, 30.0), (10.0, -35.0)])
def test_jaw_contour_ignores_roll(skin_model, scene, pitch, yaw):
    jaw = FC.JawContour(skin_model)
    pts = skin_model.shape(torch.from_numpy(scene["ident"])[None])[:, jaw.all].double().numpy()
    ref = jaw.select(pts, _euler_R(pitch, yaw, 0.0))
    for roll in (-30.0, 15.0, 40.0):
        assert np.array_equal(jaw.select(pts, _euler_R(pitch, yaw, roll)), ref)


# ----------------------------------------------------------------------------- 6. plausibility

def test_identity_plausibility():
    k = 100
    thr = chi2.ppf(0.99, k)
    assert abs(thr - 135.807) < 1e-2
    draws = [np.random.default_rng(s).normal(0, 1, k) for s in range(100)]
    res = [F.identity_plausibility(d) for d in draws]
    assert all(r["chi2_threshold"] == pytest.approx(thr) and r["dof"] == k for r in res)
    assert all(r["id_norm2"] == pytest.approx(float((d ** 2).sum())) for r, d in zip(res, draws))
    plausible = sum(r["plausible"] for r in res)
    assert plausible >= 95
    assert not any(F.identity_plausibility(2 * d)["plausible"] for d in draws)
    assert F.identity_plausibility(np.zeros(k))["plausible"]
    assert F.identity_plausibility(np.zeros(10), quantile=0.5)["chi2_threshold"] == pytest.approx(chi2.ppf(0.5, 10))


# ----------------------------------------------------------------------------- 7. smoothing

def test_smooth_series_reduces_noise():
    rng = np.random.default_rng(0)
    tt = np.arange(120)
    truth = np.stack([np.sin(2 * np.pi * tt / 40), np.cos(2 * np.pi * tt / 25)], 1)
    noisy = truth + rng.normal(0, 0.2, truth.shape)
    sm = FC.smooth_series(noisy)
    rms = lambda a: float(np.sqrt((a ** 2).mean()))
    assert rms(sm - truth) < 0.5 * rms(noisy - truth)
    # columns are independent and the shape is kept
    y3 = noisy.reshape(120, 1, 2)
    out3 = FC.smooth_series(y3)
    assert out3.shape == y3.shape
    assert np.allclose(out3[:, 0, 1], FC.smooth_series(noisy[:, 1]))


def test_smooth_series_respects_segments():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(30), np.full(30, 5.0)] + rng.normal(0, 0.1, 60)
    seg = np.r_[np.zeros(30, int), np.ones(30, int)]
    out = FC.smooth_series(y, seg)
    assert np.allclose(out[:30], FC.smooth_series(y[:30]))
    assert np.allclose(out[30:], FC.smooth_series(y[30:]))
    assert np.abs(out[:30]).max() < 0.3 and np.abs(out[30:] - 5).max() < 0.3  # the step is kept
    across = FC.smooth_series(y, None, lam=50.0)  # smoothing across the step blurs it ...
    assert abs(across[29]) > 0.5 and abs(across[30] - 5) > 0.5
    assert np.abs(FC.smooth_series(y, seg, lam=50.0)[28:32] - [0, 0, 5, 5]).max() < 0.3  # ... per segment not


def test_smooth_series_short_segments_unchanged():
    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, (27, 2))
    seg = np.r_[np.zeros(10, int), np.full(4, 1), np.full(13, 2)]
    out = FC.smooth_series(y, seg)
    assert np.array_equal(out[10:14], y[10:14])
    assert not np.allclose(out[:10], y[:10]) and not np.allclose(out[14:], y[14:])
    assert np.array_equal(FC.smooth_series(y[:4]), y[:4])


def test_reprojection_summary():
    e = np.array([1.0, 2.0, 3.0, 10.0], np.float32)
    iod = np.array([100.0, 100.0, 50.0, 100.0], np.float32)
    fit = F.VideoFit(np.zeros(3, np.float32), np.zeros((4, 2), np.float32), np.broadcast_to(np.eye(3), (4, 3, 3)),
                     np.zeros((4, 3)), np.ones(4), np.zeros((4, 17), np.int64), e, iod)
    s = F.reprojection_summary(fit)
    assert s["median_px"] == pytest.approx(2.5) and s["mean_px"] == pytest.approx(4.0)
    assert s["median_iod"] == pytest.approx(np.median([0.01, 0.02, 0.06, 0.1]))
    assert s["p95_px"] == pytest.approx(np.percentile(e, 95))


# ----------------------------------------------------------------------------- 8. real data

def test_fit_image_real_frontal_still(skin_model):
    from faceflow.face.landmarks import detect_image
    from faceflow.io import read_image
    lmk = detect_image(read_image(media("stills/deepface_img32.jpg"))).lmk68
    fit = F.fit_image(skin_model, lmk)
    s = F.reprojection_summary(fit)
    pitch, yaw, roll = fit.angles[0]
    print(f"deepface_img32: reprojection {s['mean_px']:.2f} px = {100 * s['median_iod']:.2f}% IOD, "
          f"angles ({pitch:.1f}, {yaw:.1f}, {roll:.1f}) deg, ||i||^2 {fit.stats['id_norm2']:.1f}")
    assert s["median_iod"] < 0.04
    assert fit.stats["plausible"]
    assert abs(yaw) < 10 and abs(pitch) < 15 and abs(roll) < 10
    assert np.allclose(fit.rotation[0] @ fit.rotation[0].T, np.eye(3), atol=1e-5)


@pytest.mark.slow
def test_fit_video_real_clip(skin_model):
    from faceflow.face.tracking import smooth_track, track_video
    from faceflow.io import read_frames
    frames = list(read_frames(media("videos/EDTalk_uncrop_Obama.mp4"), max_frames=40))
    track = smooth_track(track_video(frames))
    assert track.segments == [(0, 40)]
    lmk = track.lmk68.astype(np.float64)
    fit = F.fit_video(skin_model, lmk)
    s = F.reprojection_summary(fit)
    a = fit.angles
    rough = np.sqrt((np.diff(a, 2, axis=0) ** 2).mean(0))
    # reference: per-frame rigid cameras of the mean face (no temporal model, no shape fit)
    X = np.broadcast_to(skin_model.mean[skin_model.lmk68].double().numpy(), (len(lmk), 68, 3))
    R0 = FC.estimate_cameras(X, lmk)[0]
    a0 = np.degrees(rotation_to_euler(torch.from_numpy(R0)).numpy())
    rough0 = np.sqrt((np.diff(a0, 2, axis=0) ** 2).mean(0))
    print(f"Obama 40 frames: median {s['median_px']:.2f} px = {100 * s['median_iod']:.2f}% IOD "
          f"(p95 {100 * s['p95_iod']:.2f}%), angle 2nd-diff RMS {rough.round(3)} vs rigid per-frame "
          f"{rough0.round(3)}, max step {np.abs(np.diff(a, axis=0)).max(0).round(2)} deg, "
          f"{fit.stats['timings']['total_s']:.1f} s")
    assert s["median_iod"] < 0.035
    assert fit.stats["plausible"]
    assert np.abs(np.diff(a, axis=0)).max() < 4.0
    assert rough.sum() < rough0.sum()
    assert np.abs(a[:, 1]).max() < 25


# ----------------------------------------------------------------------------- 9. bad input

def test_bad_input_raises(skin_model):
    lmk = make_scene(skin_model, 3, seed=0)["lmk"]
    with pytest.raises(FaceflowError, match="NaN"):
        bad = lmk.copy()
        bad[1, 5, 0] = np.nan
        F.fit_video(skin_model, bad)
    with pytest.raises(FaceflowError, match="NaN"):
        bad = lmk.copy()
        bad[0, 0, 1] = np.inf
        F.fit_video(skin_model, bad)
    for shape in [(3, 67, 2), (3, 68, 3), (68, 2), (0, 68, 2)]:
        with pytest.raises(FaceflowError, match="68, 2"):
            F.fit_video(skin_model, np.zeros(shape))
    with pytest.raises(FaceflowError, match="segment_ids"):
        F.fit_video(skin_model, lmk, segment_ids=np.zeros(2, int))
    dv = np.arange(5)
    with pytest.raises(FaceflowError, match="dense"):
        F.fit_video(skin_model, lmk, dense=np.zeros((3, 4, 2)), dense_vertices=dv)
    with pytest.raises(FaceflowError, match="dense"):
        F.fit_video(skin_model, lmk, dense=np.zeros((2, 5, 2)), dense_vertices=dv)
    with pytest.raises(FaceflowError, match="dense"):
        d = np.zeros((3, 5, 2))
        d[2, 1] = np.nan
        F.fit_video(skin_model, lmk, dense=d, dense_vertices=dv)


def test_fit_image_bad_shape_raises(skin_model):
    with pytest.raises(FaceflowError):
        F.fit_image(skin_model, np.zeros((67, 2)))


@pytest.mark.parametrize("bad", [10 ** 7, -1])
def test_dense_vertices_out_of_range_raise(skin_model, bad):
    lmk = make_scene(skin_model, 1, seed=0)["lmk"]
    with pytest.raises(FaceflowError):
        F.fit_video(skin_model, lmk, dense=lmk[:, :3], dense_vertices=np.array([0, 1, bad]))


def test_dense_without_vertices_raises(skin_model):
    lmk = make_scene(skin_model, 1, seed=0)["lmk"]
    with pytest.raises(FaceflowError):
        F.fit_video(skin_model, lmk, dense=lmk[:, :3])
