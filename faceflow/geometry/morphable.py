"""The 3D morphable face model (ICT FaceKit): loading, shape synthesis, vertex subsets and
projection of dense meshes back onto the model's bases.

Shape model (DeepFaceFlow eq. (1), Head2Head++ eq. (3.1))::

    S(i, e) = mean + sum_k i_k * U_id[k] + sum_j e_j * U_exp[j]

with identity coefficients ``i ~ N(0, 1)`` (100 PCA modes, pre-scaled by their standard
deviation) and expression blendshape weights ``e`` nominally in ``[0, 1]`` (53 ARKit-style
shapes). Units are centimetres; axes: +X subject's left, +Y up, +Z out of the face.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import lsq_linear

from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.geometry.camera import axis_angle_to_rotation
from faceflow.runtime.assets import find_asset

VARIANT_FILES = {
    "skin": "ict_facekit/ict_facekit.npz",
    "full": "ict_facekit/ict_facekit_full_f16.npz",
}


def model_files(*variants: str) -> dict:
    """``{"morphable_model[_VARIANT]": path}`` of the ICT FaceKit files found for ``variants``
    (default ``skin``; the key is ``morphable_model`` for one variant), for ``weights=``."""
    variants = variants or ("skin",)
    out = {}
    for v in variants:
        try:
            out["morphable_model" if len(variants) == 1 else f"morphable_model_{v}"] = find_asset(VARIANT_FILES[v])
        except AssetNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class VertexSubset:
    """A named set of model vertices with a triangulation over them.

    ``indices`` (N,) index the model's vertices; ``triangles`` (F, 3) index ``indices``
    (i.e. the subset mesh is ``verts[:, indices]`` with faces ``triangles``).
    """

    name: str
    indices: torch.Tensor
    triangles: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.numel())


@dataclass(frozen=True)
class FitResult:
    """Coefficients recovered by :meth:`MorphableModel.fit_to_mesh`.

    id (B, K_id), exp (B, K_exp); ``scale`` (B,), ``rotation`` (B, 3, 3), ``translation`` (B, 3)
    map model space to the target's space: ``target ~ scale * S @ R^T + t``; ``rms`` (B,) is
    the root-mean-square vertex residual in target units.
    """

    id: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    rms: torch.Tensor


@dataclass
class MorphableModel:
    """Tensors of the morphable model; construct with :meth:`load`."""

    mean: torch.Tensor  # (V, 3)
    id_basis: torch.Tensor  # (K_id, V, 3)
    exp_basis: torch.Tensor  # (K_exp, V, 3)
    triangles: torch.Tensor  # (F, 3) long, counter-clockwise seen from outside
    exp_names: list[str]
    lmk68: torch.Tensor  # (68,) long
    jaw_left_ext: torch.Tensor  # (17,) long contour candidates, subject's left
    jaw_right_ext: torch.Tensor  # (17,) long
    vertex_region: torch.Tensor  # (V,) long index into region_names
    tri_region: torch.Tensor  # (F,) long
    region_names: list[str]
    narrow_face_mask: torch.Tensor  # (V,) bool, the inner face
    fitting_verts: torch.Tensor  # long
    rigid_verts: torch.Tensor  # long
    variant: str = "skin"
    meta: dict = field(default_factory=dict)
    path: str | None = None  # the file it was loaded from (for provenance records)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, variant: str = "skin", path: str | Path | None = None,
             device: str | torch.device = "cpu") -> "MorphableModel":
        """Load the ``skin`` (11,248 vertices) or ``full`` (26,719, with teeth and eyes) model.

        ``path`` overrides the asset search (see :mod:`faceflow.runtime.assets`).
        """
        if variant not in VARIANT_FILES:
            raise FaceflowError(f"unknown model variant {variant!r}; choose one of {sorted(VARIANT_FILES)}")
        path = Path(path) if path is not None else find_asset(VARIANT_FILES[variant])
        try:
            d = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FaceflowError(f"cannot read morphable model {path}: {e}") from e

        def f32(k):
            return torch.from_numpy(np.ascontiguousarray(d[k], dtype=np.float32)).to(device)

        def i64(k):
            return torch.from_numpy(np.asarray(d[k], dtype=np.int64)).to(device)

        meta = json.loads(str(d["meta"])) if "meta" in d.files else {}
        return cls(
            mean=f32("mean"), id_basis=f32("id_basis"), exp_basis=f32("exp_basis"),
            triangles=i64("triangles"), exp_names=[str(n) for n in d["exp_names"]],
            lmk68=i64("lmk68"), jaw_left_ext=i64("jaw_left_ext"), jaw_right_ext=i64("jaw_right_ext"),
            vertex_region=i64("vertex_region"), tri_region=i64("tri_region"),
            region_names=[str(n) for n in d["region_names"]],
            narrow_face_mask=torch.from_numpy(np.asarray(d["narrow_face_mask"], dtype=bool)).to(device),
            fitting_verts=i64("fitting_verts"), rigid_verts=i64("rigid_verts"),
            variant=variant, meta=meta, path=str(path),
        )

    def to(self, device: str | torch.device) -> "MorphableModel":
        """A copy with every tensor on ``device``."""
        kw = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in self.__dict__.items()
              if k in self.__dataclass_fields__}
        return MorphableModel(**kw)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    @property
    def num_id(self) -> int:
        return self.id_basis.shape[0]

    @property
    def num_exp(self) -> int:
        return self.exp_basis.shape[0]

    # ------------------------------------------------------------------ shape
    def shape(self, id_coeffs: torch.Tensor | None = None, exp_coeffs: torch.Tensor | None = None,
              vertex_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Vertices of S(i, e), differentiable in both coefficient sets.

        id_coeffs (B, K_id) or None (zeros); exp_coeffs (B, K_exp) or None (neutral);
        vertex_idx (N,) optionally restricts the output to those vertices.
        Returns (B, V, 3) (or (B, N, 3)); B is 1 when both coefficients are None.
        """
        mean, ub, eb = self.mean, self.id_basis, self.exp_basis
        if vertex_idx is not None:
            mean, ub, eb = mean[vertex_idx], ub[:, vertex_idx], eb[:, vertex_idx]
        batch = [c.shape[0] for c in (id_coeffs, exp_coeffs) if c is not None]
        if len(set(batch)) > 1:
            raise ValueError(f"id and exp coefficients have different batch sizes {batch}")
        b = batch[0] if batch else 1
        out = mean.unsqueeze(0).expand(b, -1, -1)
        if id_coeffs is not None:
            out = out + torch.einsum("bk,kvc->bvc", id_coeffs.to(mean.dtype), ub)
        if exp_coeffs is not None:
            out = out + torch.einsum("bk,kvc->bvc", exp_coeffs.to(mean.dtype), eb)
        return out.contiguous()

    def landmarks(self, verts: torch.Tensor) -> torch.Tensor:
        """The 68 Multi-PIE landmarks (iBUG order) of a mesh: (B, V, 3) -> (B, 68, 3)."""
        return verts[:, self.lmk68]

    def expression(self, weights: dict[str, float] | None = None, batch: int = 1) -> torch.Tensor:
        """Expression vector (batch, K_exp) from named weights, e.g. ``{'jawOpen': 0.7}``."""
        e = torch.zeros(batch, self.num_exp, device=self.device)
        for name, w in (weights or {}).items():
            if name not in self.exp_names:
                close = [n for n in self.exp_names if name.lower()[:4] in n.lower()]
                raise FaceflowError(f"unknown expression {name!r}" + (f"; did you mean one of {close}?" if close
                                    else f"; known: {', '.join(self.exp_names)}"))
            e[:, self.exp_names.index(name)] = float(w)
        return e

    # ------------------------------------------------------------------ subsets
    def region_mask(self, *names: str) -> torch.Tensor:
        """(V,) bool mask of the vertices in the named regions (see ``region_names``), e.g.
        ``region_mask('teeth', 'gums_tongue')`` on the full model."""
        unknown = [n for n in names if n not in self.region_names]
        if unknown:
            raise FaceflowError(f"unknown region(s) {unknown}; this model has {self.region_names}")
        ids = torch.tensor([self.region_names.index(n) for n in names], dtype=torch.long, device=self.device)
        return torch.isin(self.vertex_region, ids)

    @cached_property
    def render_triangles(self) -> torch.Tensor:
        """(F', 3) the triangles to draw: all but the full model's see-through helper meshes
        (eye blend, eye occlusion and lacrimal fluid layers, meant for alpha blending)."""
        helper = [i for i, n in enumerate(self.region_names)
                  if n.startswith(("eye_blend", "eye_occlusion", "lacrimal_fluid"))]
        keep = ~torch.isin(self.tri_region, torch.tensor(helper, dtype=torch.long, device=self.device))
        return self.triangles[keep]

    def subset(self, name: str) -> VertexSubset:
        """A named vertex subset with its triangulation, computed once per model.

        - ``all``: every vertex;
        - ``face``: the inner face (``narrow_face_mask``, 6,706 vertices on the skin model),
          the region NMFC images and 3D flow focus on;
        - ``meshreg``: about 3k vertices evenly spread over the inner face (vertex clustering
          of the face region), the mesh that 3DMeshReg regresses;
        - ``fitting`` / ``rigid``: the model's own fitting and rigid vertex sets (no triangles).
        """
        subsets = self._subsets
        if name not in subsets:
            raise FaceflowError(f"unknown vertex subset {name!r}; choose one of {sorted(subsets)}")
        return subsets[name]

    @cached_property
    def _subsets(self) -> dict[str, VertexSubset]:
        dev = self.device
        empty = torch.zeros(0, 3, dtype=torch.long, device=dev)
        all_idx = torch.arange(self.num_vertices, device=dev)
        face_idx = torch.nonzero(self.narrow_face_mask).squeeze(1)
        return {
            "all": VertexSubset("all", all_idx, self.triangles),
            "face": VertexSubset("face", face_idx, _restrict_triangles(self.triangles, face_idx, self.num_vertices)),
            "meshreg": _cluster_subset(self.mean, self.triangles, face_idx, cell=0.42, name="meshreg"),
            "fitting": VertexSubset("fitting", self.fitting_verts, empty),
            "rigid": VertexSubset("rigid", self.rigid_verts, empty),
        }

    # ------------------------------------------------------------------ projection onto the bases
    def fit_to_mesh(self, target: torch.Tensor, vertex_idx: torch.Tensor | None = None, *,
                    id_weight: float = 1e-3, exp_weight: float = 1e-3,
                    exp_bounds: tuple[float, float] | None = (0.0, 1.0),
                    id_bounds: tuple[float, float] | None = None,
                    similarity: bool = False, iterations: int = 4) -> FitResult:
        """Recover identity and expression coefficients of a dense mesh by least squares.

        Solves ``min ||mean + U_id i + U_exp e - X||^2 + id_weight*||i||^2 + exp_weight*||e||^2``
        over the vertices ``vertex_idx`` (default all), optionally with box limits on ``e`` and
        ``i`` (bounded-variable least squares). With ``similarity=True`` the target may be in any
        similarity frame (e.g. an image-space mesh regressed by a network): scale, rotation and
        translation are found jointly with the coefficients by ``iterations`` Gauss-Newton steps
        (started from a Umeyama alignment of the mean), then the coefficients are solved in model
        space (where the priors and bounds apply).

        target (B, N, 3) with N = len(vertex_idx) (or V). Returns a :class:`FitResult`.
        """
        if target.dim() != 3 or target.shape[-1] != 3:
            raise ValueError(f"target must be (B, N, 3), got {tuple(target.shape)}")
        idx = vertex_idx if vertex_idx is not None else torch.arange(self.num_vertices, device=self.device)
        if target.shape[1] != idx.numel():
            raise ValueError(f"target has {target.shape[1]} vertices but the subset has {idx.numel()}")
        B = target.shape[0]
        dd = torch.float64
        X = target.detach().to(self.device, dd)
        mean = self.mean[idx].to(dd)
        A = torch.cat([self.id_basis[:, idx], self.exp_basis[:, idx]], 0).to(dd).reshape(-1, idx.numel() * 3).T
        K_id = self.num_id
        reg = torch.cat([torch.full((K_id,), id_weight), torch.full((self.num_exp,), exp_weight)]).to(A)
        # Normal equations, shared by every sample: (A^T A + diag(reg)) x = A^T r.
        H = A.T @ A + torch.diag(reg)
        L = torch.linalg.cholesky(H)
        lo, hi = _bounds_vector(K_id, self.num_exp, id_bounds, exp_bounds)
        bounded = bool(np.isfinite(lo).any() or np.isfinite(hi).any())

        scale = torch.ones(B, dtype=dd, device=X.device)
        R = torch.eye(3, dtype=dd, device=X.device).expand(B, 3, 3).clone()
        t = torch.zeros(B, 3, dtype=dd, device=X.device)
        if similarity:
            scale, R, t = _align_similarity(X, mean, A, reg, iterations)
        Xm = torch.einsum("bnc,bcd->bnd", (X - t[:, None]) / scale[:, None, None], R)  # back to model space
        rhs = A.T @ (Xm - mean).reshape(B, -1).T  # (K, B)
        coeffs = _bounded_solve(L, rhs, lo, hi) if bounded else torch.cholesky_solve(rhs, L).T
        fitted = mean + (A @ coeffs.T).T.reshape(B, -1, 3)
        posed = scale[:, None, None] * fitted @ R.transpose(1, 2) + t[:, None]
        rms = (posed - X).pow(2).sum(-1).mean(-1).sqrt()
        f32 = torch.float32
        return FitResult(coeffs[:, :K_id].to(f32), coeffs[:, K_id:].to(f32), scale.to(f32), R.to(f32),
                         t.to(f32), rms.to(f32))


# ---------------------------------------------------------------------- helpers

def similarity_transform(src: torch.Tensor, dst: torch.Tensor):
    """Least-squares similarity (Umeyama) with ``dst ~ s * src @ R^T + t``.

    src, dst (B, N, 3). Returns scale (B,), rotation (B, 3, 3) (proper, det +1), translation (B, 3).
    """
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    a, b = src - mu_s, dst - mu_d
    cov = b.transpose(1, 2) @ a / src.shape[1]  # (B, 3, 3)
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = U @ D @ Vh
    var = a.pow(2).sum((1, 2)) / src.shape[1]
    s = (S * D.diagonal(dim1=1, dim2=2)).sum(-1) / var
    t = mu_d.squeeze(1) - s[:, None] * torch.einsum("bdc,bc->bd", R, mu_s.squeeze(1))
    return s, R, t


def _align_similarity(X, mean, A, reg, iterations):
    """Scale, rotation and translation of target X (B, N, 3) relative to the model, by
    Gauss-Newton on (s, s*c, t', w): with the rotation linearised around the current R as
    ``R (I + [w]x)``, ``R^T X ~ s*(mean + A c) + t' + w x (s S_current)`` is linear in all
    unknowns (ridge on c scaled by the previous s). Solving scale, shape and rotation jointly
    avoids the slow zig-zag of alternating them (the identity modes include overall size, and
    expressions mimic small rotations).
    """
    B, N, _ = X.shape
    K = A.shape[1]
    eye = torch.eye(3, dtype=A.dtype, device=A.device)
    M0 = torch.cat([mean.reshape(-1, 1), A, eye.repeat(N, 1)], 1)  # (3N, K + 4), shared
    scale, R, t = similarity_transform(mean.expand(B, N, 3), X)
    shape = mean.expand(B, N, 3)
    for _ in range(max(iterations, 1)):
        Z = torch.einsum("bnc,bcd->bnd", X, R).reshape(B, -1)  # R^T x for every point
        P = scale[:, None, None] * shape
        zero = torch.zeros_like(P[..., 0])
        # d(w x p)/dw = -[p]x, rows per point (x, y, z)
        J = torch.stack([torch.stack([zero, P[..., 2], -P[..., 1]], -1),
                         torch.stack([-P[..., 2], zero, P[..., 0]], -1),
                         torch.stack([P[..., 1], -P[..., 0], zero], -1)], 2).reshape(B, 3 * N, 3)
        M = torch.cat([M0.expand(B, -1, -1), J], 2)  # (B, 3N, K + 7)
        D = torch.zeros(B, K + 7, dtype=A.dtype, device=A.device)
        D[:, 1:K + 1] = reg / scale[:, None] ** 2
        G = M.transpose(1, 2) @ M + torch.diag_embed(D)
        u = torch.linalg.solve(G, (M.transpose(1, 2) @ Z.unsqueeze(-1))).squeeze(-1)
        s_new = u[:, 0].clamp(min=1e-8)
        w = u[:, K + 4:]
        t = torch.einsum("bij,bj->bi", R, u[:, K + 1:K + 4])
        R = R @ axis_angle_to_rotation(w)
        scale = s_new
        shape = mean + (A @ (u[:, 1:K + 1] / s_new[:, None]).T).T.reshape(B, N, 3)
    return scale, R, t


def _bounds_vector(k_id, k_exp, id_bounds, exp_bounds):
    lo = np.full(k_id + k_exp, -np.inf)
    hi = np.full(k_id + k_exp, np.inf)
    if id_bounds is not None:
        lo[:k_id], hi[:k_id] = id_bounds
    if exp_bounds is not None:
        lo[k_id:], hi[k_id:] = exp_bounds
    return lo, hi


def _bounded_solve(L, rhs, lo, hi):
    """Box-constrained least squares per sample, on the Cholesky-reduced problem.

    ``||A x - r||^2 + x^T D x`` equals ``||L^T x - L^{-1} A^T r||^2`` up to a constant, with
    ``L L^T = A^T A + D``: a K x K problem instead of a 3N x K one.
    """

    M = L.T.cpu().numpy()
    y = torch.linalg.solve_triangular(L, rhs, upper=False).cpu().numpy()  # (K, B)
    out = []
    for b in range(y.shape[1]):
        res = lsq_linear(M, y[:, b], bounds=(lo, hi), method="bvls", tol=1e-10)
        out.append(np.clip(res.x, lo, hi))  # BVLS may overshoot a bound by rounding (~1e-18)
    return torch.from_numpy(np.stack(out)).to(rhs)


def _restrict_triangles(triangles: torch.Tensor, idx: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """Triangles whose three vertices all lie in ``idx``, re-indexed into ``idx``."""
    remap = torch.full((num_vertices,), -1, dtype=torch.long, device=triangles.device)
    remap[idx] = torch.arange(idx.numel(), device=triangles.device)
    t = remap[triangles]
    return t[(t >= 0).all(1)]


def _cluster_subset(mean: torch.Tensor, triangles: torch.Tensor, region_idx: torch.Tensor,
                    cell: float, name: str) -> VertexSubset:
    """Decimate a region by vertex clustering on a uniform grid of ``cell`` cm.

    Each occupied grid cell keeps the region vertex nearest its centroid (so the subset is a
    true subset of model vertices, and ground truth for it is exact); a triangle of the
    region survives when its three vertices fall in three different cells, and is re-indexed
    to the kept vertices. Duplicates are removed.
    """
    P = mean[region_idx].double().cpu()
    cells = torch.floor(P / cell).long()
    _, cluster = torch.unique(cells, dim=0, return_inverse=True)
    n = int(cluster.max()) + 1
    centroid = torch.zeros(n, 3, dtype=P.dtype).index_add_(0, cluster, P)
    centroid /= torch.bincount(cluster, minlength=n).unsqueeze(1).to(P.dtype)
    dist = (P - centroid[cluster]).norm(dim=1)
    # representative: the vertex nearest the centroid (ties: lowest index). A lexicographic sort by
    # (cluster, distance, index) is deterministic (an index_put with repeated indices is not)
    order = np.lexsort((np.arange(len(P)), dist.numpy(), cluster.numpy()))
    first = np.ones(len(order), bool)
    first[1:] = cluster.numpy()[order[1:]] != cluster.numpy()[order[:-1]]
    keep_local = torch.from_numpy(order[first].astype(np.int64))  # one per cluster, in cluster order
    # region triangles -> cluster ids
    V = mean.shape[0]
    local = torch.full((V,), -1, dtype=torch.long)
    local[region_idx.cpu()] = torch.arange(region_idx.numel())
    t = local[triangles.cpu()]
    t = t[(t >= 0).all(1)]
    ct = cluster[t]
    ok = (ct[:, 0] != ct[:, 1]) & (ct[:, 1] != ct[:, 2]) & (ct[:, 0] != ct[:, 2])
    ct = ct[ok]
    key = torch.sort(ct, dim=1).values
    _, first = np.unique(key.numpy(), axis=0, return_index=True)
    ct = ct[torch.from_numpy(np.sort(first))]
    # order kept vertices by model index for readability
    verts_model = region_idx.cpu()[keep_local]
    order_v = torch.argsort(verts_model)
    new_pos = torch.empty_like(order_v)
    new_pos[order_v] = torch.arange(n)
    return VertexSubset(name, verts_model[order_v].to(mean.device), new_pos[ct].to(mean.device))
