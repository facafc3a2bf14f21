"""Pack a trained reenactment model for shipping: ``python -m reenact pack RUN_DIR OUT_DIR``.

The package (:mod:`reenact.package`) holds the generator in float16 and the few target arrays
that head and face reenactment read (identity, cameras, eye landmarks and pupils), about 1 MB,
plus a model card. Unless ``--no-score``, the run first self-reenacts its held-out frames and
the card records that APD. ``python -m reenact run OUT_DIR --mode head --source VIDEO --out
OUT.mp4`` then drives it without the training data.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a training run (python -m reenact train DATA_DIR RUN_DIR)")
    p.add_argument("out_dir", help="the package folder (replaced when it exists)")
    p.add_argument("--float32", action="store_true", help="keep the weights in float32 (default: float16)")
    p.add_argument("--no-score", dest="score", action="store_false",
                   help="skip the held-out self-reenactment APD on the model card")
    p.add_argument("--card", default=None, help="a Markdown file appended to the model card")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (for the held-out score)")


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from reenact.package import pack_model
    from reenact.run import reenact

    card = Path(args.card).read_text() if args.card else ""
    if args.score:
        with tempfile.TemporaryDirectory() as tmp:
            s = reenact(args.run_dir, "self", Path(tmp) / "self.mp4", device=args.device, say=lambda m: None)
        card = (f"- **Held-out self-reenactment**: APD {s['apd']:.2f} (RGB L2 on 0-255) over the {s['frames']} "
                f"held-out frames (`python -m reenact run RUN_DIR --mode self`).\n") + card
    r = pack_model(args.run_dir, args.out_dir, half=not args.float32, card=card)
    print(f"done: {r['bytes'] / 1e6:.2f} MB, step {r['step']} -> {args.out_dir}")
    return 0
