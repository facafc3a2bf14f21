"""Turn a talking-head video into a 3D-flow / reenactment dataset (DeepFaceFlow Sec. 3,
Head2Head++ Sec. 7.2), in five resumable stages with progress bars: track (mediapipe landmarks,
one face followed, smoothed), fit (one identity per video, per-frame expressions and cameras,
thesis eqs. (3.2)-(3.3)), render (fixed crop, registration to the 224 template, PNCC, NMFC, eye
sketches), pairs (exact 3D-flow ground truth for consecutive and gap pairs) and previews; then
manifest.json last. Rerun the same command after an interruption: finished work is kept.
"""

from __future__ import annotations

import argparse

from faceflow.annotate.config import AnnotateConfig
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="input video (any format ffmpeg reads)")
    p.add_argument("out", help="output directory (created; rerun the same command to resume)")
    add_dataclass_arguments(p, AnnotateConfig, names=AnnotateConfig.FLAGS)
    p.add_argument("--overwrite", action="store_true", help="replace an existing annotation in OUT")


def run(args) -> int:
    from faceflow.annotate.pipeline import annotate

    cfg = dataclass_from_args(AnnotateConfig, args, names=AnnotateConfig.FLAGS)
    m = annotate(args.video, args.out, cfg, overwrite=args.overwrite)
    rep = m["fit"]["reprojection"]
    print(f"done: {m['frames_kept']}/{m['frames_read']} frames kept in {len(m['segments'])} segment(s), "
          f"{m['pairs']['pairs']} flow pairs; landmark error median {rep['median_px']:.2f} px "
          f"({100 * rep['median_iod']:.1f}% IOD); {m['timings']['landmarks_and_fit_fps']:.1f} fps "
          f"(landmarks + fit) -> {args.out}/manifest.json")
    return 0
