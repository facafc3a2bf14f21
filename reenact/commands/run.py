"""Reenactment with a trained person-specific model, written as an mp4 at the source's frame
rate with the source's audio (atomically: an interrupted run leaves no OUT.mp4).

Modes: self drives the target with its own held-out frames (the last third; the APD against the
real frames is printed); head puts the source's expression and head pose (camera adapted to the
target's scale and translation statistics) and the source's eyes on the target; face puts the
source's expression only, with the target's pose and eyes; cycle runs head reenactment onto the
target and back onto the source's own model (--back-model) and reports the round-trip APD and
CSIM against the source (reenact.cycle).
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", help="a trained model (python -m reenact train DATA_DIR MODEL_DIR), a packed one "
                                     "(python -m reenact pack), or demo (the shipped demo target)")
    p.add_argument("--mode", required=True, choices=["self", "face", "head", "cycle"],
                   help="self: the target's held-out frames; face: source expression; head: source expression + "
                        "pose; cycle: head reenactment onto the target, then back onto --back-model, scored "
                        "against the source (round-trip APD and CSIM)")
    p.add_argument("--back-model", default=None,
                   help="cycle mode: a model of the source video's own person (run or package)")
    p.add_argument("--source", default=None, help="driving video (face and head modes)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--side-by-side", dest="side", action="store_true",
                   help="write source | NMFC | result instead of the result alone")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N driving frames")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--work-dir", default=None,
                   help="where the source's tracking and fit are cached (default: beside --out)")


def run(args) -> int:
    from faceflow.errors import FaceflowError
    from reenact.run import reenact

    if args.mode == "cycle":
        from pathlib import Path

        from reenact.cycle import cycle

        work = Path(args.work_dir) if args.work_dir else Path(args.out).parent / f".{Path(args.out).stem}.source"
        s = cycle(args.model_dir, args.back_model, args.source, Path(args.out), side=args.side,
                  max_frames=args.max_frames, device=args.device, work_dir=work)
        print(f"done: {s['frames']} frames, round-trip APD {s['round_trip_apd']:.2f}, CSIM to the source "
              f"{s['round_trip_csim']} -> {s['out']}")
        return 0
    if args.back_model is not None:
        raise FaceflowError("--back-model is for --mode cycle only")
    s = reenact(args.model_dir, args.mode, args.out, args.source, side=args.side, max_frames=args.max_frames,
                device=args.device, work_dir=args.work_dir)
    extra = f", APD {s['apd']:.2f}" if "apd" in s else ""
    print(f"done: {s['frames']} frames at {s['generation_fps']:.1f} fps (generator){extra} -> {s['out']}")
    return 0
