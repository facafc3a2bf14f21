"""Self-reenactment error tables (DeepFaceFlow Table 3): for each target video (or directory
prepared by reenact preprocess) and each flow provider, preprocess (cached), train one
Head2Head++ model with the same budget and seed, self-reenact the held-out last third and score
it: APD, MAPD, mouth APD, PSNR, SSIM, LPIPS (when AlexNet weights are local), AED, ARD, AELD and
the temporal warping error. Writes table.md / table.csv in the layout of Table 3, one table per
metric, heatmaps, sample videos and commands.md into --out; finished cells are not recomputed.
The definitions are in the evaluation.self_reenact module documentation.
"""

from __future__ import annotations

import sys

from faceflow.runtime.assets import ALEXNET_FILENAME
from reenact.presets import PRESETS


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DATA_DIR",
                   help="target videos, or directories prepared by python -m reenact preprocess")
    p.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    p.add_argument("--flows", nargs="+", default=["dis2d", "faceflow3d"], choices=["faceflow3d", "dis2d", "none"],
                   help="flow providers to compare (one table row each)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="training preset (reenact.presets)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--iters", type=int, default=None, help="training steps per model (default: the preset's)")
    g.add_argument("--minutes", type=float, default=None, help="training minutes per model instead of steps")
    p.add_argument("--seed", type=int, default=0, help="training seed (the same for every model)")
    p.add_argument("--size", type=int, default=256, help="crop size for videos (prepared directories keep theirs)")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each video")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="device for the flows, training and scoring")
    p.add_argument("--lpips-weights", default=None,
                   help=f"AlexNet ImageNet weights for LPIPS (default: $FACEFLOW_ALEXNET or the torch cache's "
                        f"{ALEXNET_FILENAME}; without them LPIPS is n/a)")
    p.add_argument("--sample-frames", type=int, default=300, help="frames in each side-by-side sample video")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    """Evaluate, print where the table is; 143 when training was stopped by a signal."""
    from evaluation.self_reenact import SelfReenactConfig, Stopped, evaluate

    cfg = SelfReenactConfig(preset=args.preset, iters=args.iters, minutes=args.minutes, seed=args.seed,
                            size=args.size, max_frames=args.max_frames, flows=tuple(dict.fromkeys(args.flows)),
                            device=args.device, lpips_weights=args.lpips_weights, sample_frames=args.sample_frames,
                            progress=not args.quiet)
    try:
        evaluate(args.inputs, args.out, cfg, command=getattr(args, "command_line", None))
    except Stopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        return 143
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.self_reenact`` (also ``faceflow evaluate self-reenact``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("evaluation.self_reenact", argv))
