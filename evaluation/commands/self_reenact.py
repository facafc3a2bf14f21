"""Self-reenactment error tables (DeepFaceFlow Table 3): for each target video (or directory
prepared by reenact preprocess) and each flow provider, preprocess (cached), train one
Head2Head++ model per seed with the same budget, self-reenact the held-out last third and score
it: APD, MAPD, mouth APD, PSNR, SSIM, LPIPS (when AlexNet weights are local), AED, ARD, AELD and
the temporal warping error. Writes table.md / table.csv in the layout of Table 3, one table per
metric, heatmaps, sample videos and commands.md into --out; finished cells are not recomputed.
The definitions are in the evaluation.self_reenact module documentation.
"""

from __future__ import annotations

import sys

from evaluation.self_reenact_config import SelfReenactConfig
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DATA_DIR",
                   help="target videos, or directories prepared by python -m reenact preprocess")
    p.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    cfg = SelfReenactConfig
    add_dataclass_arguments(p, cfg, names=cfg.FLAGS[:2])
    add_dataclass_arguments(p.add_mutually_exclusive_group(), cfg, names=cfg.BUDGET,
                            aliases={"iters": ("--iters",), "minutes": ("--minutes",)})
    add_dataclass_arguments(p, cfg, names=cfg.FLAGS[2:], aliases={"seeds": ("--seed",)})
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    """Evaluate, print where the table is; 143 when training was stopped by a signal."""
    from evaluation.self_reenact import Stopped, evaluate

    cfg = dataclass_from_args(SelfReenactConfig, args, names=SelfReenactConfig.BUDGET + SelfReenactConfig.FLAGS,
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
