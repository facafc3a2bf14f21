"""3DMeshReg accuracy: ``python -m evaluation.meshreg_benchmark --meshreg W.pt --synthetic DIR --real-root DIR``.

Mean vertex error (3D, and its x, y part) in pixels of the 224 template of the regressed
``meshreg`` mesh (2,713 vertices) against the ground truth (synthetic test split: exact; real
test split: the annotation tool's fits), for frame 1 of evenly spaced test pairs, next to the
**template baseline** (the mean face registered by its 68 landmarks, i.e. what 3DMeshReg outputs
before training): the network is useful where it beats that row. On the synthetic split the
errors are also reported per bin of the frame's |yaw| (0-15, 15-30, 30-45, 45-60 degrees and
beyond; the set's ``pose1.npy``): turned heads are where a regressor trained mostly on near-frontal
faces falls back to the mean pose. Writes ``meshreg_benchmark.md`` and ``results.json`` in ``--out``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from faceflow.data.pseudo import AnnotatedPairs, split_dirs
from faceflow.data.splits import evenly_spaced
from faceflow.data.synthetic import SyntheticPairs
from faceflow.engine.weights import MESHREG_KINDS, load_weights
from faceflow.errors import FaceflowError
from faceflow.io import atomic_path, save_json
from faceflow.nets.metrics import vertex_errors
from faceflow.runtime.provenance import portable_json, provenance

YAW_BINS = ((0, 15), (15, 30), (30, 45), (45, 60), (60, 180))  # |yaw| degrees, [low, high)


def yaw_bin(yaw_deg: float) -> str:
    """The label of the |yaw| bin of ``yaw_deg``: '0-15', '15-30', '30-45', '45-60' or '60+'."""
    a = abs(float(yaw_deg))
    for lo, hi in YAW_BINS:
        if lo <= a < hi:
            return f"{lo}+" if hi == 180 else f"{lo}-{hi}"
    return "60+"


def synthetic_yaw(root: str | Path) -> np.ndarray:
    """(N,) frame-1 yaw in degrees of the pairs of a synthetic set (its ``data/pose1.npy``: pitch, yaw, roll)."""
    return np.load(Path(root) / "data" / "pose1.npy", mmap_mode="r")[:, 1].astype(np.float64)


def evaluate(net: torch.nn.Module, dataset, max_pairs: int, batch_size: int = 8, yaw=None) -> dict:
    """Mean vertex errors of ``net`` and of its template on ``max_pairs`` evenly spaced items;
    with ``yaw`` ((len(dataset),) degrees) also ``"by_yaw"``: the same per |yaw| bin."""
    idx = evenly_spaced(len(dataset), max_pairs)
    rows = {"meshreg": ([], []), "template": ([], [])}
    missed = 0
    with torch.no_grad():
        for s in range(0, len(idx), batch_size):
            items = [dataset[int(i)] for i in idx[s:s + batch_size]]
            img = torch.stack([it["i1"] for it in items])
            gt = torch.stack([it["mesh1"] for it in items])
            mesh = net(img)
            missed += int(getattr(net, "missed", 0))  # a landmark 3DMeshReg: images without a face
            for name, pred in (("meshreg", mesh), ("template", net.template.expand_as(gt))):
                e3, e2 = vertex_errors(pred, gt)
                rows[name][0].extend(e3.cpu().numpy())
                rows[name][1].extend(e2.cpu().numpy())
    res = _rows(rows, np.ones(len(idx), bool))
    res["meshreg"]["no_face"] = missed
    if yaw is not None:
        labels = np.array([yaw_bin(yaw[int(i)]) for i in idx])
        res["by_yaw"] = {b: _rows(rows, labels == b) for b in dict.fromkeys(sorted(labels, key=_bin_start))}
    return res


def _bin_start(label: str) -> int:
    return int(label.rstrip("+").split("-")[0])


def _rows(rows: dict, keep: np.ndarray) -> dict:
    """Mean 3D / 2D vertex errors of each row over the kept evaluated items."""
    return {k: {"vertex_px": float(np.mean(np.asarray(e3)[keep])), "vertex_px_2d": float(np.mean(np.asarray(e2)[keep])),
                "pairs": int(keep.sum())} for k, (e3, e2) in rows.items()}


def results_record(weights: str | Path, res: dict, out: str | Path) -> dict:
    """``results.json``: the weights file by name (with its sha256 in the provenance) and the
    results; no absolute paths of this machine."""

    return portable_json({"weights": Path(weights).name, "results": res,
                          "provenance": provenance(weights={"meshreg": weights}, device="cpu", base=out)}, out)


def run_benchmark(meshreg: str, out: str, synthetic: str | None = None, real_root: str | None = None,
                  max_pairs: int = 200) -> str:
    """Score the weights file ``meshreg`` on the synthetic and / or real test split, write
    ``results.json`` and ``meshreg_benchmark.md`` into ``out``; returns the Markdown table."""

    if not synthetic and not real_root:
        raise FaceflowError("give --synthetic and/or --real-root")
    net = load_weights(meshreg, kind=MESHREG_KINDS)
    kind = net.weights_kind
    res = {}
    if synthetic:
        res["synthetic test"] = evaluate(net, SyntheticPairs(synthetic), max_pairs, yaw=synthetic_yaw(synthetic))
    if real_root:
        dirs = split_dirs(real_root, "test")
        if not dirs:
            raise FaceflowError(f"no annotated test clips under {real_root}")
        res["real test"] = evaluate(net, AnnotatedPairs(dirs), max_pairs)
    cols = list(res)
    lines = ["| method | " + " | ".join(f"{c}: 3D / 2D px" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for m in ("meshreg", "template"):
        name = f"3DMeshReg ({kind})" if m == "meshreg" else "template (mean face)"
        lines.append(f"| {name} | " + " | ".join(
            f"{res[c][m]['vertex_px']:.2f} / {res[c][m]['vertex_px_2d']:.2f}" for c in cols) + " |")
    if kind == "meshreg_landmarks":
        lines += ["", "Images where mediapipe found no face (3DMeshReg gives the template): " + ", ".join(
            f"{c} {res[c]['meshreg']['no_face']}" for c in cols)]
    if "synthetic test" in res:
        lines += ["", "Synthetic test by frame |yaw| (3D / 2D px, pairs):", "",
                  "| method | " + " | ".join(f"{b} deg" for b in res["synthetic test"]["by_yaw"]) + " |",
                  "|---|" + "---|" * len(res["synthetic test"]["by_yaw"])]
        for m in ("meshreg", "template"):
            name = f"3DMeshReg ({kind})" if m == "meshreg" else "template (mean face)"
            lines.append(f"| {name} | " + " | ".join(
                f"{r[m]['vertex_px']:.2f} / {r[m]['vertex_px_2d']:.2f} ({r[m]['pairs']})"
                for r in res["synthetic test"]["by_yaw"].values()) + " |")
    table = "\n".join(lines)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "results.json", results_record(meshreg, res, out))
    with atomic_path(out / "meshreg_benchmark.md") as tmp:
        Path(tmp).write_text(table + "\n")
    return table


if __name__ == "__main__":  # python -m evaluation.meshreg_benchmark: the command of evaluation/commands/meshreg.py
    from evaluation.commands.meshreg import main

    sys.exit(main())
