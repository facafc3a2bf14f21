"""3DMeshReg accuracy: ``python -m evaluation.meshreg_benchmark --meshreg W.pt --synthetic DIR --real-root DIR``.

Mean vertex error (3D, and its x, y part) in pixels of the 224 template of the regressed
``meshreg`` mesh (2,713 vertices) against the ground truth (synthetic test split: exact; real
test split: the annotation tool's fits), for frame 1 of evenly spaced test pairs, next to the
**template baseline** (the mean face registered by its 68 landmarks, i.e. what 3DMeshReg outputs
before training): the network is useful where it beats that row. Writes ``meshreg_benchmark.md``
and ``results.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from faceflow.data.splits import evenly_spaced
from faceflow.errors import FaceflowError, run_cli
from faceflow.nets.metrics import vertex_errors


def evaluate(net: torch.nn.Module, dataset, max_pairs: int, batch_size: int = 8) -> dict:
    """Mean vertex errors of ``net`` and of its template on ``max_pairs`` evenly spaced items."""
    idx = evenly_spaced(len(dataset), max_pairs)
    rows = {"meshreg": ([], []), "template": ([], [])}
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            items = [dataset[int(i)] for i in idx[s:s + batch_size]]
            img = torch.stack([it["i1"] for it in items])
            gt = torch.stack([it["mesh1"] for it in items])
            for name, pred in (("meshreg", net(img)), ("template", net.template.expand_as(gt))):
                e3, e2 = vertex_errors(pred, gt)
                rows[name][0].extend(e3.cpu().numpy())
                rows[name][1].extend(e2.cpu().numpy())
    return {k: {"vertex_px": float(np.mean(v[0])), "vertex_px_2d": float(np.mean(v[1])), "pairs": len(v[0])}
            for k, v in rows.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.meshreg_benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--meshreg", required=True, help="3DMeshReg weights file")
    p.add_argument("--synthetic", default=None, help="synthetic test dataset directory")
    p.add_argument("--real-root", default=None, help="directory of annotated clips (the test persons are used)")
    p.add_argument("--max-pairs", type=int, default=200, help="evenly spaced pairs per split (default: 200)")
    p.add_argument("--out", required=True, help="output directory")
    args = p.parse_args(argv)

    def body(args) -> int:
        from faceflow.data.pseudo import AnnotatedPairs, split_dirs
        from faceflow.data.synthetic import SyntheticPairs
        from faceflow.io import save_json
        from faceflow.nets.weights import load_weights

        if not args.synthetic and not args.real_root:
            raise FaceflowError("give --synthetic and/or --real-root")
        net = load_weights(args.meshreg, kind="meshreg")
        res = {}
        if args.synthetic:
            res["synthetic test"] = evaluate(net, SyntheticPairs(args.synthetic), args.max_pairs)
        if args.real_root:
            dirs = split_dirs(args.real_root, "test")
            if not dirs:
                raise FaceflowError(f"no annotated test clips under {args.real_root}")
            res["real test"] = evaluate(net, AnnotatedPairs(dirs), args.max_pairs)
        cols = list(res)
        lines = ["| method | " + " | ".join(f"{c}: 3D / 2D px" for c in cols) + " |",
                 "|---|" + "---|" * len(cols)]
        for m in ("meshreg", "template"):
            name = "3DMeshReg" if m == "meshreg" else "template (mean face)"
            lines.append(f"| {name} | " + " | ".join(
                f"{res[c][m]['vertex_px']:.2f} / {res[c][m]['vertex_px_2d']:.2f}" for c in cols) + " |")
        table = "\n".join(lines)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_json(out / "results.json", {"weights": str(args.meshreg), "results": res})
        from faceflow.io import atomic_path

        with atomic_path(out / "meshreg_benchmark.md") as tmp:
            Path(tmp).write_text(table + "\n")
        print(table)
        return 0

    return run_cli(body, args)


if __name__ == "__main__":
    sys.exit(main())
