"""3DMeshReg on the most turned frames of annotated clips (issue 14's visual check of turned heads).

    python scripts/turned_overlays.py ANNOTATED_CLIP_DIR... --meshreg A.pt [B.pt ...] --out grid.png [--count 6]

Picks the ``count`` frames with the largest |yaw| of the annotation's fit over all clips (at most
two per clip), runs every given 3DMeshReg on the registered frame and writes one row per frame:
the fit's mesh (the annotation tool's answer, green) and each network's mesh (red), every 6th
vertex as a dot, titled with the clip, the yaw and the mean 2D distance to the fit's mesh (template
pixels). Prints the same numbers.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from faceflow.data.pseudo import AnnotatedPairs
from faceflow.engine.weights import load_weights
from faceflow.geometry.camera import rotation_to_euler
from faceflow.render.overlay import draw_points

SCALE = 2  # panels drawn at 448 px so the titles read


def most_turned(ds: AnnotatedPairs, count: int) -> list[tuple[int, int, float]]:
    """(clip, pair row, yaw degrees) of the most turned first frames, at most two per clip."""
    by_clip: dict[int, list[tuple[int, int, float]]] = {}
    for r in range(len(ds)):
        ci, _, a, _ = ds.locate(r)
        yaw = float(np.degrees(rotation_to_euler(ds.clips[ci].R[a])[1]))
        by_clip.setdefault(ci, []).append((ci, r, yaw))
    picks = [p for rows in by_clip.values() for p in sorted(rows, key=lambda p: -abs(p[2]))[:2]]
    return sorted(picks, key=lambda p: -abs(p[2]))[:count]


def panel(image: np.ndarray, mesh: np.ndarray, colour, title: str) -> np.ndarray:
    big = cv2.resize(image, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_LINEAR)
    out = draw_points(big, mesh[::6, :2] * SCALE, radius=1.2, colour=colour)
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--meshreg", nargs="+", required=True, help="3DMeshReg weights files, one column each")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--count", type=int, default=6, help="number of frames (rows)")
    a = ap.parse_args(argv)
    ds = AnnotatedPairs(a.clips, pair_kinds=("consecutive",))
    nets = [(Path(w).name, load_weights(w)) for w in a.meshreg]
    rows = []
    for ci, r, yaw in most_turned(ds, a.count):
        item = ds[r]
        img = (item["i1"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        fit = item["mesh1"].numpy()
        name = ds.clips[ci].stem[:22]
        cells = [panel(img, fit, (60, 255, 60), f"{name} yaw {yaw:+.0f}: fit")]
        for wname, net in nets:
            with torch.no_grad():
                mesh = net(item["i1"][None])[0].numpy()
            err = float(np.linalg.norm(mesh[:, :2] - fit[:, :2], axis=-1).mean())
            print(f"{name}\tyaw {yaw:+.1f}\t{wname}\t2D {err:.2f} px")
            cells.append(panel(img, mesh, (255, 60, 60), f"{wname}: {err:.1f} px from fit"))
        rows.append(np.concatenate(cells, 1))
    cv2.imwrite(str(a.out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
