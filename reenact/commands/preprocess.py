"""Turn a target's video into what the renderer trains on: the annotation (fixed crop, one
identity fitted over the video, per-frame expressions and cameras), NMFC and eye-sketch
conditioning, mouth boxes, and the flows between consecutive real frames from the chosen
providers (cached side by side under flows/). The first two thirds train, the last third tests.
Resumable; a later --flow X only adds X. manifest.json is written last.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args
from reenact.presets import PreprocessConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="the target's video (one person, any format ffmpeg reads)")
    p.add_argument("data_dir", help="output directory (rerun the same command to resume)")
    add_dataclass_arguments(p, PreprocessConfig, names=PreprocessConfig.FLAGS)
    p.add_argument("--overwrite", action="store_true", help="redo everything in DATA_DIR")


def run(args) -> int:
    from reenact.preprocess import preprocess

    cfg = dataclass_from_args(PreprocessConfig, args, names=PreprocessConfig.FLAGS)
    m = preprocess(args.video, args.data_dir, cfg, overwrite=args.overwrite)
    tr, te = m["split"]["train"], m["split"]["test"]
    print(f"done: {m['frames']} frames ({tr[1] - tr[0]} train, {te[1] - te[0]} test), flows: "
          f"{', '.join(sorted(m['flows']))} -> {Path(args.data_dir) / 'manifest.json'}")
    return 0
