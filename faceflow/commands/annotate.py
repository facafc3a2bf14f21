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


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AnnotateConfig()
    p.add_argument("video", help="input video (any format ffmpeg reads)")
    p.add_argument("out", help="output directory (created; rerun the same command to resume)")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    p.add_argument("--size", type=int, default=d.size, help="crop size in pixels (synthesis side)")
    p.add_argument("--pairs", nargs="*", default=list(d.pairs), choices=["consecutive", "gap"],
                   help="which 3D-flow pairs to make (none: pass --pairs with no value)")
    p.add_argument("--max-gap", type=int, default=d.max_gap, help="longest temporal gap of a gap pair")
    p.add_argument("--gap-stride", type=int, default=d.gap_stride, help="start a gap pair at every N-th frame")
    p.add_argument("--no-dense", dest="dense", action="store_false",
                   help="fit to the 68 landmarks only (by default mediapipe's dense points are used too)")
    p.add_argument("--previews", type=int, default=d.previews, help="number of preview PNGs")
    p.add_argument("--detector", default=d.detector, choices=["mediapipe", "fan"], help="landmark backend")
    p.add_argument("--overwrite", action="store_true", help="replace an existing annotation in OUT")


def run(args) -> int:
    from faceflow.annotate.pipeline import annotate

    cfg = AnnotateConfig(size=args.size, max_frames=args.max_frames, pairs=tuple(args.pairs),
                         max_gap=args.max_gap, gap_stride=args.gap_stride, dense=args.dense,
                         previews=args.previews, detector=args.detector)
    m = annotate(args.video, args.out, cfg, overwrite=args.overwrite)
    rep = m["fit"]["reprojection"]
    print(f"done: {m['frames_kept']}/{m['frames_read']} frames kept in {len(m['segments'])} segment(s), "
          f"{m['pairs']['pairs']} flow pairs; landmark error median {rep['median_px']:.2f} px "
          f"({100 * rep['median_iod']:.1f}% IOD); {m['timings']['landmarks_and_fit_fps']:.1f} fps "
          f"(landmarks + fit) -> {args.out}/manifest.json")
    return 0
