"""3DMeshReg accuracy: the mean vertex error (3D, and its x, y part) in pixels of the 224
template of the regressed mesh against the ground truth (synthetic test split: exact; real test
split: the annotation tool's fits), next to the template baseline (the mean face registered by
its 68 landmarks: the network is useful where it beats that row). Writes meshreg_benchmark.md and
results.json into --out.
"""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--meshreg", required=True, help="3DMeshReg weights file")
    p.add_argument("--synthetic", default=None, help="synthetic test dataset directory")
    p.add_argument("--real-root", default=None, help="directory of annotated clips (the test persons are used)")
    p.add_argument("--max-pairs", type=int, default=200, help="evenly spaced pairs per split")
    p.add_argument("--out", required=True, help="output directory")


def run(args) -> int:
    from evaluation.meshreg_benchmark import run_benchmark

    print(run_benchmark(args.meshreg, args.out, args.synthetic, args.real_root, args.max_pairs))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.meshreg_benchmark`` (also ``faceflow evaluate meshreg``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("evaluation.meshreg_benchmark", argv))
