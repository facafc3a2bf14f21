"""The layout of an annotation directory (:mod:`faceflow.annotate.pipeline`): what each array under
``OUT_DIR/data/`` holds (:data:`LAYOUT`, copied into every manifest; N = kept frames, S = crop
size, M = pairs), the template size, and :func:`open_array` for the big arrays a stage fills row
by row (memory-mapped, so an interrupted stage resumes with the rows it wrote).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["TEMPLATE", "LAYOUT", "open_array"]

TEMPLATE = 224

LAYOUT = {
    "frame_index.npy": "(N,) int64 original frame number of each kept frame",
    "segment.npy": "(N,) int32 segment id of each kept frame (flow pairs never cross segments)",
    "crops.npy": "(N, S, S, 3) uint8 frames cropped with the fixed per-video box",
    "aligned.npy": "(N, 224, 224, 3) uint8 frames registered to the 68-point template (DeepFaceFlow input)",
    "aligned_transform.npy": "(N, 2, 3) float64 similarity crop -> template ([x'; y'] = A [x; y; 1])",
    "lmk68.npy": "(N, 68, 2) float32 smoothed 68 landmarks, crop pixels",
    "dense.npy": "(N, 478, 3) float32 smoothed mediapipe points, crop pixels (z in pixels)",
    "pupils.npy": "(N, 2, 2) float32 pupil centres (eq. (7.3)), crop pixels, NaN if closed",
    "exp.npy": "(N, 53) float32 expression coefficients", "id.npy": "(100,) float32 identity coefficients",
    "camera_rotation.npy": "(N, 3, 3) float32", "camera_translation.npy": "(N, 3) float32 crop pixels",
    "camera_scale.npy": "(N,) float32 crop pixels per cm (p = f C R S + t, faceflow.geometry.camera)",
    "pncc.npy": "(N, 224, 224, 3) float16 PNCC in the frame's template (DeepFaceFlow eq. (3))",
    "pncc_mask.npy": "(N, 224, 224) bool face pixels of pncc",
    "nmfc.npy": "(N, S, S, 3) uint8 NMFC of the face in the crop (Head2Head++ eq. (7.2))",
    "face_mask.npy": "(N, S, S) bool face pixels of nmfc",
    "eyes.npy": "(N, S, S, 3) uint8 eye sketches: white outlines, red pupils",
    "eye_mask.npy": "(N, S, S) bool eye regions (dilated polygons)",
    "pairs.npy": "(M, 2) int64 kept-frame indices (a, b) of the flow pairs",
    "pair_kind.npy": "(M,) uint8 0 = consecutive, 1 = temporal gap",
    "flow.npy": "(M, 224, 224, 3) float16 3D flow a -> b in template pixels of frame a (eq. (2)); "
                "valid where pncc_mask[a]; frame b must be warped into a's template with aligned_transform[a]",
}


def open_array(path: Path, shape, dtype) -> np.ndarray:
    """Open (resume) or create a ``.npy`` memmap; a new one is filled with zeros."""
    if path.exists():
        arr = np.load(path, mmap_mode="r+")
        if arr.shape == tuple(shape) and arr.dtype == np.dtype(dtype):
            return arr
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
