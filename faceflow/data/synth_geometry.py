"""The render head of the synthetic pairs (:mod:`faceflow.data.synthetic`): the ICT FaceKit
``full`` model's vertices with the ``skin`` model's first, so the ``face`` and ``meshreg`` subsets
index it directly, plus what texturing and rendering need (regions, eyeball angles, adjacency).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from faceflow.errors import FaceflowError
from faceflow.geometry.camera import project
from faceflow.geometry.morphable import MorphableModel


@dataclass
class HeadGeometry:
    """The render mesh: the skin model's vertices first (exactly the ``skin`` model, so the
    ``face`` and ``meshreg`` subsets index it directly), then the ``full`` model's inner parts
    (mouth and eye sockets, gums, tongue, teeth, eyeballs; not the eyelash cards).

    triangles (F, 3): the full model's render triangles, the ``face`` subset's first
    (``num_face_triangles`` of them, so a pixel shows the inner face iff its triangle id is below
    that); face_idx / face_triangles and meshreg_idx / meshreg_triangles: the skin model's
    ``face`` and ``meshreg`` subsets; region (V,) region index per vertex; eye_angle (V,) degrees
    from the eyeball's axis (NaN off the eyeballs); adjacency: row-normalised scipy sparse matrix over skin vertices.
    """

    mean: torch.Tensor
    id_basis: torch.Tensor
    exp_basis: torch.Tensor
    triangles: torch.Tensor
    num_face_triangles: int
    num_skin: int
    region: torch.Tensor
    region_names: list[str]
    lmk68: torch.Tensor
    face_idx: torch.Tensor
    face_triangles: torch.Tensor
    meshreg_idx: torch.Tensor
    meshreg_triangles: torch.Tensor
    eye_angle: np.ndarray
    adjacency: object

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    def shape(self, id_coeffs: torch.Tensor, exp_coeffs: torch.Tensor, vertex_idx=None) -> torch.Tensor:
        """Model-space vertices (B, V, 3) of identities (B, 100) and expressions (B, 53);
        only the vertices ``vertex_idx`` (N,) when given: (B, N, 3)."""
        mean, ub, eb = self.mean, self.id_basis, self.exp_basis
        if vertex_idx is not None:
            mean, ub, eb = mean[vertex_idx], ub[:, vertex_idx], eb[:, vertex_idx]
        # eq. (1) of DeepFaceFlow
        out = mean + torch.einsum("bk,kvc->bvc", id_coeffs.to(mean), ub)
        return out + torch.einsum("bk,kvc->bvc", exp_coeffs.to(mean), eb)


def load_geometry(device: str | torch.device = "cpu") -> HeadGeometry:
    """Build the :class:`HeadGeometry` from the ICT FaceKit ``skin`` and ``full`` variants."""


    skin = MorphableModel.load("skin")
    full = MorphableModel.load("full")
    ns = skin.num_vertices
    if full.num_vertices <= ns or not torch.allclose(full.mean[:ns], skin.mean, atol=1e-2):
        raise FaceflowError("the full ICT FaceKit variant does not extend the skin variant's vertices")
    mean = torch.cat([skin.mean, full.mean[ns:]])
    id_basis = torch.cat([skin.id_basis, full.id_basis[:, ns:]], 1)
    exp_basis = torch.cat([skin.exp_basis, full.exp_basis[:, ns:]], 1)
    face = skin.subset("face")
    face_tris = face.indices[face.triangles]  # global indices, the skin model's winding
    tris = full.render_triangles
    V = full.num_vertices
    # eyelashes are cards meant for alpha blending: opaque, they read as thick eyeliner
    lashes = [i for i, n in enumerate(full.region_names) if n.startswith("eyelashes")]
    tris = tris[~torch.isin(full.vertex_region[tris], torch.tensor(lashes)).any(1)]

    def key(t):
        s = t.sort(1).values
        return (s[:, 0] * V + s[:, 1]) * V + s[:, 2]

    is_face = torch.isin(key(tris), key(face_tris))
    if int(is_face.sum()) != face_tris.shape[0]:
        raise FaceflowError("the inner-face triangles are not all render triangles of the full model")
    triangles = torch.cat([face_tris, tris[~is_face]])
    meshreg = skin.subset("meshreg")
    region = full.vertex_region.clone()
    # eyeballs: angle of each vertex from the axis through the sphere centre and the cornea apex
    eye_angle = np.full(V, np.nan)
    for name in ("eyeball_left", "eyeball_right"):
        idx = torch.nonzero(region == full.region_names.index(name)).squeeze(1).numpy()
        P = mean[idx].double().numpy()
        A = np.concatenate([2 * P, np.ones((len(P), 1))], 1)
        sol = np.linalg.lstsq(A, (P ** 2).sum(1), rcond=None)[0]
        c = sol[:3]
        apex = P[np.argmax(P[:, 2])]
        axis = (apex - c) / np.linalg.norm(apex - c)
        d = P - c
        cos = d @ axis / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        eye_angle[idx] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    st = triangles[(triangles < ns).all(1)].numpy()
    rows = np.concatenate([st[:, 0], st[:, 1], st[:, 2], st[:, 1], st[:, 2], st[:, 0]])
    cols = np.concatenate([st[:, 1], st[:, 2], st[:, 0], st[:, 0], st[:, 1], st[:, 2]])
    A = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(ns, ns)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(1)).ravel()
    adjacency = sp.diags(1.0 / np.maximum(deg, 1)) @ A
    dev = torch.device(device)
    return HeadGeometry(mean.to(dev), id_basis.to(dev), exp_basis.to(dev), triangles.to(dev),
                        int(face_tris.shape[0]), ns, region.to(dev), list(full.region_names), skin.lmk68.to(dev),
                        face.indices.to(dev), face.triangles.to(dev), meshreg.indices.to(dev),
                        meshreg.triangles.to(dev), eye_angle, adjacency.tocsr())


def project_fitted(verts: torch.Tensor, rotation, translation, scale) -> torch.Tensor:
    """Model-space vertices (1, V, 3) through one fitted camera of an annotated clip (rotation
    (3, 3), translation (3,), scale: arrays in crop pixels, ``p = scale C R S + t``,
    :mod:`faceflow.geometry.camera`) -> (1, V, 3) crop pixels."""

    t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).reshape(1, *np.shape(a))
    return project(verts, t(rotation), t(translation), t(scale).reshape(1))
