"""Baseline flow estimators of the flow benchmark (DeepFaceFlow Tables 1 and 2).

Every method is a callable ``method(batch) -> flow`` taking a collated batch of pair-sample
contract items (``"i1"``, ``"i2"`` (B, 3, 224, 224) in [0, 1], I2 already in I1's registered
frame) and returning a predicted flow (B, 224, 224, 3) float32 in template pixels, forward
I1 -> I2: the point seen at I1's pixel centre p moves to p + F[..., :2] in I2 (the convention
of :mod:`faceflow.render.flow`). 2D methods return ``dz = NaN`` and only enter the 2D table.
Each method has ``name``, ``label`` (table row), ``dims`` (2 or 3), ``failures`` (pairs it
could not process and scored as zero flow) and ``meta()`` (JSON-able description); ``close()``
frees what it holds. :class:`FitDifference` also sets ``last_failed`` and ``last_coverage``
(per pair of its last call).

- :class:`ZeroFlow`: no motion (the sanity floor).
- :class:`OpenCVFlow`: ``'dis'`` (DIS, medium preset, Kroeger et al. ECCV 2016) or
  ``'farneback'`` (Farnebaeck 2003) dense optical flow on grayscale uint8 versions of I1, I2.
- :class:`FitDifference`: the "fit the 3DMM to each frame independently and subtract" baseline
  of the paper (ITWMM / DNSfM-style): mediapipe landmarks of each 224 image ->
  :func:`faceflow.face.fitting.fit_image` -> both posed inner-face meshes -> eq. (2).
"""

from __future__ import annotations

from dataclasses import asdict

import cv2
import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from faceflow.errors import FaceflowError
from faceflow.face.correspondence import load_correspondence
from faceflow.face.fitting import fit_image
from faceflow.face.landmarks import MediapipeDetector, NoFaceError, detect_image
from faceflow.geometry.morphable import MorphableModel
from faceflow.ops.opticalflow import DISFlow, FarnebackParams, farneback_flow, grey, to_uint8_images
from faceflow.render.flow import flow_ground_truth

__all__ = ["ZeroFlow", "OpenCVFlow", "FarnebackParams", "FitDifference", "fit_difference_flow",
           "to_uint8_images", "nan_dz"]


def nan_dz(flow_xy: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(B, H, W, 2) 2D flow -> (B, H, W, 3) float32 with dz = NaN (a 2D method's output)."""
    xy = torch.as_tensor(np.asarray(flow_xy) if not torch.is_tensor(flow_xy) else flow_xy, dtype=torch.float32)
    return torch.cat([xy, torch.full_like(xy[..., :1], float("nan"))], -1)


class _Method:
    name = "method"
    label = "method"
    dims = 3

    def __init__(self):
        self.failures = 0

    def meta(self) -> dict:
        return {}

    def close(self) -> None:
        pass


class ZeroFlow(_Method):
    """No motion: F = 0 (3D), the floor any estimator must beat."""

    name, label, dims = "zero", "Zero flow", 3

    def __call__(self, batch: dict) -> torch.Tensor:
        B, _, H, W = batch["i1"].shape
        return torch.zeros(B, H, W, 3)


class OpenCVFlow(_Method):
    """2D optical flow with OpenCV on grayscale uint8 I1 -> I2 (forward: flow[y, x] is where
    I1's pixel (x, y) moved in I2, i.e. p2 - p1). ``algorithm``: 'dis' (DIS optical flow,
    ``DISOPTICAL_FLOW_PRESET_MEDIUM``) or 'farneback' (:class:`FarnebackParams`)."""

    dims = 2

    def __init__(self, algorithm: str = "dis", farneback: FarnebackParams | None = None):
        super().__init__()

        if algorithm not in ("dis", "farneback"):
            raise FaceflowError(f"unknown OpenCV flow algorithm {algorithm!r}; choose 'dis' or 'farneback'")
        self._cv2 = cv2
        self.algorithm = self.name = algorithm
        self.label = {"dis": "DIS optical flow (OpenCV, medium)", "farneback": "Farneback (OpenCV)"}[algorithm]
        self.params = farneback or FarnebackParams()
        self._dis = DISFlow() if algorithm == "dis" else None

    def flow2d(self, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
        """Grayscale uint8 (H, W) images -> forward flow (H, W, 2) float32 (dx, dy) in pixels."""
        if self.algorithm == "dis":
            return self._dis(g1, g2)
        return farneback_flow(g1, g2, self.params)

    def __call__(self, batch: dict) -> torch.Tensor:
        a, b = to_uint8_images(batch["i1"]), to_uint8_images(batch["i2"])
        return nan_dz(np.stack([self.flow2d(grey(x), grey(y)) for x, y in zip(a, b)]))

    def meta(self) -> dict:
        if self.algorithm == "dis":
            return {"opencv": self._cv2.__version__, "preset": DISFlow.preset, "input": "gray uint8"}
        return {"opencv": self._cv2.__version__, "input": "gray uint8", **asdict(self.params)}


def fit_difference_flow(image1: np.ndarray, image2: np.ndarray, model, detector, correspondence=None,
                        subset=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 3DMM-difference flow of two registered images (H, W, 3) uint8 RGB (same frame).

    Each image is fitted independently (mediapipe landmarks -> :func:`faceflow.face.fitting.fit_image`,
    with mediapipe's dense points when ``correspondence`` = (mp_idx, vertices) is given); both
    posed meshes of ``subset`` (default the inner face) give eq. (2) at image 1's visible pixels.
    Returns flow (H, W, 3) (0 off the mesh), mask (H, W) bool, and the two image-space meshes
    (N, 3). Raises :class:`faceflow.face.landmarks.NoFaceError` when a face is not found.
    """

    subset = subset if subset is not None else model.subset("face")
    meshes = []
    for img in (image1, image2):
        face = detect_image(np.ascontiguousarray(img), detector)
        dense = dv = None
        if correspondence is not None and face.dense is not None:
            mp_idx, dv = correspondence
            dense = face.dense[mp_idx, :2]
        fit = fit_image(model, face.lmk68, dense, dv)
        meshes.append(fit.image_vertices(model, slice(None), subset.indices).float())  # (1, N, 3)
    H, W = image1.shape[:2]
    with torch.no_grad():
        # eq. (2) of DeepFaceFlow, the same rendering as the annotation's ground truth
        flow, mask = flow_ground_truth(meshes[0], meshes[1], subset.triangles, (H, W), cull_backfaces=True)
    return flow[0], mask[0], meshes[0][0], meshes[1][0]


def _fill_nearest(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Extend flow (H, W, C) from the ``mask`` pixels to every pixel (nearest masked pixel)."""

    m = mask.cpu().numpy()
    if m.all() or not m.any():
        return flow
    _, (iy, ix) = distance_transform_edt(~m, return_indices=True)
    return flow[torch.from_numpy(iy), torch.from_numpy(ix)]


class FitDifference(_Method):
    """Fit the morphable model to each image independently and take eq. (2) between the two
    posed inner-face meshes (the ITWMM / DNSfM-style baseline of DeepFaceFlow Tables 1-2).

    GT-mask pixels that the fitted mesh of I1 does not cover take the flow of the nearest
    covered pixel (so every scored pixel has a prediction; the covered fraction is recorded in
    ``coverage``). When no face is found in I1 or I2 the pair counts as a failure and scores
    zero flow. ``dense`` also fits mediapipe's dense points (as the annotation does).
    """

    name, label, dims = "fit_difference", "3DMM fit difference (ITWMM-style)", 3

    def __init__(self, model=None, dense: bool = True):
        super().__init__()

        self.model = model if model is not None else MorphableModel.load("skin")
        self.subset = self.model.subset("face")
        self.dense = bool(dense)
        self.correspondence = None
        if self.dense:
            self.correspondence = load_correspondence()
        self.detector = MediapipeDetector(static_image_mode=True)  # independent images: no tracking
        self.coverage: list[float] = []

    def __call__(self, batch: dict) -> torch.Tensor:

        a, b = to_uint8_images(batch["i1"]), to_uint8_images(batch["i2"])
        gt_mask = batch.get("mask")
        out = []
        self.last_failed, self.last_coverage = [], []
        for k in range(len(a)):
            try:
                flow, mask, _, _ = fit_difference_flow(a[k], b[k], self.model, self.detector, self.correspondence,
                                                       self.subset)
            except NoFaceError:
                self.failures += 1
                self.last_failed.append(True)
                self.last_coverage.append(None)
                out.append(torch.zeros(a.shape[1], a.shape[2], 3))
                continue
            cov = None
            if gt_mask is not None:
                g = gt_mask[k].bool().cpu()
                cov = float((mask & g).sum()) / max(int(g.sum()), 1)
                self.coverage.append(cov)
            self.last_failed.append(False)
            self.last_coverage.append(cov)
            out.append(_fill_nearest(flow, mask))
        return torch.stack(out).float()

    def meta(self) -> dict:
        cov = float(np.mean(self.coverage)) if self.coverage else None
        return {"detector": "mediapipe (static image mode)", "fit": "faceflow.face.fitting.fit_image",
                "dense_points": self.dense, "subset": "face", "mean_gt_mask_coverage": cov,
                "uncovered_pixels": "nearest covered pixel's flow"}

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
            self.detector = None
