"""Rewrite an annotation (``faceflow annotate`` output) in the other storage form: ``--to compact``
keeps the crops as JPEG (or PNG) files and the fits, about 50x smaller; ``--to full`` draws every
array (PNCC, NMFC, eye sketches, masks, the 3D flow of every pair) into memory-mapped ``.npy``
files, for tools that read them directly. Training reads both forms as they are. The result is
written to DST.partial and renamed to DST when complete.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a complete annotation folder (its manifest.json present), either form")
    p.add_argument("dst", help="the new folder (must not exist)")
    p.add_argument("--to", required=True, choices=("compact", "full"), help="the storage form to write")
    p.add_argument("--frames", default="jpeg", choices=("jpeg", "png"), help="compact: how the crops are kept")
    p.add_argument("--quality", type=int, default=95, help="compact: JPEG quality 1-100 (default: 95)")


def run(args) -> int:
    from faceflow.annotate.store import convert_annotation, directory_bytes
    from faceflow.errors import FaceflowError

    if not 1 <= args.quality <= 100:
        raise FaceflowError(f"--quality must be between 1 and 100, got {args.quality}")
    m = convert_annotation(args.src, args.dst, args.to, frames=args.frames, quality=args.quality)
    before, after = directory_bytes(args.src), directory_bytes(args.dst)
    print(f"{m['storage']} annotation of {m['frames_kept']} frames written to {args.dst}: data/ {after / 1e6:.1f} MB "
          f"(was {before / 1e6:.1f} MB)")
    return 0
