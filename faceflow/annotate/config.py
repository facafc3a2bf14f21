"""The options of one annotation run (:func:`faceflow.annotate.pipeline.annotate`, saved in its
manifest). Kept apart from the pipeline (torch, the fitting) so ``faceflow annotate --help`` answers
without loading them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AnnotateConfig:
    """Options of one annotation run (saved in the manifest)."""

    size: int = 256  # crop size (synthesis side)
    max_frames: int | None = None
    pairs: tuple[str, ...] = ("consecutive", "gap")
    max_gap: int = 10  # gap pairs: advance while mean 3D flow <= 1 px, at most this far
    gap_stride: int = 1  # a gap pair starts at every gap_stride-th frame
    dense: bool = True  # use mediapipe's dense points in the fit
    previews: int = 6
    detector: str = "mediapipe"
    batch: int = 16
    flag_error_iod: float = 0.08  # frames whose landmark error exceeds this fraction of IOD are flagged
