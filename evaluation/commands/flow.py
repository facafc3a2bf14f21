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
from dataclasses import fields
from pathlib import Path

from evaluation.flow_config import BenchmarkConfig
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args


def add_arguments(p) -> None:
    names = [f.name for f in fields(BenchmarkConfig) if f.name != "out"] + ["out"]
    add_dataclass_arguments(p, BenchmarkConfig, names=names, required=("out",))


def run(args) -> int:
    from evaluation.flow_benchmark import run_benchmark, write_outputs

    cfg = dataclass_from_args(BenchmarkConfig, args)
    results = run_benchmark(cfg)
    text = write_outputs(results, cfg.out)
    print(text)
    print(f"-> {Path(cfg.out) / 'flow_benchmark.md'}, {Path(cfg.out) / 'results.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.flow_benchmark`` (also ``faceflow evaluate flow``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("evaluation.flow_benchmark", argv))
