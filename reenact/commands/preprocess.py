"""Turn a target's video into what the renderer trains on: the annotation (fixed crop, one
identity fitted over the video, per-frame expressions and cameras), NMFC and eye-sketch
conditioning, mouth boxes, and the flows between consecutive real frames from the chosen
providers (cached side by side under flows/). The first two thirds train, the last third tests.
Resumable; a later --flow X only adds X. manifest.json is written last.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reenact.presets import PreprocessConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = PreprocessConfig()
    p.add_argument("video", help="the target's video (one person, any format ffmpeg reads)")
    p.add_argument("data_dir", help="output directory (rerun the same command to resume)")
    p.add_argument("--size", type=int, default=d.size, help="crop size in pixels (the synthesis resolution)")
    p.add_argument("--flow", nargs="+", default=list(d.flows), choices=["faceflow3d", "dis2d", "none"],
                   help="flow provider(s) between consecutive real frames; several may be cached side by side")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames of the video")
    p.add_argument("--flow-weights", default=None,
                   help="directory with DeepFaceFlow's meshreg.pt and dffnet.pt (default: the shipped weights)")
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"], help="device of the flow network")
    p.add_argument("--detector", default=d.detector, choices=["mediapipe", "fan"], help="landmark backend")
    p.add_argument("--no-videos", dest="videos", action="store_false",
                   help="skip writing nmfc.mp4 and eyes.mp4 (by default they are written)")
    p.add_argument("--overwrite", action="store_true", help="redo everything in DATA_DIR")


def run(args) -> int:
    from reenact.preprocess import preprocess

    cfg = PreprocessConfig(size=args.size, flows=tuple(args.flow), max_frames=args.max_frames,
                           flow_weights=args.flow_weights, device=args.device, detector=args.detector,
                           videos=args.videos)
    m = preprocess(args.video, args.data_dir, cfg, overwrite=args.overwrite)
    tr, te = m["split"]["train"], m["split"]["test"]
    print(f"done: {m['frames']} frames ({tr[1] - tr[0]} train, {te[1] - te[0]} test), flows: "
          f"{', '.join(sorted(m['flows']))} -> {Path(args.data_dir) / 'manifest.json'}")
    return 0
