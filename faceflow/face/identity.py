"""Identity similarity (CSIM), the standard cross-reenactment metric: the cosine similarity of
face-recognition embeddings of generated frames and of the target's real frames (and, for
contrast, the source's). The embeddings are dlib's face-recognition ResNet
(:class:`faceflow.face.dlib_face.FaceEmbedder`; 128-D, weights inside the PyPI package
face-recognition-models, offline).

    emb = FaceEmbedder()
    ref = identity_reference(emb, target_frames)          # (128,) mean unit embedding
    csim(emb, generated_frames, ref)                      # {"csim", "frames", "missed"}

CSIM of one frame is ``<e, r> / (|e| |r|)`` with ``e`` its embedding and ``r`` the reference;
a clip's CSIM is the mean over the frames where a face was found (``missed`` counts the others).
The reference is the normalised mean of the unit embeddings of a set of real frames, so a
single odd frame weighs little.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from faceflow.errors import FaceflowError, MediaError

__all__ = ["cosine", "embed_frames", "identity_reference", "csim"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (D,)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise FaceflowError("cosine similarity of a zero vector")
    return float(a @ b / (na * nb))


def embed_frames(embedder, frames: Iterable[np.ndarray], landmarks: Iterable | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, 128) float32 of RGB uint8 frames (zeros where no face) and found (N,) bool.
    ``landmarks``: an optional (68, 2) per frame (None entries: let dlib find the face)."""
    embs, found = [], []
    lms = iter(landmarks) if landmarks is not None else None
    for frame in frames:
        lm = next(lms) if lms is not None else None
        e = embedder.embed(frame, None if lm is None or not np.isfinite(lm).all() else lm)
        found.append(e is not None)
        embs.append(np.zeros(128, np.float32) if e is None else e)
    if not embs:
        raise MediaError("no frames to embed")
    return np.stack(embs), np.asarray(found)


def identity_reference(embedder, frames: Iterable[np.ndarray], landmarks: Iterable | None = None) -> np.ndarray:
    """The reference embedding (128,) of a person: the normalised mean of the unit embeddings of
    ``frames`` where a face was found. Raises :class:`~faceflow.errors.MediaError` when none has one."""
    embs, found = embed_frames(embedder, frames, landmarks)
    if not found.any():
        raise MediaError(f"no face found in any of the {len(found)} reference frames")
    unit = embs[found] / np.linalg.norm(embs[found], axis=1, keepdims=True)
    m = unit.mean(0)
    return (m / np.linalg.norm(m)).astype(np.float32)


def csim(embedder, frames: Iterable[np.ndarray], reference: np.ndarray, landmarks: Iterable | None = None) -> dict:
    """CSIM of ``frames`` against a reference embedding: ``{"csim": mean, "std", "frames", "missed",
    "per_frame": list (NaN where no face)}``; ``csim`` is NaN when no frame has a face."""
    embs, found = embed_frames(embedder, frames, landmarks)
    per = np.full(len(found), np.nan)
    for k in np.flatnonzero(found):
        per[k] = cosine(embs[k], reference)
    ok = per[found]
    return {"csim": float(ok.mean()) if len(ok) else float("nan"), "std": float(ok.std()) if len(ok) else float("nan"),
            "frames": int(len(found)), "missed": int((~found).sum()), "per_frame": per.tolist()}

