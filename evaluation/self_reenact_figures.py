"""The self-reenactment figures (:mod:`evaluation.self_reenact`): ``heatmaps/<video>.png``, the
per-pixel APD averaged over the held-out frames, one colour-mapped panel per method on a shared
scale beside a real frame (as the thesis' Fig. 7.5), and ``samples/<video>.mp4``, the real frames
beside each method's, both rebuilt from the finished cells.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from faceflow import io as vio
from faceflow.render.figures import caption, hstack
from faceflow.runtime.provenance import resolve_recorded
from reenact.run import side_by_side

__all__ = ["heatmap_image", "write_figures"]


def _colormap(x: np.ndarray, vmax: float) -> np.ndarray:
    """(..., 3) uint8 RGB: ``x`` (...) through OpenCV's JET colour map on 0 .. ``vmax``."""
    v = np.clip(np.asarray(x, np.float64) / max(vmax, 1e-9), 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((v * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` (H, W, 3) uint8 with a black caption band of max(14, H / 10) pixels on top."""
    return caption(img, text, band=max(14, img.shape[0] // 10))


def heatmap_image(maps: dict, vmax: float | None = None, real: np.ndarray | None = None,
                  display: int = 192) -> np.ndarray:
    """Side-by-side colour-mapped error maps (JET, 0 .. ``vmax``; default: the 99th percentile
    over all maps) with captions, after an optional real frame, and a colour bar below.
    maps {name: (H, W) float}; returns (H', W', 3) uint8."""
    if not maps:
        raise ValueError("heatmap_image needs at least one map")
    if vmax is None:
        vmax = float(np.percentile(np.concatenate([np.ravel(m) for m in maps.values()]), 99))
    vmax = max(float(vmax), 1e-6)
    size = max(display, next(iter(maps.values())).shape[0])

    def fit(img):
        return cv2.resize(img, (size, size), interpolation=cv2.INTER_NEAREST)

    panels = [] if real is None else [_caption(fit(np.asarray(real, np.uint8)), "real")]
    for name, m in maps.items():
        mean = float(np.mean(m))
        panels.append(_caption(fit(_colormap(m, vmax)), f"{name}: mean {mean:.1f}"))
    row = hstack(panels, gap=2)
    bar = _colormap(np.tile(np.linspace(0, vmax, row.shape[1])[None], (max(8, size // 16), 1)), vmax)
    return np.concatenate([row, _caption(bar, f"per-pixel APD (RGB L2, 0-255), colour scale 0 .. {vmax:.1f}")], 0)


def write_figures(out: Path, records: dict, videos: list[str], methods: list[str], sample_frames: int, say) -> None:
    """``OUT/heatmaps/<video>.png`` from each cell's ``error_map.npy`` and ``OUT/samples/<video>.mp4``
    (real | each method, at most ``sample_frames`` frames) from its ``generated.mp4``, for every
    video with a finished cell in ``records[(video, method)]`` (one seed's: its ``seed`` names the
    cell folder) whose prepared data is still there."""
    for v in videos:
        ms = [m for m in methods if (v, m) in records]
        if not ms:
            continue
        cells = {m: out / "cells" / v / m / f"seed{records[(v, m)].get('seed', 0)}" for m in ms}
        r0 = records[(v, ms[0])]
        data = resolve_recorded(r0["data_dir"], cells[ms[0]])  # relative to its metrics.json
        if not (data / "manifest.json").is_file():
            say(f"note: no heatmap or sample for {v}: its prepared data {data} is gone")
            continue
        lo, hi = r0["test_range"]
        crops = np.load(data / "annotation" / "data" / "crops.npy", mmap_mode="r")
        maps = {m: np.load(cells[m] / "error_map.npy") for m in ms}
        mid = (lo + hi) // 2
        vio.write_image(out / "heatmaps" / f"{v}.png", heatmap_image(maps, real=np.asarray(crops[mid])))
        fps = float(json.loads((data / "manifest.json").read_text())["fps"])
        _write_sample(out / "samples" / f"{v}.mp4", crops[lo:hi][:sample_frames],
                      {m: cells[m] / "generated.mp4" for m in ms}, fps)
    say(f"heatmaps in {out / 'heatmaps'}, side-by-side samples in {out / 'samples'}")


def _write_sample(path: Path, crops: np.ndarray, generated: dict, fps: float) -> None:
    """``path``: the real frames ``crops`` (T, S, S, 3) beside each method's (``generated``
    {method: mp4}), captioned, as long as the shortest of them."""
    n = len(crops)
    real = np.asarray(crops)
    gens = {m: vio.read_video(p, max_frames=n)[0] for m, p in generated.items()}
    n = min([n] + [len(g) for g in gens.values()])
    S = real.shape[1]
    frames = (side_by_side([_caption(real[t], "real")] + [_caption(gens[m][t], m) for m in gens],
                           S + max(14, S // 10)) for t in range(n))
    vio.write_video(path, frames, fps=fps, crf=18)
