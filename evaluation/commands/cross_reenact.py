"""Cross-reenactment tables: trained target models (runs or packages) driven by other people's
videos in head and face mode, scored on identity (CSIM against the target's training crops and
against the driver) and motion transfer (AED, ARD, gaze between the re-fitted result and the
driving fit). Writes table.md / table.csv, side-by-side samples and commands.md into --out;
finished cells are not recomputed. The definitions are in the evaluation.cross_reenact module
documentation.
"""

from __future__ import annotations

import sys

from evaluation.cross_reenact_config import CrossReenactConfig
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args


def add_arguments(p) -> None:
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL",
                   help="trained models: run directories (python -m reenact train), packages (python -m reenact "
                        "pack) or demo")
    p.add_argument("--drivers", nargs="+", required=True, metavar="VIDEO", help="driving videos (other people)")
    p.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    add_dataclass_arguments(p, CrossReenactConfig, names=CrossReenactConfig.FLAGS)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> int:
    from evaluation.cross_reenact import evaluate

    cfg = dataclass_from_args(CrossReenactConfig, args, names=CrossReenactConfig.FLAGS, progress=not args.quiet)
    evaluate(args.models, args.drivers, args.out, cfg, command=getattr(args, "command_line", None))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.cross_reenact`` (also ``faceflow evaluate cross-reenact``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("evaluation.cross_reenact", argv))
