"""2D similarity transforms ``x' = s R x + t`` (rotation, uniform scale, translation; no reflection).

- :class:`Similarity`: the transform as a (2, 3) matrix, with its inverse, composition and the
  induced maps on points, 2D flow vectors, scaled-orthographic 3D points and 3D flow;
- :func:`estimate_similarity`: weighted least squares (2D Umeyama) between point sets.

Used to register faces to the DeepFaceFlow template (:mod:`faceflow.face.registration`), for crop
boxes and for the template-frame training data.

Conventions: points are (x, y) with y down (image coordinates). A positive
:attr:`Similarity.angle` turns +x toward +y, i.e. clockwise on screen. Methods take numpy arrays
or torch tensors and return the same kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from faceflow.errors import FaceflowError

__all__ = ["Similarity", "estimate_similarity", "float_array"]


def float_array(x, what: str) -> np.ndarray:
    """``x`` (array-like or tensor) as a float64 numpy array; FaceflowError naming ``what`` if it is not numeric."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise FaceflowError(f"{what} must be numeric, got {type(x).__name__}: {e}") from None


def _like(m: np.ndarray, x):
    """The array ``m`` as the same kind (numpy / torch dtype and device) as ``x``."""
    if torch.is_tensor(x):
        dt = x.dtype if x.is_floating_point() else torch.float64
        return torch.as_tensor(m, dtype=dt, device=x.device)
    return m


def _points(x, dim: int, what: str):
    """``x`` as points (..., dim): float tensors as they are, other tensors as float64, anything else
    as a float64 numpy array."""
    if torch.is_tensor(x):
        if not x.is_floating_point():
            x = x.double()
    else:
        x = float_array(x, what)
    if x.ndim < 1 or x.shape[-1] != dim:
        raise FaceflowError(f"{what} must have shape (..., {dim}), got {tuple(x.shape)}")
    return x


@dataclass(eq=False)
class Similarity:
    """A 2D similarity ``x' = s R x + t`` (R a rotation, no reflection, s > 0).

    matrix (2, 3) float64 with ``[x'; y'] = matrix @ [x; y; 1]``. Methods take numpy arrays or
    torch tensors (returned as the same kind).
    """

    matrix: np.ndarray

    def __post_init__(self):
        m = np.array(self.matrix, dtype=np.float64)
        if m.shape != (2, 3):
            raise FaceflowError(f"a similarity matrix must be (2, 3), got {m.shape}")
        if not np.isfinite(m).all():
            raise FaceflowError("similarity matrix has non-finite entries")
        a, b = m[0, 0], m[1, 0]
        s2 = a * a + b * b
        if s2 <= 1e-24:
            raise FaceflowError("similarity matrix has zero scale")
        if abs(m[1, 1] - a) > 1e-6 * math.sqrt(s2) or abs(m[0, 1] + b) > 1e-6 * math.sqrt(s2):
            raise FaceflowError(f"matrix is not a similarity (rotation and uniform scale): {m.tolist()}")
        self.matrix = m

    # ---- construction
    @classmethod
    def identity(cls) -> "Similarity":
        return cls(np.eye(2, 3))

    @classmethod
    def from_params(cls, scale: float, angle: float, translation=(0.0, 0.0)) -> "Similarity":
        """``scale`` > 0, ``angle`` radians (+x toward +y), ``translation`` (tx, ty)."""
        if not scale > 0:
            raise FaceflowError(f"similarity scale must be > 0, got {scale}")
        c, s = math.cos(angle) * scale, math.sin(angle) * scale
        tx, ty = (float(v) for v in translation)
        return cls(np.array([[c, -s, tx], [s, c, ty]]))

    @classmethod
    def about(cls, centre, scale: float = 1.0, angle: float = 0.0) -> "Similarity":
        """Scale and rotate about the fixed point ``centre`` (x, y)."""
        c = np.asarray(centre, dtype=np.float64)
        lin = cls.from_params(scale, angle)
        return cls.from_params(scale, angle, c - lin.apply(c))

    # ---- parameters
    @property
    def linear(self) -> np.ndarray:
        """(2, 2) ``s R``."""
        return self.matrix[:, :2]

    @property
    def scale(self) -> float:
        return float(math.hypot(self.matrix[0, 0], self.matrix[1, 0]))

    @property
    def angle(self) -> float:
        """Rotation angle in radians, in (-pi, pi]; positive turns +x toward +y (y down)."""
        return float(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))

    @property
    def translation(self) -> np.ndarray:
        return self.matrix[:, 2].copy()

    # ---- maps
    def apply(self, pts):
        """Points (..., 2) -> (..., 2)."""
        pts = _points(pts, 2, "points")
        m = _like(self.matrix, pts)
        return pts @ m[:, :2].T + m[:, 2]

    def apply_vectors(self, v):
        """Directions / 2D flow vectors (..., 2) -> (..., 2): the linear part ``s R`` only."""
        v = _points(v, 2, "vectors")
        return v @ _like(self.matrix, v)[:, :2].T

    def apply_3d(self, pts):
        """Scaled-orthographic points (..., 3): x, y as :meth:`apply`, z multiplied by the scale."""
        pts = _points(pts, 3, "3D points")
        xy = self.apply(pts[..., :2])
        z = pts[..., 2:] * self.scale
        return torch.cat([xy, z], -1) if torch.is_tensor(pts) else np.concatenate([xy, z], -1)

    def apply_flow3d(self, flow):
        """3D flow vectors (..., 3): x, y by the linear part, z by the scale."""
        flow = _points(flow, 3, "3D flow")
        xy = self.apply_vectors(flow[..., :2])
        z = flow[..., 2:] * self.scale
        return torch.cat([xy, z], -1) if torch.is_tensor(flow) else np.concatenate([xy, z], -1)

    def _h(self) -> np.ndarray:
        return np.vstack([self.matrix, [0.0, 0.0, 1.0]])

    def inverse(self) -> "Similarity":
        (a, b, tx), (c, d, ty) = self.matrix  # the 2x2 inverse in closed form (np.linalg.inv costs ~1 ms here)
        det = a * d - b * c
        if det == 0:
            raise FaceflowError("this transform is singular (scale 0) and has no inverse")
        lin = np.array([[d, -b], [-c, a]]) / det
        return Similarity(np.concatenate([lin, -(lin @ np.array([tx, ty]))[:, None]], 1))

    def compose(self, other: "Similarity") -> "Similarity":
        """``self`` after ``other``: x -> self(other(x))."""
        if not isinstance(other, Similarity):
            raise FaceflowError(f"can only compose with a Similarity, got {type(other).__name__}")
        return Similarity((self._h() @ other._h())[:2])

    def __matmul__(self, other: "Similarity") -> "Similarity":
        return self.compose(other)

    def allclose(self, other: "Similarity", atol: float = 1e-9) -> bool:
        return bool(np.allclose(self.matrix, other.matrix, rtol=0, atol=atol))

    # ---- serialisation
    def to_dict(self) -> dict:
        return {"matrix": self.matrix.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Similarity":
        if not isinstance(d, dict) or "matrix" not in d:
            raise FaceflowError(f"a similarity dict needs a 'matrix' entry, got {d!r}")
        return cls(float_array(d["matrix"], "similarity matrix"))


def estimate_similarity(src, dst, weights=None) -> Similarity:
    """Weighted least-squares similarity mapping ``src`` (N, 2) onto ``dst`` (N, 2).

    Minimises ``sum_i w_i |s R src_i + t - dst_i|^2`` over s > 0, rotations R and t: the 2D case
    of Umeyama (1991), solved in closed form with complex numbers (``a = s e^{i theta}``,
    ``a = sum w conj(u_i) v_i / sum w |u_i|^2`` on centred points u, v). Rows with a NaN in
    ``src``, ``dst`` or ``weights`` are ignored, as are zero weights.
    Raises :class:`FaceflowError` with fewer than 2 valid points or a degenerate configuration.
    """
    src, dst = float_array(src, "src points"), float_array(dst, "dst points")
    if src.ndim != 2 or src.shape[1] != 2 or dst.shape != src.shape:
        raise FaceflowError(f"src and dst must both be (N, 2), got {src.shape} and {dst.shape}")
    w = np.ones(len(src)) if weights is None else float_array(weights, "weights")
    if w.shape != (len(src),):
        raise FaceflowError(f"weights must be ({len(src)},), got {w.shape}")
    if (w < 0).any():
        raise FaceflowError("weights must be non-negative")
    ok = np.isfinite(src).all(1) & np.isfinite(dst).all(1) & np.isfinite(w) & (w > 0)
    if ok.sum() < 2:
        raise FaceflowError(f"need at least 2 valid (finite, positive-weight) point pairs, got {int(ok.sum())}")
    u = src[ok, 0] + 1j * src[ok, 1]
    v = dst[ok, 0] + 1j * dst[ok, 1]
    w = w[ok] / w[ok].sum()
    mu, mv = (w * u).sum(), (w * v).sum()
    u, v = u - mu, v - mv
    var = float((w * np.abs(u) ** 2).sum())
    spread = max(np.abs(u).max(), np.abs(mu), 1.0)
    if var <= (1e-12 * spread) ** 2:
        raise FaceflowError("degenerate source points: all (weighted) points coincide")
    a = (w * np.conj(u) * v).sum() / var
    if abs(a) * math.sqrt(var) <= 1e-12 * max(np.abs(v).max(), np.abs(mv), 1.0):
        raise FaceflowError("degenerate target points: the fitted scale is zero")
    t = mv - a * mu
    return Similarity(np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]]))
