"""Command-line entry point: ``python -m reenact {preprocess,train,run} ...``.

The Head2Head++ workflow on one target person: ``preprocess`` a few minutes of the target's
video into conditioning (NMFC + eye sketches) and cached flows, ``train`` a person-specific
renderer on its first two thirds, ``run`` it in self, face or head reenactment.
"""

from __future__ import annotations

import argparse
import sys

from faceflow.__main__ import _command
from faceflow.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    from . import preprocess, run, train

    p = argparse.ArgumentParser(prog="python -m reenact", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "preprocess", preprocess, "turn a target video into conditioning, mouth boxes and cached flows")
    _command(sub, "train", train, "train a person-specific renderer (resumable; torchrun for DDP)")
    _command(sub, "run", run, "self / face / head reenactment with a trained model -> mp4")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
