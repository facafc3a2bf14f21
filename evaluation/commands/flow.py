"""The 3D facial-flow benchmark: DeepFaceFlow Table 1 (3D AEPE) and Table 2 (2D AEPE) on the
synthetic test split (--synthetic DIR) and the real pseudo-ground-truth test persons
(--real-root DIR of annotated clips), for DFFNet with the given weights (PNCC from 3DMeshReg, or
the ground-truth PNCC as an oracle; full, depth-only or no PNCC), the 3DMM fit difference, DIS
and Farneback optical flow (2D only) and zero flow. AEPE in pixels of the 224 registered frame,
on each pair's ground-truth mask; pixel-pooled, with the mean of per-pair means in parentheses.
Writes flow_benchmark.md and results.json into --out; resumable per pair. The definitions are in
the evaluation.flow_benchmark module documentation.
"""

from __future__ import annotations

import sys
from pathlib import Path

from evaluation.methods import METHODS


def add_arguments(p) -> None:
    p.add_argument("--synthetic", metavar="DIR", default=None,
                   help="synthetic test dataset directory (with manifest.json)")
    p.add_argument("--real-root", metavar="DIR", default=None,
                   help="directory of annotated clips (`python -m faceflow annotate` outputs); the test persons' "
                        "clips are used")
    p.add_argument("--meshreg", metavar="W.pt", default=None, help="3DMeshReg weights (PNCC input of DFFNet)")
    p.add_argument("--dffnet", metavar="W.pt", default=None, help="DFFNet weights, full PNCC (use_pncc='full')")
    p.add_argument("--dffnet-depth", metavar="W.pt", default=None, help="DFFNet weights, depth-only PNCC")
    p.add_argument("--dffnet-nopncc", metavar="W.pt", default=None, help="DFFNet weights without PNCC")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), metavar="NAME",
                   help="methods to run (default: all; those without weights are skipped): " + ", ".join(METHODS))
    p.add_argument("--max-pairs", type=int, default=None, metavar="N",
                   help="evaluate at most N evenly spaced pairs of each split (default: all)")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per batch")
    p.add_argument("--device", default="cpu", help="torch device of the networks, e.g. cpu or cuda:0")
    p.add_argument("--no-fit-dense", dest="fit_dense", action="store_false",
                   help="fit_difference: fit the 68 landmarks only (by default also mediapipe's dense points)")
    p.add_argument("--overwrite", action="store_true", help="discard the per-pair records of an earlier run in --out")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory (flow_benchmark.md, results.json)")


def run(args) -> int:
    from evaluation.flow_benchmark import BenchmarkConfig, run_benchmark, write_outputs

    cfg = BenchmarkConfig(out=args.out, synthetic=args.synthetic, real_root=args.real_root, meshreg=args.meshreg,
                          dffnet=args.dffnet, dffnet_depth=args.dffnet_depth, dffnet_nopncc=args.dffnet_nopncc,
                          methods=tuple(dict.fromkeys(args.methods)), max_pairs=args.max_pairs,
                          batch_size=args.batch_size, device=args.device, fit_dense=args.fit_dense,
                          overwrite=args.overwrite)
    results = run_benchmark(cfg)
    text = write_outputs(results, cfg.out)
    print(text)
    print(f"-> {Path(cfg.out) / 'flow_benchmark.md'}, {Path(cfg.out) / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.flow_benchmark`` (also ``faceflow evaluate flow``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("evaluation.flow_benchmark", argv))
