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
   precomputed 3x3xKxK contraction, :func:`~faceflow.face.fit_energy.frame_blocks`); the identity-only remainders of all
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

Code: the cameras, their smoothing and the jaw contour are in :mod:`faceflow.face.fit_cameras`,
the energy (:class:`FitConfig`, priors, normal equations, the sparse bounded solve) in
:mod:`faceflow.face.fit_energy`; this module runs the five steps above (:func:`_initialise`,
:func:`_solve_shapes`, :func:`_reestimate_cameras`, :func:`_refine_jointly`, :func:`_resmooth`)
on a :class:`_Problem` (the fixed inputs) and an :class:`_Estimate` (the unknowns).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from scipy.stats import chi2

from faceflow.errors import FaceflowError
from faceflow.face.fit_cameras import (
    JawContour,
    batched_solve,
    einsum,
    estimate_cameras,
    image_rows,
    rodrigues,
    smooth_cameras,
)
from faceflow.face.fit_energy import Bases, FitConfig, frame_blocks, identity_only, identity_prior, solve_coefficients
from faceflow.geometry.camera import Camera, rotation_to_euler
from faceflow.geometry.morphable import MorphableModel

__all__ = ["VideoFit", "fit_video", "fit_image", "reprojection_summary", "identity_plausibility"]


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


# ---------------------------------------------------------------------- the video fit
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


# ---------------------------------------------------------------------- the fit, step by step
@dataclass
class _Problem:
    """What one fit of T frames (:func:`_fit`) works with and never changes: the observations,
    the weights, the bases of every vertex a landmark term uses, the identity prior."""

    cfg: FitConfig
    lmk68: np.ndarray  # (T, 68, 2) pixels
    seg: np.ndarray  # (T,) segment ids
    ident_fixed: np.ndarray | None  # (K_id,) the known identity, or None to estimate it
    jaw: JawContour
    id_prior: np.ndarray  # (K_id, K_id)
    lmk_v: np.ndarray  # (68,) model vertices of the landmarks (jaw 0-16: before marching)
    dense_v: np.ndarray  # (P,) model vertices of the dense points (P = 0 without them)
    dense_pts: np.ndarray | None  # (T, P, 2) pixels, or None
    bases: Bases  # mean and [U_exp | U_id] of the vertices below
    pos: dict  # vertex id -> row of ``bases``
    cand_rows: np.ndarray  # rows of the jaw candidates (``jaw.all``)
    inner_rows: np.ndarray  # rows of the inner landmarks 17-67
    dense_rows: np.ndarray  # rows of the dense points
    jaw_w: np.ndarray  # (17,) relative weights of the jaw landmarks
    inner_w: np.ndarray  # (51,)
    dense_w: np.ndarray  # (P,)

    @classmethod
    def build(cls, model: MorphableModel, lmk68, dense, dense_vertices, seg, cfg: FitConfig, ident_fixed):
        jaw = JawContour(model)
        lmk_v = model.lmk68.cpu().numpy()
        dense_v = np.asarray(dense_vertices, np.int64) if dense is not None else np.zeros(0, np.int64)
        vset = np.unique(np.concatenate([jaw.all, lmk_v[17:], dense_v]))
        pos = {int(v): i for i, v in enumerate(vset)}
        rows = lambda vertices: np.array([pos[v] for v in vertices], np.int64)
        return cls(cfg, lmk68, seg, ident_fixed, jaw, identity_prior(model, cfg, len(lmk68)), lmk_v, dense_v, dense,
                   Bases(model, vset), pos, rows(jaw.all), rows(lmk_v[17:]), rows(dense_v),
                   np.full(17, cfg.jaw_weight), np.ones(51), np.full(len(dense_v), cfg.dense_weight))

    @property
    def frames(self) -> int:
        return len(self.lmk68)

    @property
    def ke(self) -> int:
        return self.bases.ke

    @property
    def w_lmk(self) -> float:
        """w_l of eq. (3.3)."""
        return 1.0 / self.cfg.lmk_sigma ** 2

    @property
    def smoothing(self) -> bool:
        """Whether the camera sequence is smoothed (it needs 5 frames)."""
        return self.cfg.camera_smoothing and self.frames >= 5

    def start(self) -> _Estimate:
        """Rigid mean face (e = 0; the known identity, else i = 0), jaw on its fixed vertices."""
        T, ke = self.frames, self.ke
        ident = (np.zeros(self.bases.B.shape[2] - ke) if self.ident_fixed is None
                 else np.asarray(self.ident_fixed, np.float64))
        return _Estimate(np.zeros((T, ke)), ident, np.broadcast_to(self.lmk_v[:17], (T, 17)).copy())


@dataclass
class _Estimate:
    """The unknowns at one point of the schedule; the cameras are None before the first estimate."""

    exp: np.ndarray  # (T, K_exp)
    ident: np.ndarray  # (K_id,)
    jaw_idx: np.ndarray  # (T, 17) model vertices matched to jaw landmarks 0-16
    R: np.ndarray | None = None  # (T, 3, 3)
    t: np.ndarray | None = None  # (T, 3) pixels
    f: np.ndarray | None = None  # (T,) pixels per cm

    def coef(self) -> np.ndarray:
        """(T, K) per-frame coefficients x_f = [e_f, i]."""
        return np.concatenate([self.exp, np.broadcast_to(self.ident, (len(self.exp), self.ident.size))], 1)


def _shapes(p: _Problem, est: _Estimate, rows: np.ndarray) -> np.ndarray:
    """(T, P, 3) model-space positions of the fixed ``rows`` (P,) of ``p.bases``."""
    return p.bases.mean[rows][None] + einsum("pck,tk->tpc", p.bases.B[rows], est.coef())


def _jaw_shapes(p: _Problem, est: _Estimate) -> np.ndarray:
    """(T, 17, 3) model-space positions of each frame's jaw vertices ``est.jaw_idx``."""
    jaw_rows = np.vectorize(p.pos.__getitem__)(est.jaw_idx)
    return p.bases.mean[jaw_rows] + einsum("tpck,tk->tpc", p.bases.B[jaw_rows], est.coef())


def _landmark_points(p: _Problem, est: _Estimate) -> np.ndarray:
    """(T, 68, 3) model-space landmark positions (per-frame jaw vertices)."""
    return np.concatenate([_jaw_shapes(p, est), _shapes(p, est, p.inner_rows)], 1)


def _cameras(p: _Problem, est: _Estimate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R (T, 3, 3), t (T, 3), f (T,) of the current shapes (:func:`estimate_cameras`)."""
    weights68 = np.concatenate([p.jaw_w, p.inner_w])
    return estimate_cameras(_landmark_points(p, est), p.lmk68, np.broadcast_to(weights68, (p.frames, 68)))


def _posed(p: _Problem, est: _Estimate, R: np.ndarray, t: np.ndarray, f: np.ndarray) -> _Estimate:
    """``est`` with the cameras (R, t, f) and the jaw vertices on the outline they see."""
    jaw_idx = p.jaw.select(_shapes(p, est, p.cand_rows), R) if p.cfg.jaw_marching else est.jaw_idx
    return replace(est, R=R, t=t, f=f, jaw_idx=jaw_idx)


def _normal_equations(p: _Problem, est: _Estimate, joint: bool = False) -> tuple:
    """Sum over the landmark terms of :func:`~faceflow.face.fit_energy.frame_blocks` at the
    current cameras: G (T, K, K), h (T, K), and with ``joint`` also G_cx, G_cc, h_c of a camera
    increment linearised at the current shapes."""
    coef = est.coef() if joint else None
    terms = [(est.jaw_idx, p.lmk68[:, :17], p.jaw_w), (p.lmk_v[17:], p.lmk68[:, 17:], p.inner_w)]
    if p.dense_pts is not None:
        terms.append((p.dense_v, p.dense_pts, p.dense_w))
    parts = [frame_blocks(p.bases, v, p.pos, est.R, est.t, est.f, pts, w, coef) for v, pts, w in terms]
    return tuple(sum(part[k] for part in parts) for k in range(len(parts[0])))


def _solve(p: _Problem, G: np.ndarray, h: np.ndarray, ident_fixed: np.ndarray | None):
    """Eq. (3.3) over all frames for the normal equations G, h (:func:`solve_coefficients`):
    exp (T, K_exp), identity (K_id,), solver info."""
    ke = p.ke
    return solve_coefficients(G, h, p.seg, p.cfg, ke, p.w_lmk, p.id_prior, np.full((p.frames, ke), p.cfg.a_exp),
                              np.full(ke, p.cfg.exp_bounds[0]), np.full(ke, p.cfg.exp_bounds[1]), ke, ident_fixed)


def _energy(p: _Problem, est: _Estimate, norm: np.ndarray) -> float:
    """The energy of eq. (3.3) at ``est`` (its cameras and jaw vertices), data term in cm
    (pixels / ``norm`` (T,), per-frame scales)."""
    terms = [(_jaw_shapes(p, est), p.lmk68[:, :17], p.jaw_w),
             (_shapes(p, est, p.inner_rows), p.lmk68[:, 17:], p.inner_w)]
    if p.dense_pts is not None:
        terms.append((_shapes(p, est, p.dense_rows), p.dense_pts, p.dense_w))
    data = 0.0
    for X, l, w in terms:
        r = (est.f[:, None, None] * einsum("tab,tpb->tpa", image_rows(est.R), X) + est.t[:, None, :2] - l)
        r = r / norm[:, None, None]
        data += float(einsum("p,tpa->", w, r ** 2))
    cfg, exp, seg = p.cfg, est.exp, p.seg
    d2 = exp[:-2] - 2 * exp[1:-1] + exp[2:]
    same = (seg[:-2] == seg[1:-1]) & (seg[1:-1] == seg[2:])
    smooth = float((d2[same] ** 2).sum()) / cfg.exp_smooth_sigma ** 2 if cfg.exp_smooth_sigma > 0 else 0.0
    return p.w_lmk * data + cfg.a_exp * float((exp ** 2).sum()) + float(est.ident @ p.id_prior @ est.ident) + smooth


def _initialise(p: _Problem) -> _Estimate:
    """Step 1: rigid face (e = 0); alternate (a) cameras with the shape fixed and (b) the
    identity with the cameras fixed (unless it is known), then smooth the cameras."""
    est = p.start()
    for _ in range(p.cfg.init_alternations):
        est = _posed(p, est, *_cameras(p, est))
        if p.ident_fixed is None:
            G, h = _normal_equations(p, est)
            est = replace(est, ident=identity_only(G, h, est.exp, p.cfg, p.ke, p.w_lmk, p.id_prior))
    est = _posed(p, est, *_cameras(p, est))
    if p.smoothing:
        est = _posed(p, est, *smooth_cameras(est.R, est.t, est.f, p.seg))
    return est


def _solve_shapes(p: _Problem, est: _Estimate) -> tuple[_Estimate, dict]:
    """Step 2: expressions and identity with the cameras fixed (eq. (3.3)). Returns the new
    estimate and the solver's info."""
    G, h = _normal_equations(p, est)
    exp, ident, info = _solve(p, G, h, p.ident_fixed)
    return replace(est, exp=exp, ident=ident), info


def _reestimate_cameras(p: _Problem, est: _Estimate) -> _Estimate:
    """Step 3: the cameras of the fitted shapes, smoothed, and the jaw vertices they see."""
    R, t, f = _cameras(p, est)
    if p.smoothing:
        R, t, f = smooth_cameras(R, t, f, p.seg)
    return _posed(p, est, R, t, f)


def _camera_step(p: _Problem, est: _Estimate, blocks: tuple, lam: float) -> tuple[_Estimate, dict]:
    """One Gauss-Newton step over cameras and coefficients with Levenberg damping ``lam`` on
    the camera block. The unbounded camera increments are eliminated per frame (Schur
    complement), so the sparse bounded problem keeps the size and conditioning of eq. (3.3).
    Returns the candidate (jaw vertices unchanged) and the solver's info."""
    Gxx, hx, Gcx, Gcc, hc = blocks
    Gxc = Gcx.transpose(0, 2, 1)
    Gcc_d = Gcc + lam * np.diagonal(Gcc, axis1=1, axis2=2)[:, :, None] * np.eye(6) + 1e-12 * np.eye(6)
    W = batched_solve(Gcc_d, Gxc.transpose(0, 2, 1))  # (T, 6, K)
    wc = batched_solve(Gcc_d, hc[..., None])[..., 0]  # (T, 6)
    Gr = Gxx - einsum("tkc,tcl->tkl", Gxc, W)
    hr = hx - einsum("tkc,tc->tk", Gxc, wc)
    exp_n, ident_n, info = _solve(p, Gr, hr, p.ident_fixed)
    new = replace(est, exp=exp_n, ident=ident_n)
    dc = wc - einsum("tck,tk->tc", W, new.coef())
    t_n = est.t.copy()
    t_n[:, :2] += dc[:, 4:6]
    return replace(new, R=rodrigues(dc[:, :3]) @ est.R, t=t_n, f=est.f * np.exp(dc[:, 3])), info


def _damped_step(p: _Problem, est: _Estimate, current: float, lam: float):
    """A :func:`_camera_step` from ``est`` (energy ``current``), damped 10x more until the
    energy does not grow (3 tries at most). Returns (candidate, its energy, info, damping)."""
    blocks = _normal_equations(p, est, joint=True)
    trials = 0
    while True:
        cand, info = _camera_step(p, est, blocks, lam)
        new = _energy(p, cand, est.f)
        trials += 1
        if new <= current or trials >= 3:
            return cand, new, info, lam
        lam *= 10


def _refine_jointly(p: _Problem, est: _Estimate, say) -> tuple[_Estimate, list, dict | None]:
    """Step 4: Gauss-Newton on the energy of eq. (3.3) over cameras and coefficients together.
    The camera/shape alternation zig-zags along the pose/shape valley; this walks down it.
    Returns the estimate, the energies of the accepted steps and the last solver info (None
    without steps)."""
    lam, costs, info = 1e-2, [], None
    for it in range(p.cfg.refine_iterations):
        say(f"joint refinement {it + 1}/{p.cfg.refine_iterations}")
        current = _energy(p, est, est.f)
        cand, new, info, lam = _damped_step(p, est, current, lam)
        if new > current:
            break
        est = _posed(p, cand, cand.R, cand.t, cand.f)
        lam = max(lam / 10, 1e-6)
        costs.append(new)
        if (current - new) / max(current, 1e-12) < 1e-3:
            break
    return est, costs, info


def _resmooth(p: _Problem, est: _Estimate) -> _Estimate:
    """Step 5: the refinement moves every frame's camera on its own: smooth the camera sequence
    again (as in the initialisation) and re-solve the expressions for those cameras."""
    est = _posed(p, est, *smooth_cameras(est.R, est.t, est.f, p.seg))
    G, h = _normal_equations(p, est)
    exp, _, _ = _solve(p, G, h, est.ident)
    return replace(est, exp=exp)


def _fit(model, lmk68, dense, dense_vertices, seg, cfg: FitConfig, say, ident_fixed) -> VideoFit:
    """The fit proper (see :func:`fit_video`): the five steps of the module docstring.
    ``ident_fixed`` (K_id,) or None to estimate it."""
    timings = {}
    t_start = time.perf_counter()
    p = _Problem.build(model, lmk68, dense, dense_vertices, seg, cfg, ident_fixed)
    say("initialising (rigid face)")
    est = _initialise(p)
    timings["init_s"] = time.perf_counter() - t_start
    info = {}
    for it in range(cfg.iterations):
        say(f"solving expressions and identity (round {it + 1}/{cfg.iterations})")
        t0 = time.perf_counter()
        est, info = _solve_shapes(p, est)
        timings[f"solve{it + 1}_s"] = time.perf_counter() - t0
        if it + 1 < cfg.iterations:
            est = _reestimate_cameras(p, est)
    t0 = time.perf_counter()
    est, costs, refine_info = _refine_jointly(p, est, say)
    info = info if refine_info is None else refine_info
    timings["refine_s"] = time.perf_counter() - t0
    info["refine_costs"] = costs
    if p.smoothing:
        t0 = time.perf_counter()
        est = _resmooth(p, est)
        timings["final_s"] = time.perf_counter() - t0
    return _result(p, est, info, timings, t_start)


def _result(p: _Problem, est: _Estimate, info: dict, timings: dict, t_start: float) -> VideoFit:
    """The :class:`VideoFit` of ``est`` with its statistics (68-landmark reprojection error in pixels)."""
    X = _landmark_points(p, est)
    proj = est.f[:, None, None] * einsum("tab,tnb->tna", image_rows(est.R), X) + est.t[:, None, :2]
    err = np.linalg.norm(proj - p.lmk68, axis=-1).mean(1)
    iod = np.linalg.norm(p.lmk68[:, 45] - p.lmk68[:, 36], axis=-1)
    timings["total_s"] = time.perf_counter() - t_start
    stats = {"frames": p.frames, "segments": int(len(np.unique(p.seg))), **info, "timings": timings,
             "config": asdict(p.cfg), "dense_points": int(len(p.dense_v)),
             **identity_plausibility(est.ident)}
    f32 = np.float32
    return VideoFit(est.ident.astype(f32), est.exp.astype(f32), est.R.astype(f32), est.t.astype(f32),
                    est.f.astype(f32), est.jaw_idx, err.astype(f32), iod.astype(f32), stats)


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
