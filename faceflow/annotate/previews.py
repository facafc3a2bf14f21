"""The previews of an annotation (:mod:`faceflow.annotate.pipeline`, its last stage):
``previews/frame<NNNNNN>.png`` for a few evenly spaced kept frames, each the crop with the fitted
mesh (grid lines on its visible surface) and landmarks | NMFC | eye sketches | PNCC, each panel
titled, and
``previews/flow_example.png``, the 3D flow of the middle pair, colour-coded with its legend and
scale (:mod:`faceflow.render.figures`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from faceflow import io as vio
from faceflow.render.figures import caption, flow_figure, hstack
from faceflow.render.flowcolor import nice_scale, shared_max_magnitude
from faceflow.render.overlay import draw_points, draw_surface_grid

__all__ = ["write_previews"]


def write_previews(out: Path, ann, model, cfit, keep: np.ndarray, count: int) -> list[str]:
    """Write the previews of the annotation in ``out`` (its ``data/*.npy`` complete, read through
    ``ann``, a :class:`faceflow.annotate.store.Annotation` of either form) into ``out/previews``;
    returns their file names.

    model: the morphable model; cfit: the fit with crop-pixel cameras
    (:func:`faceflow.annotate.pipeline.crop_fit`); keep (N,) the kept frames' numbers; count: how
    many frames (none when <= 0).
    """
    size = ann.size
    prev = out / "previews"
    prev.mkdir(exist_ok=True)
    N = len(keep)
    if count <= 0:
        return []
    lmk = ann.small["lmk68"]
    sub = model.subset("meshreg")
    names = []
    for i in np.unique(np.linspace(0, N - 1, min(count, N)).round().astype(int)):
        with torch.no_grad():
            v = cfit.image_vertices(model, np.array([i]), sub.indices)[0].numpy()
        over = draw_points(draw_surface_grid(ann.crop(i), v, sub.triangles.numpy()), lmk[i])
        pn = cv2.resize((np.asarray(ann.pncc(i)[0], np.float32) * 255).clip(0, 255).astype(np.uint8), (size, size))
        name = f"frame{int(keep[i]):06d}.png"
        titles = (f"frame {int(keep[i])}: fitted mesh + landmarks", "NMFC", "eye sketches", "PNCC")
        band = max(14, size // 16)
        panels = (over, ann.nmfc(i)[0], ann.eyes(i)[0], pn)
        vio.write_image(prev / name, hstack([caption(np.asarray(x), t, band) for x, t in zip(panels, titles)], gap=0))
        names.append(name)
    pairs = ann.pairs
    if len(pairs):
        m = len(pairs) // 2
        f, fmask = ann.flow(m)
        scale = nice_scale(shared_max_magnitude([f], [fmask]))
        title = f"3D flow of pair {m} (kept frames {int(pairs[m][0])} -> {int(pairs[m][1])}; crop pixels)"
        vio.write_image(prev / "flow_example.png", flow_figure(f, fmask, "3d", scale, 0.1, title=title))
        names.append("flow_example.png")
    return names
