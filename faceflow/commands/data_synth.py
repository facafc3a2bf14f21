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
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m faceflow data synth``."""
    p.add_argument("--annotated", required=True, nargs="+", metavar="DIR",
                   help="annotated clips (output of python -m faceflow annotate): a directory holding them or "
                        "clip directories; only complete clips of --split are used")
    p.add_argument("--out", required=True, type=Path, help="output directory (rerun the same command to resume)")
    add_dataclass_arguments(p, SyntheticConfig, names=SyntheticConfig.FLAGS, required=("split",))
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (rendering is many small operations: one thread is usually fastest)")
    p.add_argument("--overwrite", action="store_true", help="replace a set made with another configuration")


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise FaceflowError(f"--threads must be >= 1, got {args.threads}")
    import torch

    from faceflow.data.synthetic import generate

    torch.set_num_threads(args.threads)
    cfg = dataclass_from_args(SyntheticConfig, args, names=SyntheticConfig.FLAGS)
    m = generate(args.out, cfg, args.annotated, overwrite=args.overwrite)
    rate = m["pairs_per_second"]
    print(f"done: {m['num_pairs']} synthetic {m['split']} pairs from {len(m['sources'])} clip(s) "
          f"({', '.join(s['stem'] for s in m['sources'])})" + (f", {rate:.2f} pairs/s" if rate else "")
          + f" -> {args.out}/manifest.json")
    return 0
