"""Training and evaluation data: the identity split of the real clips (:mod:`.splits`),
pseudo-ground-truth pairs from annotated real videos (:mod:`.pseudo`) and synthetic pairs
(:mod:`.synthetic`). Every flow dataset follows the pair-sample contract documented in
:mod:`faceflow.data.pseudo` (items of 224 x 224 registered tensors).

``mediapipe_ict.json`` (mediapipe -> ICT FaceKit correspondence, read by
:mod:`faceflow.face.correspondence`) also lives in this folder.
"""

from __future__ import annotations

from faceflow.data.splits import (
    CLIPS,
    PERSONS,
    SPLITS,
    annotation_clips,
    clips,
    evenly_spaced,
    identity_index,
    identity_of,
    split_of,
    video_path,
)

# imported on first use: they load torch (and synthetic its renderer), which the light parts of
# this package (the identity split, the command-line options) do not need
_LAZY = {"AnnotatedPairs": ".pseudo", "RealBuildConfig": ".pseudo", "build_real": ".pseudo",
         "describe": ".pseudo", "split_dirs": ".pseudo", "SyntheticPairs": ".synthetic"}


def __getattr__(name: str):
    """The names of :data:`_LAZY`, imported from their module on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AnnotatedPairs", "RealBuildConfig", "build_real", "describe", "split_dirs",
           "SPLITS", "CLIPS", "PERSONS", "clips", "annotation_clips", "split_of", "identity_of",
           "identity_index", "video_path", "evenly_spaced", "SyntheticPairs"]
