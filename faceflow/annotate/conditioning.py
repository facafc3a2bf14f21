"""Everything an annotation derives from its fits, drawn from the stored small arrays: the frame
registered to the template, PNCC (DeepFaceFlow eq. (3)), NMFC (Head2Head++ eq. (7.2)), eye sketches
and masks, and the 3D-flow ground truth of a pair (DeepFaceFlow eq. (2)).

The render and pairs stages of :mod:`faceflow.annotate.pipeline` draw the full layout with it, and
the compact layout (:mod:`faceflow.annotate.store`) draws the same arrays when a sample is read, so
both forms hold one definition of each array.
"""

from __future__ import annotations

import numpy as np
import torch

from faceflow.annotate.layout import TEMPLATE
from faceflow.face.eyes import eye_masks, eye_sketch
from faceflow.face.fitting import VideoFit
from faceflow.face.registration import Similarity, warp_image
from faceflow.render.pncc import face_nmfc_uint8, pncc, points_to_pncc
from faceflow.render.rasterize import interpolate, rasterize

__all__ = ["FitRenderer", "to_template"]


def to_template(verts: torch.Tensor, A: np.ndarray) -> torch.Tensor:
    """Apply per-frame similarities A (B, 2, 3) to image-space vertices (B, V, 3); z scales."""

    A = torch.from_numpy(np.asarray(A)).to(verts)
    s = torch.sqrt(torch.det(A[:, :, :2]).abs())
    xy = torch.einsum("bij,bvj->bvi", A[:, :, :2], verts[..., :2]) + A[:, None, :, 2]
    return torch.cat([xy, verts[..., 2:] * s[:, None, None]], -1)


class FitRenderer:
    """The arrays an annotation derives from its fit, for any kept frames.

    model: the 'skin' :class:`~faceflow.geometry.morphable.MorphableModel`; fit: a
    :class:`~faceflow.face.fitting.VideoFit` whose cameras are in crop pixels (``data/camera_*.npy``);
    A (N, 2, 3) crop -> template similarities; lmk (N, 68, 2) crop landmarks; size S (crop side).
    """

    def __init__(self, model, fit: VideoFit, A: np.ndarray, lmk: np.ndarray, size: int, exp_basis=None):
        self.model, self.fit, self.A, self.lmk, self.size = model, fit, np.asarray(A), np.asarray(lmk), int(size)
        self.face = model.subset("face")
        # the expression basis on the face vertices (K, V_face, 3): pass one to share it between videos
        self._exp_basis = exp_basis
        self._base = self._camera = None  # the video's identity part and cameras (made on first use)

    @classmethod
    def from_arrays(cls, model, arrays: dict, size: int, exp_basis=None) -> FitRenderer:
        """From the stored arrays (``id``, ``exp``, ``camera_rotation``, ``camera_translation``,
        ``camera_scale``, ``aligned_transform``, ``lmk68``; names without ``.npy``)."""
        f32 = lambda n: np.array(arrays[n], dtype=np.float32)  # a writable copy (the store's arrays are memmaps)
        n = len(arrays["exp"])
        fit = VideoFit(f32("id").reshape(-1), f32("exp"), f32("camera_rotation"), f32("camera_translation"),
                       f32("camera_scale"), np.zeros((n, 17), np.int64), np.zeros(n, np.float32),
                       np.ones(n, np.float32))
        return cls(model, fit, arrays["aligned_transform"], arrays["lmk68"], size, exp_basis)

    @torch.no_grad()
    def vertices(self, idx) -> torch.Tensor:
        """Crop-pixel meshes (B, V_face, 3) of kept frames ``idx`` (B,): eq. (1) of DeepFaceFlow
        (the identity part computed once per video), then each frame's camera."""
        idx = np.asarray(idx)
        if self._base is None:
            ident = torch.from_numpy(np.ascontiguousarray(self.fit.id))[None].to(self.model.device)
            self._base = self.model.shape(ident, None, self.face.indices)[0]
            if self._exp_basis is None:
                self._exp_basis = self.model.exp_basis[:, self.face.indices].contiguous()
            self._exp_basis = self._exp_basis.to(self._base)
            self._camera = self.fit.camera(self.model.device)
        exp = torch.from_numpy(np.ascontiguousarray(self.fit.exp[idx])).to(self._base)
        shape = self._base + torch.einsum("bk,kvc->bvc", exp, self._exp_basis)  # eq. (1) of DeepFaceFlow
        return self._camera[torch.from_numpy(idx)].project(shape)

    @torch.no_grad()
    def aligned(self, crop: np.ndarray, i: int) -> np.ndarray:
        """Frame ``i``'s crop (S, S, 3) uint8 registered to the 224 template (``aligned.npy``)."""
        return warp_image(crop, Similarity(self.A[i]), TEMPLATE, border="border")

    @torch.no_grad()
    def pncc(self, idx, verts: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """PNCC in each frame's template: (B, 224, 224, 3) float16 and mask (B, 224, 224) bool
        (``pncc.npy``, ``pncc_mask.npy``)."""
        idx = np.asarray(idx)
        v = self.vertices(idx) if verts is None else verts
        code, mask = pncc(to_template(v, self.A[idx]), self.face.triangles, (TEMPLATE, TEMPLATE),
                          cull_backfaces=True)
        return code.numpy().astype(np.float16), mask.numpy()

    @torch.no_grad()
    def nmfc(self, idx, verts: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """NMFC in the crop: (B, S, S, 3) uint8 and face mask (B, S, S) bool (``nmfc.npy``,
        ``face_mask.npy``)."""
        v = self.vertices(idx) if verts is None else verts
        img, mask = face_nmfc_uint8(self.model, v, self.size)
        return img.numpy(), mask.numpy()

    def eyes(self, i: int, pupils: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eye sketch (S, S, 3) uint8 and eye mask (S, S) bool of frame ``i`` from its pupils
        (2, 2) (``eyes.npy``, ``eye_mask.npy``)."""
        shape = (self.size, self.size)
        return eye_sketch(self.lmk[i], pupils, shape), eye_masks(self.lmk[i], shape)

    @torch.no_grad()
    def pair(self, a: int, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame a's PNCC (224, 224, 3) float32 and mask (224, 224), and eq. (2) of DeepFaceFlow,
        the 3D flow a -> b in frame a's template (224, 224, 3) float32 (0 off the mask), from one
        rasterisation of frame a's mesh."""
        vt = to_template(self.vertices([a, b]), self.A[[a, a]])
        size = (TEMPLATE, TEMPLATE)
        frags = rasterize(vt[:1], self.face.triangles, size, cull_backfaces=True)
        mask = frags.mask[0]
        # one interpolation serves both: the surface point (eq. (3)) and its motion (eq. (2))
        both = interpolate(torch.cat([vt[0], vt[1] - vt[0]], -1), self.face.triangles, frags)[0]
        return points_to_pncc(both[..., :3], mask, size), mask, both[..., 3:]
