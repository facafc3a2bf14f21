"""Identity references of prepared targets for CSIM (:mod:`faceflow.face.identity`, dlib's
face-recognition embeddings): the self- and cross-reenactment tables compare generated frames
with the mean embedding of a target's TRAINING crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faceflow.errors import MediaError
from faceflow.face.identity import identity_reference

__all__ = ["target_reference", "cached_reference"]


def target_reference(embedder, data_dir, frames: int = 32) -> np.ndarray:
    """The identity reference (128,) of a prepared target (``python -m reenact preprocess``): its
    TRAINING crops (``split.train``; never the held-out ones a model is scored on), ``frames`` of
    them evenly spaced, embedded with their stored 68 landmarks."""
    data_dir = Path(data_dir)
    lo, hi = (int(x) for x in json.loads((data_dir / "manifest.json").read_text())["split"]["train"])
    d = data_dir / "annotation" / "data"
    idx = np.unique(np.linspace(lo, hi - 1, min(frames, hi - lo)).round().astype(int))
    crops = np.load(d / "crops.npy", mmap_mode="r")
    lmk = np.load(d / "lmk68.npy", mmap_mode="r")
    return identity_reference(embedder, (np.asarray(crops[i]) for i in idx), (np.asarray(lmk[i]) for i in idx))


def cached_reference(refs: dict, key, make, say=None):
    """``refs[key]``, made once by ``make()`` (a reference embedding); None when it finds no face
    (:class:`~faceflow.errors.MediaError`, said through ``say`` when given): CSIM is then n/a."""
    if key not in refs:
        try:
            refs[key] = make()
        except MediaError as e:
            refs[key] = None
            if say is not None:
                say(f"note: CSIM n/a for {key}: {e}")
    return refs[key]
