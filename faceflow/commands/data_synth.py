"""Render synthetic face pairs with exact 3D flow (and the head-only flow) for training and
evaluating DFFNet: identities from the morphable model's prior, textures, expressions and
backgrounds from annotated real clips of one identity split (faceflow annotate outputs), two
poses per pair. Pair k depends only on (seed, k); rerun the same command to resume, or with a
larger --pairs to extend a set. manifest.json is written last.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from faceflow.data.synth_sampling import SyntheticConfig
from faceflow.errors import FaceflowError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m faceflow data synth``."""
    d = SyntheticConfig()
    p.add_argument("--annotated", required=True, nargs="+", metavar="DIR",
                   help="annotated clips (output of python -m faceflow annotate): a directory holding them or "
                        "clip directories; only complete clips of --split are used")
    p.add_argument("--split", required=True, choices=["train", "val", "test"],
                   help="identity split whose clips give textures, expressions and backgrounds")
    p.add_argument("--out", required=True, type=Path, help="output directory (rerun the same command to resume)")
    p.add_argument("--pairs", type=int, default=d.num_pairs, help="number of pairs (a larger number extends a set)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed; pair k depends only on (seed, k)")
    p.add_argument("--textures", type=int, default=d.textures, help="size of the texture bank (real frames)")
    p.add_argument("--pairs-per-identity", type=int, default=d.pairs_per_identity,
                   help="consecutive pairs sharing a synthetic identity and texture")
    p.add_argument("--previews", type=int, default=d.previews, help="number of preview PNGs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (rendering is many small operations: one thread is usually fastest)")
    p.add_argument("--overwrite", action="store_true", help="replace a set made with another configuration")


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise FaceflowError(f"--threads must be >= 1, got {args.threads}")
    import torch

    from faceflow.data.synthetic import generate

    torch.set_num_threads(args.threads)
    cfg = SyntheticConfig(split=args.split, num_pairs=args.pairs, seed=args.seed, textures=args.textures,
                          pairs_per_identity=args.pairs_per_identity, previews=args.previews)
    m = generate(args.out, cfg, args.annotated, overwrite=args.overwrite)
    rate = m["pairs_per_second"]
    print(f"done: {m['num_pairs']} synthetic {m['split']} pairs from {len(m['sources'])} clip(s) "
          f"({', '.join(s['stem'] for s in m['sources'])})" + (f", {rate:.2f} pairs/s" if rate else "")
          + f" -> {args.out}/manifest.json")
    return 0
