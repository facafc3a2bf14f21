"""The options of one annotation run (:func:`faceflow.annotate.pipeline.annotate`, saved in its
manifest). Kept apart from the pipeline (torch, the fitting) so ``faceflow annotate --help`` answers
without loading them."""

from __future__ import annotations

from dataclasses import dataclass

from faceflow.runtime.flags import option


@dataclass
class AnnotateConfig:
    """Options of one annotation run (saved in the manifest)."""

    size: int = option(256, "crop size in pixels (synthesis side)")
    max_frames: int | None = option(None, "only the first N frames")
    pairs: tuple[str, ...] = option(("consecutive", "gap"), "which 3D-flow pairs to make (none: pass --pairs "
                                    "with no value)", nargs="*", choices=("consecutive", "gap"))
    # gap pairs: advance while the mean 3D flow is at most 1 px, at most this far
    max_gap: int = option(10, "longest temporal gap of a gap pair")
    gap_stride: int = option(1, "start a gap pair at every N-th frame")
    dense: bool = option(True, "fit to the 68 landmarks only (by default mediapipe's dense points are used "
                               "too)")
    previews: int = option(6, "number of preview PNGs")
    detector: str = option("mediapipe", "landmark backend (dlib: Head2Head++'s 68-point predictor)",
                           choices=("mediapipe", "fan", "dlib"))
    batch: int = option(16, "frames rendered per batch")
    storage: str = option("full", "full: every array memory-mapped (PNCC, NMFC, eyes, masks, flows; about 2.5 GB "
                                  "per minute of 25-fps video at 256 px); compact: the crops as JPEG/PNG files, "
                                  "the landmarks, fits and pairs, the rest drawn when read (faceflow.annotate.store; "
                                  "under 50 MB per minute)", choices=("full", "compact"))
    frames: str = option("jpeg", "how compact storage keeps the crops (png: lossless, about 4x larger)",
                         choices=("jpeg", "png"))
    quality: int = option(95, "JPEG quality (1-100) of compact storage's crops")
    flag_error_iod: float = option(0.08, "frames whose landmark error exceeds this fraction of the "
                                         "inter-ocular distance are flagged")

    FLAGS = ("max_frames", "size", "pairs", "max_gap", "gap_stride", "dense", "previews", "detector", "storage",
             "frames", "quality")
