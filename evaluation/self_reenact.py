"""Self-reenactment error tables: Head2Head++ trained with each flow provider, scored on held-out
frames (DeepFaceFlow Table 3: "Head2Head++ with 2D optical flow vs with 3D facial flow").

``python -m evaluation.self_reenact VIDEO_OR_DATA_DIR [...] --out OUT [--flows dis2d faceflow3d]
[--preset tiny] [--iters N | --minutes M] [--seed 0] [--size 256] [--max-frames N] [--device auto]``

For every input (a video, or a directory prepared by ``python -m reenact preprocess``) and every
flow provider (:mod:`reenact.flows`) this

1. preprocesses the video once into ``OUT/data/<video>`` (all providers' flows side by side,
   plus ``dis2d`` as the temporal metric's reference flow; cached, resumable);
2. trains a person-specific model under ``OUT/models/<video>/<flow>`` with the same preset,
   seed and budget (``--iters`` steps, or ``--minutes`` of training time in total, resumed
   runs included) for every provider;
3. self-reenacts the held-out last third of the kept frames (the split of
   :func:`reenact.preprocess.split_frames`) frame by frame exactly as ``python -m reenact run
   --mode self`` does (:class:`vid2vid.collector.StreamGenerator`, zero history at the first
   test frame);
4. scores it into ``OUT/cells/<video>/<flow>/metrics.json`` (written last, atomically: a cell
   with it is finished and never recomputed; delete it to redo the cell).

Metrics (Y~_t generated, Y_t real, both RGB on 0-255, t over the T held-out frames, p over pixels):

- **APD** (average pixel distance): mean over t and p of ``||Y~_t(p) - Y_t(p)||_2`` (lower is better).
- **MAPD**: the same pooled over the pixels of the NMFC face mask (``face_mask.npy``) of every
  frame, ``sum_t,p m ||.||_2 / sum_t,p m``. **Mouth APD**: the same pooled over the pixels of
  the mouth boxes (``mouth.npy``, the mouth discriminator's crops).
- **PSNR** and **SSIM**: :func:`skimage.metrics.peak_signal_noise_ratio` /
  :func:`~skimage.metrics.structural_similarity` per frame (``data_range=255``, SSIM with
  ``channel_axis=-1`` and its default 7x7 window), mean over frames (higher is better).
- **LPIPS** (AlexNet, v0.1; the ``lpips`` package): mean over frames. Only when torchvision's
  AlexNet ImageNet weights are on this machine (``$FACEFLOW_ALEXNET`` or
  ``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, ``TORCH_HOME`` defaulting to
  ``~/.cache/torch``); nothing is ever downloaded: without the file the column reads "n/a"
  and the reason is written under the table.
- **AED / ARD / AELD** from re-fits: the generated frames and the real held-out crops are
  written to near-lossless mp4s (crf 10; frames under 256 px upscaled bicubically to 256, the
  same for both) and tracked and fitted the same way (:func:`reenact.drive.analyse_source`);
  on the frames where both fits exist, AED = mean over frames of the L1 distance of the 53
  expression coefficients ``sum_k |e~_k - e_k|``; ARD = mean geodesic angle between the head
  rotations, ``arccos((tr(R~ R^T) - 1) / 2)`` in degrees; AELD = mean over frames and the 12
  eye landmarks (68-point indices 36-47) of their Euclidean distance, in pixels of the target's
  crop. "n/a" (with the reason) when a fit finds no face.
- **Temporal** (warping error, temporal stability): ``mean_t [sum_p c_t(p) |Y~_t(p) -
  W(Y~_{t-1}, F_t)(p)|_1 / (3 sum_p c_t(p))]`` over consecutive held-out pairs with a trusted
  pixel, where F_t = F_{t->t-1} is the flow between the REAL frames t and t-1 and c_t its
  photometric confidence (:mod:`reenact.flows`), W backward warping (:func:`vid2vid.warp.warp`),
  |.|_1 / 3 the mean absolute difference over the RGB channels. One reference flow serves every
  method of a video (``dis2d`` when cached, else ``faceflow3d``; said under the table), so the
  rows are comparable; the real frames' own warping error is given as a reference row.

Outputs in OUT: ``table.md`` and ``table.csv`` (APD: rows the methods = flow providers, columns
the videos and their mean, as the paper's Table 3; table.md also holds every metric's mean over
videos and the notes); ``tables/<metric>.md`` / ``.csv`` (each metric in the Table 3 layout);
``heatmaps/<video>.png`` (the per-pixel APD averaged over the held-out frames, one colour-mapped
panel per method on a shared scale beside a real frame, as the thesis' Fig. 7.5);
``samples/<video>.mp4`` (real | each method); ``commands.md`` (each invocation's command and the
versions, git commit and device). Tables, heatmaps and samples are rebuilt from the finished
cells on every run (also those of earlier runs into the same OUT).
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import platform
import re
import shlex
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from faceflow import io as vio
from faceflow.engine.trainer import TrainConfig, checkpoint_path, load_checkpoint, train
from faceflow.errors import FaceflowError
from faceflow.face.registration import CropBox
from faceflow.io.safeload import load_tensors
from faceflow.nets.modules import resolve_device
from faceflow.runtime.assets import ALEXNET_FILENAME, find_torch_weights, torch_cache_candidates
from faceflow.runtime.provenance import portable_json, portable_path, provenance, resolve_recorded
from faceflow.runtime.provenance import portable_path as _portable_path
from reenact.data import to_signed
from reenact.drive import analyse_source, drive_self
from reenact.flows import flow_channels
from reenact.preprocess import PreprocessConfig, preprocess
from reenact.run import generate_frames, load_model, side_by_side
from reenact.task import PRESETS, ReenactTask
from vid2vid.warp import warp

__all__ = [
    "METRICS", "FLOW_LABELS", "EYE_POINTS", "ALEXNET_FILENAME",
    "pixel_distance", "apd", "mouth_apd", "psnr", "ssim", "error_map", "rotation_difference",
    "expression_distance", "eye_landmark_distance", "warping_error", "find_alexnet_weights", "LPIPSMetric",
    "compare_fits", "reference_flow", "score_frames", "metric_table", "format_table_md", "format_table_csv",
    "write_tables",
    "heatmap_image", "SelfReenactConfig", "generate_self", "evaluate", "Stopped",
]

FORMAT = "self-reenact/1"
ANALYSIS_MIN_SIZE = 256  # frames are upscaled to at least this before the re-fit (real and generated alike)
EYE_POINTS = slice(36, 48)  # the 68-point eye landmarks (both eyes)

# key -> (label, better, decimals)
METRICS = {
    "apd": ("APD", "lower", 2),
    "mapd": ("MAPD", "lower", 2),
    "mouth_apd": ("Mouth APD", "lower", 2),
    "psnr": ("PSNR", "higher", 2),
    "ssim": ("SSIM", "higher", 4),
    "lpips": ("LPIPS", "lower", 4),
    "aed": ("AED", "lower", 3),
    "ard": ("ARD (deg)", "lower", 2),
    "aeld": ("AELD (px)", "lower", 2),
    "temporal": ("Temporal warp error", "lower", 2),
}
FLOW_LABELS = {"faceflow3d": "3D facial flow, DeepFaceFlow", "dis2d": "2D optical flow, OpenCV DIS", "none": "no flow"}
REAL_ROW = "real frames (reference)"


def _say(msg: str) -> None:
    print(msg, flush=True)


# ============================================================================ image metrics

def _pair(fake, real) -> tuple[np.ndarray, np.ndarray]:
    fake, real = np.asarray(fake), np.asarray(real)
    if fake.shape != real.shape or fake.ndim != 4 or fake.shape[-1] != 3:
        raise ValueError(f"fake and real must both be (T, H, W, 3), got {fake.shape} and {real.shape}")
    return fake, real


def pixel_distance(fake, real) -> np.ndarray:
    """(T, H, W) float64 ``||fake - real||_2`` over RGB; fake, real (T, H, W, 3) on 0-255."""
    fake, real = _pair(fake, real)
    return np.linalg.norm(fake.astype(np.float64) - real.astype(np.float64), axis=-1)


def apd(fake, real, mask=None) -> float:
    """APD: mean over frames and pixels of the RGB L2 distance (0-255). ``mask`` (T, H, W) bool
    pools over its pixels only (MAPD); NaN when the mask is empty."""
    d = pixel_distance(fake, real)
    if mask is None:
        return float(d.mean())
    m = np.asarray(mask, bool)
    if m.shape != d.shape:
        raise ValueError(f"mask must be (T, H, W) = {d.shape}, got {m.shape}")
    return float(d[m].mean()) if m.any() else float("nan")


def mouth_apd(fake, real, boxes) -> float:
    """APD pooled over the pixels of per-frame boxes (T, 4) = x0, y0, x1, y1 (half-open, crop
    pixels; clipped to the image)."""
    fake, real = _pair(fake, real)
    boxes = np.asarray(boxes)
    T, H, W = fake.shape[:3]
    if boxes.shape != (T, 4):
        raise ValueError(f"boxes must be (T, 4) = ({T}, 4), got {boxes.shape}")
    mask = np.zeros((T, H, W), bool)
    for t, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
        mask[t, max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)] = True
    return apd(fake, real, mask)


def psnr(fake, real) -> float:
    """Mean over frames of skimage's PSNR (data_range 255); inf when every frame is identical."""

    fake, real = _pair(fake, real)
    with np.errstate(divide="ignore"):
        vals = [peak_signal_noise_ratio(r, f, data_range=255) for f, r in zip(fake, real)]
    return float(np.mean(vals))


def ssim(fake, real) -> float:
    """Mean over frames of skimage's SSIM (channel_axis=-1, data_range 255)."""

    fake, real = _pair(fake, real)
    return float(np.mean([structural_similarity(r, f, channel_axis=-1, data_range=255)
                          for f, r in zip(fake, real)]))


def error_map(fake, real) -> np.ndarray:
    """(H, W) float32: the per-pixel RGB L2 distance averaged over the frames (the heatmaps)."""
    return pixel_distance(fake, real).mean(0).astype(np.float32)


# ============================================================================ re-fit metrics

def rotation_difference(Ra, Rb) -> np.ndarray:
    """(T,) geodesic angle in degrees between rotations Ra, Rb (T, 3, 3): the angle of Ra Rb^T."""
    Ra, Rb = np.asarray(Ra, np.float64), np.asarray(Rb, np.float64)
    if Ra.shape != Rb.shape or Ra.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must both be (T, 3, 3), got {Ra.shape} and {Rb.shape}")
    M = Ra @ np.swapaxes(Rb, -1, -2)
    cos = (np.trace(M, axis1=-2, axis2=-1) - 1.0) / 2.0
    A = M - np.swapaxes(M, -1, -2)  # 2 sin(angle) [axis]_x
    sin = np.linalg.norm(np.stack([A[..., 2, 1], A[..., 0, 2], A[..., 1, 0]], -1), axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))  # atan2: well conditioned near 0 and 180 degrees, unlike arccos


def expression_distance(ea, eb) -> np.ndarray:
    """(T,) L1 distance ``sum_k |ea_k - eb_k|`` of expression coefficients (T, K)."""
    ea, eb = np.asarray(ea, np.float64), np.asarray(eb, np.float64)
    if ea.shape != eb.shape or ea.ndim != 2:
        raise ValueError(f"expressions must both be (T, K), got {ea.shape} and {eb.shape}")
    return np.abs(ea - eb).sum(-1)


def eye_landmark_distance(la, lb) -> np.ndarray:
    """(T,) mean Euclidean distance over the eye landmarks 36-47 of 68-point sets (T, 68, 2)."""
    la, lb = np.asarray(la, np.float64), np.asarray(lb, np.float64)
    if la.shape != lb.shape or la.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must both be (T, 68, 2), got {la.shape} and {lb.shape}")
    return np.linalg.norm(la[:, EYE_POINTS] - lb[:, EYE_POINTS], axis=-1).mean(-1)


def _video_landmarks(an, scale: float) -> np.ndarray:
    """An analysis' 68 landmarks (its crop pixels) in the analysed video's pixels / ``scale``."""

    box = CropBox.from_dict(an.crop_box)
    return box.transform(int(an.size)).inverse().apply(np.asarray(an.lmk68, np.float64)) / scale


def compare_fits(gen, real, scale: float = 1.0) -> dict:
    """AED, ARD, AELD between two analyses (:class:`reenact.drive.SourceAnalysis` or any object
    with frame_index (T,), exp (T, K), rotation (T, 3, 3), lmk68 (T, 68, 2) crop pixels, crop_box,
    size) on the frames both kept. Landmarks are mapped back to the analysed videos' pixels and
    divided by ``scale`` (the analysis upscale factor) so AELD is in target-crop pixels.
    Returns {"aed", "ard", "aeld", "frames"}; NaNs when no frame is common."""
    common, ig, ir = np.intersect1d(np.asarray(gen.frame_index), np.asarray(real.frame_index),
                                    return_indices=True)
    if len(common) == 0:
        return {"aed": float("nan"), "ard": float("nan"), "aeld": float("nan"), "frames": 0}
    lg, lr = _video_landmarks(gen, scale)[ig], _video_landmarks(real, scale)[ir]
    return {"aed": float(expression_distance(np.asarray(gen.exp)[ig], np.asarray(real.exp)[ir]).mean()),
            "ard": float(rotation_difference(np.asarray(gen.rotation)[ig], np.asarray(real.rotation)[ir]).mean()),
            "aeld": float(eye_landmark_distance(lg, lr).mean()), "frames": int(len(common))}


# ============================================================================ temporal metric

@torch.no_grad()
def warping_error(frames, flows, conf, device=None) -> float:
    """Temporal warping error of a sequence under given flows.

    frames (T, H, W, 3) uint8 (or float on 0-255); flows (T, H, W, C>=2) with ``flows[t] =
    F_{t->t-1}`` in pixels (``flows[0]`` unused); conf (T, H, W) in [0, 1]. Returns the mean over
    t >= 1 with ``sum conf_t > 0`` of the conf-weighted mean of ``|Y_t - W(Y_{t-1}, F_t)|`` over
    pixels and channels (0-255); NaN when no pair has a trusted pixel.
    """

    frames, flows, conf = np.asarray(frames), np.asarray(flows), np.asarray(conf)
    T, H, W = frames.shape[:3]
    if frames.shape[-1] != 3 or flows.shape[:3] != (T, H, W) or conf.shape != (T, H, W) or flows.shape[-1] < 2:
        raise ValueError(f"need frames (T, H, W, 3), flows (T, H, W, C>=2) and conf (T, H, W) of the same T, H, W; "
                         f"got {frames.shape}, {flows.shape}, {conf.shape}")
    errs = []
    for t in range(1, T):
        c = torch.from_numpy(conf[t].astype(np.float32)).to(device)
        if float(c.sum()) <= 0:
            continue
        cur = torch.from_numpy(frames[t].astype(np.float32)).permute(2, 0, 1).to(device)
        prev = torch.from_numpy(frames[t - 1].astype(np.float32)).permute(2, 0, 1)[None].to(device)
        f = torch.from_numpy(flows[t][..., :2].astype(np.float32)).permute(2, 0, 1)[None].to(device)
        e = (cur - warp(prev, f)[0]).abs().mean(0)
        errs.append(float((e * c).sum() / c.sum()))
    return float(np.mean(errs)) if errs else float("nan")


def reference_flow(flows) -> str | None:
    """The temporal metric's reference flow among the cached providers ``flows``: dis2d, else
    faceflow3d, else None."""
    for name in ("dis2d", "faceflow3d"):
        if name in flows:
            return name
    return None


# ============================================================================ LPIPS

def _alexnet_search_paths(path=None) -> list[Path]:
    return torch_cache_candidates(ALEXNET_FILENAME, "FACEFLOW_ALEXNET", path)

def find_alexnet_weights(path=None) -> Path | None:
    """The local AlexNet ImageNet weights LPIPS needs: ``path`` if given, else
    ``$FACEFLOW_ALEXNET``, else torchvision's cache file; None when absent. Never downloads."""
    return find_torch_weights(ALEXNET_FILENAME, "FACEFLOW_ALEXNET", path)


class LPIPSMetric:
    """LPIPS (AlexNet trunk, the ``lpips`` package's v0.1 linear layers) from local files only.

    ``available`` False with a ``reason`` when the package or the AlexNet weights
    (:func:`find_alexnet_weights`) are missing; :meth:`__call__` then returns NaN. The trunk is
    built untrained (no download) and the weights file is loaded into it.
    """

    def __init__(self, weights_path=None, device="cpu"):
        self.device = torch.device(device)
        self.net = None
        self.weights_path = find_alexnet_weights(weights_path)
        self.reason = ""
        try:
            import lpips
        except ImportError as e:
            self.reason = f"the lpips package is not installed ({e})"
            return
        if self.weights_path is None:
            searched = ", ".join(str(p) for p in _alexnet_search_paths(weights_path))
            self.reason = (f"LPIPS needs torchvision's AlexNet ImageNet weights {ALEXNET_FILENAME}, not found "
                           f"(searched: {searched}); nothing is downloaded. Put the file there (or point "
                           f"FACEFLOW_ALEXNET at it) and score again.")
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)

        sd = load_tensors(self.weights_path, "AlexNet weights file",
                          "not a readable AlexNet weights file (corrupt or truncated?)")
        if not isinstance(sd, dict):
            raise FaceflowError(f"{self.weights_path}: expected a state dict, got {type(sd).__name__}")
        target = {}
        for sname in ("slice1", "slice2", "slice3", "slice4", "slice5"):
            for idx, mod in getattr(net.net, sname).named_children():
                for pname, _ in mod.named_parameters(recurse=False):
                    key = f"features.{idx}.{pname}"
                    if key not in sd:
                        raise FaceflowError(f"{self.weights_path}: no {key!r}; not torchvision's AlexNet weights")
                    target[f"{sname}.{idx}.{pname}"] = sd[key]
        try:
            net.net.load_state_dict(target, strict=True)
        except RuntimeError as e:
            raise FaceflowError(f"{self.weights_path}: does not fit AlexNet ({e})") from e
        self.net = net.eval().requires_grad_(False).to(self.device)

    @property
    def available(self) -> bool:
        return self.net is not None

    @torch.no_grad()
    def __call__(self, fake, real, batch: int = 16) -> float:
        """Mean LPIPS over frames of fake, real (T, H, W, 3) uint8; NaN when unavailable."""
        fake, real = _pair(fake, real)
        if self.net is None:
            return float("nan")

        vals = []
        for s in range(0, len(fake), batch):
            a = to_signed(fake[s:s + batch]).to(self.device)
            b = to_signed(real[s:s + batch]).to(self.device)
            vals.append(self.net(a, b).flatten().double().cpu())
        return float(torch.cat(vals).mean())


# ============================================================================ tables

def _num(v) -> float | None:
    """float, or None for a missing value or NaN (an infinite PSNR of identical frames stays inf)."""
    return None if v is None or math.isnan(float(v)) else float(v)


def metric_table(cells: dict, metric: str, videos: list[str], methods: list[str],
                 extra_rows: dict | None = None) -> list[dict]:
    """Rows of one metric in the Table 3 layout: ``[{"method", "values": {video: float | None},
    "mean": float | None}]`` for each method that has a cell, then ``extra_rows`` ({row name:
    {video: value}}). ``cells[(video, method)]`` is a cell's metrics dict; the mean is over the
    videos with a value."""
    rows = []
    items = [(m, {v: cells[(v, m)].get(metric) for v in videos if (v, m) in cells}) for m in methods
             if any((v, m) in cells for v in videos)]
    items += list((extra_rows or {}).items())
    for name, vals in items:
        values = {v: _num(vals.get(v)) for v in videos}
        got = [x for x in values.values() if x is not None]
        rows.append({"method": name, "values": values, "mean": float(np.mean(got)) if got else None})
    return rows


def _fmt(v, decimals: int) -> str:
    return "n/a" if v is None else f"{v:.{decimals}f}"


def _label(method: str) -> str:
    return f"{FLOW_LABELS[method]} (`{method}`)" if method in FLOW_LABELS else method


def format_table_md(rows: list[dict], metric: str, videos: list[str]) -> str:
    """A markdown table: rows the methods, columns the videos and the mean; the best value of
    each column (among the methods, not the reference rows) in bold."""
    label, better, dec = METRICS[metric]
    arrow = "↓" if better == "lower" else "↑"
    cols = videos + ["mean"]
    best = {}
    for c in cols:
        vals = [(r["mean"] if c == "mean" else r["values"][c]) for r in rows if r["method"] in FLOW_LABELS]
        vals = [v for v in vals if v is not None]
        if len(vals) > 1:
            best[c] = min(vals) if better == "lower" else max(vals)
    lines = [f"| Method ({label} {arrow}) | " + " | ".join(videos) + " | Mean |",
             "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r["mean"] if c == "mean" else r["values"][c]
            s = _fmt(v, dec)
            if v is not None and r["method"] in FLOW_LABELS and c in best and round(v, dec) == round(best[c], dec):
                s = f"**{s}**"
            cells.append(s)
        lines.append(f"| {_label(r['method'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_table_csv(rows: list[dict], videos: list[str]) -> str:
    """CSV: ``method,<videos...>,mean`` (full precision; "n/a" where missing)."""

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method"] + videos + ["mean"])
    for r in rows:
        w.writerow([r["method"]] + ["n/a" if r["values"][v] is None else repr(r["values"][v]) for v in videos]
                   + ["n/a" if r["mean"] is None else repr(r["mean"])])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with vio.atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _notes(records: dict, videos: list[str]) -> list[str]:
    notes = []
    reasons = sorted({r.get("lpips_reason") for r in records.values() if r.get("lpips_reason")})
    for reason in reasons:
        notes.append(f"LPIPS n/a: {reason}")
    for v in videos:
        recs = [r for (vv, _), r in records.items() if vv == v]
        refs = sorted({str(r.get("reference_flow")) for r in recs})
        if recs:
            notes.append(f"{v}: held-out frames {recs[0]['test_range'][0]}-{recs[0]['test_range'][1] - 1} "
                         f"({recs[0]['frames']} frames); temporal reference flow: {', '.join(refs)}")
    for (v, m), r in sorted(records.items()):
        tr = r.get("train", {})
        budget = f"{tr.get('budget')}" if tr else "?"
        notes.append(f"{v} / {m}: trained {tr.get('step')} steps in {tr.get('elapsed_s', 0.0):.0f} s "
                     f"(budget {budget}, seed {tr.get('seed')})")
        for n in r.get("notes", []):
            notes.append(f"{v} / {m}: {n}")
    return notes


def write_tables(out, records: dict, videos: list[str], methods: list[str]) -> dict:
    """Write ``table.md``, ``table.csv`` and ``tables/<metric>.md|.csv`` from the finished cells
    ``records[(video, method)]`` (each a metrics.json dict). Returns {metric: rows}."""
    out = Path(out)
    cells = {k: r["metrics"] for k, r in records.items()}
    real_rows = {}
    for v in videos:
        vals = [r.get("temporal_real") for (vv, _), r in records.items() if vv == v]
        vals = [x for x in vals if x is not None]
        if vals:
            real_rows.setdefault(REAL_ROW, {})[v] = vals[0]
    tables = {}
    notes = _notes(records, videos)
    for metric in METRICS:
        rows = metric_table(cells, metric, videos, methods, real_rows if metric == "temporal" else None)
        tables[metric] = rows
        label, better, _ = METRICS[metric]
        md = (f"# Self-reenactment: {label} ({better} is better)\n\n" + format_table_md(rows, metric, videos))
        if metric == "lpips":
            md += "".join(f"\n- {n}" for n in notes if n.startswith("LPIPS")) + "\n"
        if metric == "temporal":
            md += "".join(f"\n- {n}" for n in notes if "temporal reference" in n) + "\n"
        _write_text(out / "tables" / f"{metric}.md", md)
        _write_text(out / "tables" / f"{metric}.csv", format_table_csv(rows, videos))
    # the summary: APD in Table 3's layout, every metric's mean, the notes
    summary = ["| Method | " + " | ".join(f"{METRICS[m][0]} {'↓' if METRICS[m][1] == 'lower' else '↑'}"
                                         for m in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for method in methods:
        if not any((v, method) in cells for v in videos):
            continue
        vals = []
        for m in METRICS:
            row = next(r for r in tables[m] if r["method"] == method)
            vals.append(_fmt(row["mean"], METRICS[m][2]))
        summary.append(f"| {_label(method)} | " + " | ".join(vals) + " |")
    md = ("# Self-reenactment on held-out frames: APD (lower is better)\n\n"
          "Average pixel distance (RGB L2 on 0-255) between the generated and the real last third of "
          "each video; one model per video and flow provider, same preset, seed and budget. See "
          "`tables/` for the other metrics and `evaluation/self_reenact.py` for their definitions.\n\n"
          + format_table_md(tables["apd"], "apd", videos)
          + "\n## All metrics (mean over videos)\n\n" + "\n".join(summary) + "\n"
          + "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    _write_text(out / "table.md", md)
    _write_text(out / "table.csv", format_table_csv(tables["apd"], videos))
    return tables


# ============================================================================ figures

def _colormap(x: np.ndarray, vmax: float) -> np.ndarray:

    v = np.clip(np.asarray(x, np.float64) / max(vmax, 1e-9), 0, 1)
    return cv2.cvtColor(cv2.applyColorMap((v * 255 + 0.5).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _caption(img: np.ndarray, text: str) -> np.ndarray:
    """``img`` (H, W, 3) uint8 with a black caption band on top."""

    h, w = img.shape[:2]
    band_h = max(14, h // 10)
    band = np.zeros((band_h, w, 3), np.uint8)
    scale = band_h / 30.0
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw > w - 4:
        scale *= (w - 4) / tw
    cv2.putText(band, text, (2, int(band_h * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return np.concatenate([band, img], 0)


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
    gap = np.full((panels[0].shape[0], 2, 3), 255, np.uint8)
    row = np.concatenate([x for p in panels for x in (p, gap)][:-1], 1)
    bar = _colormap(np.tile(np.linspace(0, vmax, row.shape[1])[None], (max(8, size // 16), 1)), vmax)
    return np.concatenate([row, _caption(bar, f"per-pixel APD (RGB L2, 0-255), colour scale 0 .. {vmax:.1f}")], 0)


# ============================================================================ the pipeline

@dataclass
class SelfReenactConfig:
    """Options of an evaluation run (the first five are fixed for an OUT directory)."""

    preset: str = "tiny"
    iters: int | None = None     # training steps (default: the preset's)
    minutes: float | None = None  # training time per model instead (the schedule spans the preset's steps)
    seed: int = 0
    size: int = 256
    max_frames: int | None = None
    flows: tuple[str, ...] = ("dis2d", "faceflow3d")
    device: str = "auto"
    lpips_weights: str | None = None
    sample_frames: int = 300
    progress: bool = True

    def fixed(self) -> dict:
        return {"preset": self.preset, "iters": self.iters, "minutes": self.minutes, "seed": self.seed,
                "size": self.size, "max_frames": self.max_frames}


class Stopped(Exception):
    """Training stopped by a signal: the run ends, rerun to resume."""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "video"


def _resolve_inputs(inputs, cfg: SelfReenactConfig) -> list[tuple[str, Path, bool]]:
    """[(name, path, is_data_dir)], checked before any work."""

    if not inputs:
        raise FaceflowError("no input: give one or more videos or prepared data directories")
    for f in cfg.flows:
        flow_channels(f)  # unknown provider -> FaceflowError

    if cfg.preset not in PRESETS:
        raise FaceflowError(f"unknown preset {cfg.preset!r}; choose one of {', '.join(sorted(PRESETS))}")
    if cfg.iters is not None and cfg.minutes is not None:
        raise FaceflowError("give either --iters or --minutes, not both")
    if cfg.iters is not None and cfg.iters < 1:
        raise FaceflowError(f"--iters must be >= 1, got {cfg.iters}")
    if cfg.minutes is not None and not cfg.minutes > 0:
        raise FaceflowError(f"--minutes must be > 0, got {cfg.minutes}")
    out, names = [], {}
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FaceflowError(f"input not found: {p}")
        if p.is_dir():
            if not (p / "manifest.json").is_file():
                raise FaceflowError(f"{p} is a directory but not a prepared target (no manifest.json); give a "
                                    f"video, or prepare it with python -m reenact preprocess VIDEO {p}")
            name, is_dir = _safe_name(p.resolve().name), True
        else:
            name, is_dir = _safe_name(p.stem), False
        if name in names:
            raise FaceflowError(f"two inputs share the name {name!r} ({names[name]} and {p}); rename one")
        names[name] = p
        out.append((name, p, is_dir))
    return out


def _prepare(name: str, path: Path, is_dir: bool, out: Path, cfg: SelfReenactConfig, say) -> Path:
    """The data directory of an input with every requested flow (and dis2d for videos) cached."""

    if is_dir:
        data = path
        m = json.loads((data / "manifest.json").read_text())
        missing = [f for f in cfg.flows if f not in m.get("flows", {})]
        if missing:
            from faceflow.runtime.provenance import resolve_recorded

            src = m.get("source")  # relative to the data directory (absolute in older manifests)
            src = resolve_recorded(src, data) if src else None
            if not src or not src.is_file():
                raise FaceflowError(f"{data} lacks the {', '.join(missing)} flow and its source video {src} is gone; "
                                    f"prepare it with --flow {' '.join(cfg.flows)}")
            say(f"[{name}] adding the {', '.join(missing)} flow to {data}")
            opts = {k: v for k, v in m["options"].items() if k in PreprocessConfig.__dataclass_fields__}
            opts.update(flows=tuple(missing), device=cfg.device, extra=opts.get("extra") or {})
            preprocess(src, data, PreprocessConfig(**opts), say=lambda s: say(f"[{name}]   {s}"))
        elif int(m["size"]) != cfg.size:
            say(f"[{name}] note: prepared at {m['size']} px (--size {cfg.size} applies to videos only)")
        return data
    data = out / "data" / name
    want = tuple(dict.fromkeys(list(cfg.flows) + ["dis2d"]))
    mf = data / "manifest.json"
    if mf.is_file():
        m = json.loads(mf.read_text())
        if all(f in m.get("flows", {}) for f in want):
            say(f"[{name}] preprocessed data: cached ({data})")
            return data
    say(f"[{name}] preprocessing {path} into {data} (size {cfg.size}, flows {', '.join(want)})")
    preprocess(path, data, PreprocessConfig(size=cfg.size, flows=want, max_frames=cfg.max_frames, device=cfg.device),
               say=lambda s: say(f"[{name}]   {s}"))
    return data


def _train_cell(data: Path, model_dir: Path, flow: str, cell: Path, cfg: SelfReenactConfig, command, say) -> dict:
    """Train (or resume, or reuse) the model of a cell; returns the training record."""

    rec_path = cell / "train.json"
    if rec_path.is_file() and checkpoint_path(model_dir).is_file():
        return json.loads(rec_path.read_text())
    preset = PRESETS[cfg.preset]["train"]
    iterations = int(cfg.iters or preset["iterations"])
    budget = f"{cfg.minutes} min" if cfg.minutes else f"{iterations} steps"
    minutes = 0.0
    if cfg.minutes:
        used = 0.0
        if checkpoint_path(model_dir).is_file():  # a resumed run gets only what is left of the budget
            used = float(load_checkpoint(checkpoint_path(model_dir)).get("elapsed", 0.0))
        minutes = cfg.minutes - used / 60.0
    task = ReenactTask(ReenactTask.make_config(cfg.preset, str(data), flow))
    tcfg = TrainConfig(**{**preset, "out": str(model_dir), "data": [str(data)], "seed": cfg.seed,
                          "iterations": iterations, "max_minutes": max(minutes, 0.0), "device": cfg.device})
    if cfg.minutes and minutes <= 0:
        say(f"  training budget of {cfg.minutes} min already used")
        ck = load_checkpoint(checkpoint_path(model_dir))
        summary = {"step": int(ck["step"]), "status": "time budget", "elapsed_s": float(ck.get("elapsed", 0.0))}
    else:
        say(f"  training {model_dir} ({cfg.preset} preset, {budget}, seed {cfg.seed}, device {cfg.device})")
        summary = train(task, tcfg, command=command, progress=cfg.progress)
    if summary["status"] not in ("done", "time budget"):
        raise Stopped(f"training of {model_dir} stopped ({summary['status']}) at step {summary['step']}; "
                       f"rerun the same command to resume")
    rec = {"step": int(summary["step"]), "iterations": iterations, "status": summary["status"],
           "elapsed_s": float(summary.get("elapsed_s", 0.0)), "budget": budget, "seed": cfg.seed,
           "preset": cfg.preset, "model_dir": _portable_path(model_dir, cell, climb=True)}  # relative to the cell
    vio.save_json(rec_path, rec)
    return rec


@torch.no_grad()
def generate_self(model_dir, device="cpu") -> tuple[np.ndarray, int, int, float]:
    """Self-reenact a model's held-out frames as ``python -m reenact run --mode self`` does:
    returns (generated (T, S, S, 3) uint8, first and end kept frame of the test part, frames per
    second of the generator)."""

    G, tc, _ = load_model(model_dir, device)
    data = Path(tc.data)
    manifest = json.loads((data / "manifest.json").read_text())
    lo, hi = (int(x) for x in manifest["split"]["test"])
    d = drive_self(data / "annotation", lo, hi)
    fake, fps = generate_frames(G, d.cond, next(G.parameters()).device)
    return fake, lo, hi, fps


def _analysis_video(path: Path, frames: np.ndarray, fps: float, rewrite: bool) -> float:
    """Write ``frames`` upscaled to at least ANALYSIS_MIN_SIZE as a near-lossless mp4 (unless
    it exists and not ``rewrite``); returns the upscale factor."""

    S = frames.shape[1]
    A = max(S, ANALYSIS_MIN_SIZE)
    if rewrite or not path.is_file():
        up = (frames if A == S else np.stack([cv2.resize(f, (A, A), interpolation=cv2.INTER_CUBIC) for f in frames]))
        path.parent.mkdir(parents=True, exist_ok=True)
        vio.write_video(path, up, fps=fps, crf=10)
    return A / S


def _analyse(path: Path, frames: np.ndarray, fps: float, rewrite: bool):
    """(analysis or None, upscale factor, reason when None)."""

    scale = _analysis_video(path, frames, fps, rewrite)
    try:
        an = analyse_source(path, path.parent, int(round(frames.shape[1] * scale)), say=lambda s: None)
    except FaceflowError as e:  # NoFaceError and friends: the metric is n/a
        return None, scale, str(e)
    return an, scale, ""


def score_frames(fake, real, *, mask, mouth, flows=None, conf=None, lpips_metric: LPIPSMetric | None = None,
                 refit_dir=None, real_refit_dir=None, fps: float = 25.0, device=None) -> dict:
    """Every metric of generated frames against the real ones (see the module docstring).

    fake, real (T, S, S, 3) uint8; mask (T, S, S) bool face mask; mouth (T, 4) boxes; flows
    (T, S, S, C>=2) / conf (T, S, S): the reference flow between the real frames (``flows[t] =
    F_{t->t-1}``; None: temporal n/a); ``lpips_metric`` None or unavailable: LPIPS n/a;
    ``refit_dir`` / ``real_refit_dir``: where the generated / real frames are written and
    re-fitted (the real video is written once and its fit reused; None: AED/ARD/AELD n/a).
    Returns {"metrics": {key: float | None}, "temporal_real", "fit_frames", "notes"}.
    """
    fake, real = _pair(fake, real)
    notes = []
    m = {"apd": apd(fake, real), "mapd": apd(fake, real, mask), "mouth_apd": mouth_apd(fake, real, mouth),
         "psnr": psnr(fake, real), "ssim": ssim(fake, real), "lpips": None}
    if lpips_metric is not None and lpips_metric.available:
        m["lpips"] = lpips_metric(fake, real)
    m["temporal"], temporal_real = None, None
    if flows is None:
        notes.append("temporal: n/a (no dis2d or faceflow3d flow cached in the data directory)")
    else:
        m["temporal"] = warping_error(fake, flows, conf, device)
        temporal_real = warping_error(real, flows, conf, device)
    m.update(aed=None, ard=None, aeld=None)
    fit_frames = 0
    if refit_dir is None or real_refit_dir is None:
        notes.append("AED/ARD/AELD: not computed (no re-fit directory)")
    else:
        real_an, scale, why_r = _analyse(Path(real_refit_dir) / "real.mp4", real, fps, False)
        gen_an, _, why_g = _analyse(Path(refit_dir) / "generated.mp4", fake, fps, True)
        if real_an is None or gen_an is None:
            which = "real" if real_an is None else "generated"
            notes.append(f"AED/ARD/AELD: n/a: the re-fit of the {which} frames failed: {why_r or why_g}")
        else:
            c = compare_fits(gen_an, real_an, scale)
            fit_frames = c.pop("frames")
            m.update(c)
            if fit_frames < len(fake):
                notes.append(f"AED/ARD/AELD on the {fit_frames} of {len(fake)} frames fitted in both videos")
    return {"metrics": {k: _num(v) for k, v in m.items()}, "temporal_real": _num(temporal_real),
            "fit_frames": fit_frames, "notes": notes}


def _score_cell(name: str, flow: str, data: Path, model_dir: Path, cell: Path, train_rec: dict,
                lp: LPIPSMetric, dev: torch.device, say, command: str | None = None) -> dict:

    t0 = time.perf_counter()
    say("  self-reenacting the held-out frames")
    fake, lo, hi, gen_fps = generate_self(model_dir, dev)
    d = data / "annotation" / "data"
    real = np.asarray(np.load(d / "crops.npy", mmap_mode="r")[lo:hi])
    manifest = json.loads((data / "manifest.json").read_text())
    fps = float(manifest["fps"])
    vio.write_video(cell / "generated.mp4", fake, fps=fps, crf=12)
    np.save(cell / "error_map.npy", error_map(fake, real))
    ref = reference_flow(manifest.get("flows", {}))
    flows = conf = None
    if ref is not None:
        flows = np.asarray(np.load(data / "flows" / f"{ref}.npy", mmap_mode="r")[lo:hi])
        conf = np.asarray(np.load(data / "flows" / f"{ref}_conf.npy", mmap_mode="r")[lo:hi])
    say(f"  scoring {len(fake)} frames (re-fitting the generated and the real ones)")
    s = score_frames(fake, real, mask=np.asarray(np.load(d / "face_mask.npy", mmap_mode="r")[lo:hi]),
                     mouth=np.load(data / "mouth.npy")[lo:hi], flows=flows, conf=conf, lpips_metric=lp,
                     refit_dir=cell / "analysis", real_refit_dir=cell.parent / "real", fps=fps, device=dev)
    rec = {"format": FORMAT, "video": name, "method": flow, **s, "frames": int(len(fake)), "test_range": [lo, hi],
           "reference_flow": ref, "lpips_reason": "" if lp.available else lp.reason,
           "lpips_weights": Path(lp.weights_path).name if lp.available else None, "train": train_rec,
           # relative to this file's directory (the cell): faceflow.runtime.provenance.resolve_recorded
           "data_dir": portable_path(data, cell, climb=True), "model_dir": portable_path(model_dir, cell, climb=True),
           "generation_fps": gen_fps,
           "per_frame_apd": [float(x) for x in pixel_distance(fake, real).mean((1, 2))],
           "seconds": time.perf_counter() - t0}
    out = cell.parents[2]  # OUT/cells/<video>/<flow>
    rec["provenance"] = provenance(command, device=dev, base=out,
                                   weights={"generator": checkpoint_path(model_dir), "lpips_alexnet": lp.weights_path
                                            if lp.available else None})
    rec = portable_json(rec, cell)
    vio.save_json(cell / "metrics.json", rec)  # written last: the cell is finished
    return rec


def _read_cells(out: Path) -> dict:
    recs = {}
    for p in sorted((out / "cells").glob("*/*/metrics.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if r.get("format") == FORMAT:
            recs[(r["video"], r["method"])] = r
    return recs


def _write_figures(out: Path, records: dict, videos: list[str], methods: list[str], sample_frames: int, say) -> None:

    for v in videos:
        ms = [m for m in methods if (v, m) in records]
        if not ms:
            continue
        r0 = records[(v, ms[0])]
        data = resolve_recorded(r0["data_dir"], out / "cells" / v / ms[0])  # relative to its metrics.json
        if not (data / "manifest.json").is_file():
            say(f"note: no heatmap or sample for {v}: its prepared data {data} is gone")
            continue
        lo, hi = r0["test_range"]
        crops = np.load(data / "annotation" / "data" / "crops.npy", mmap_mode="r")
        maps = {m: np.load(out / "cells" / v / m / "error_map.npy") for m in ms}
        mid = (lo + hi) // 2
        vio.write_image(out / "heatmaps" / f"{v}.png", heatmap_image(maps, real=np.asarray(crops[mid])))
        n = min(hi - lo, sample_frames)
        real = np.asarray(crops[lo:lo + n])
        gens = {}
        for m in ms:
            g, _ = vio.read_video(out / "cells" / v / m / "generated.mp4", max_frames=n)
            gens[m] = g
        n = min([n] + [len(g) for g in gens.values()])
        fps = float(json.loads((data / "manifest.json").read_text())["fps"])
        S = real.shape[1]
        frames = (side_by_side([_caption(real[t], "real")] + [_caption(gens[m][t], m) for m in ms],
                               S + max(14, S // 10)) for t in range(n))
        vio.write_video(out / "samples" / f"{v}.mp4", frames, fps=fps, crf=18)
    say(f"heatmaps in {out / 'heatmaps'}, side-by-side samples in {out / 'samples'}")


def _log_command(out: Path, command: str, cfg: SelfReenactConfig, dev: torch.device) -> None:
    """Append this invocation to ``OUT/commands.md``: command, options, git commit, device and
    versions (:func:`faceflow.runtime.provenance.provenance`), no absolute paths of this machine."""

    prov = provenance(command, device=dev, libraries=("torchvision", "cv2", "mediapipe", "skimage", "lpips"))
    commit = prov["git_commit"] or "unknown (not a git checkout, or git not available)"
    if prov["git_dirty"]:
        commit += " (with uncommitted changes)"
    path = out / "commands.md"
    old = path.read_text() if path.is_file() else "# Commands and environment of this evaluation\n"
    lines = [f"\n## {datetime.datetime.now().isoformat(timespec='seconds')}\n", "```", prov["command"], "```",
             f"- options: `{json.dumps(portable_json(asdict(cfg), out))}`", f"- git commit: {commit}",
             f"- device: {prov['device']}", f"- platform: {platform.platform()}"]
    lines += [f"- {k}: {v}" for k, v in prov["versions"].items()]
    _write_text(path, old + "\n".join(lines) + "\n")


def _check_out(out: Path, cfg: SelfReenactConfig, names: list[str]) -> list[str]:
    """OUT/config.json: the fixed options must match earlier runs'; returns the video order."""
    path = out / "config.json"
    fixed = cfg.fixed()
    order = []
    if path.is_file():
        prev = json.loads(path.read_text())
        if prev.get("format") != FORMAT:
            raise FaceflowError(f"{path}: not a self-reenactment evaluation ({prev.get('format')!r})")
        if prev["options"] != fixed:
            diff = {k: (prev["options"].get(k), v) for k, v in fixed.items() if prev["options"].get(k) != v}
            what = ", ".join(f"{k}: {a} there, {b} now" for k, (a, b) in diff.items())
            raise FaceflowError(f"{out} holds results made with other options ({what}); use another --out or "
                                f"the same options so the cells stay comparable")
        order = list(prev.get("videos", []))
    order += [n for n in names if n not in order]
    vio.save_json(path, {"format": FORMAT, "options": fixed, "videos": order})
    return order


def evaluate(inputs, out, cfg: SelfReenactConfig | None = None, *, say=_say, command: str | None = None) -> dict:
    """Run (or resume) the evaluation of ``inputs`` (videos or prepared data directories) into
    ``out``; returns {"records": {(video, method): metrics.json dict}, "tables": {metric: rows},
    "computed": [(video, method) cells computed by this call]}."""

    cfg = cfg or SelfReenactConfig()
    resolved = _resolve_inputs(inputs, cfg)
    dev = resolve_device(cfg.device)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    order = _check_out(out, cfg, [n for n, _, _ in resolved])
    command = command or shlex.join(["python", "-m", "evaluation.self_reenact"] + [str(i) for i in inputs]
                                    + ["--out", str(out)])
    _log_command(out, command, cfg, dev)
    lp = None
    computed = []
    n_cells = len(resolved) * len(cfg.flows)
    k = 0
    for name, path, is_dir in resolved:
        data = None
        for flow in cfg.flows:
            k += 1
            cell = out / "cells" / name / flow
            if (cell / "metrics.json").is_file():
                say(f"[{k}/{n_cells}] {name} / {flow}: finished earlier ({cell / 'metrics.json'})")
                continue
            if data is None:
                data = _prepare(name, path, is_dir, out, cfg, say)
            say(f"[{k}/{n_cells}] {name} / {flow}")
            cell.mkdir(parents=True, exist_ok=True)
            model_dir = out / "models" / name / flow
            rec = _train_cell(data, model_dir, flow, cell, cfg, command, say)
            if lp is None:
                lp = LPIPSMetric(cfg.lpips_weights, dev)
                if not lp.available:
                    say(f"note: {lp.reason}")
            r = _score_cell(name, flow, data, model_dir, cell, rec, lp, dev, say, command=command)
            say(f"  APD {r['metrics']['apd']:.2f}, MAPD {r['metrics']['mapd']:.2f} -> {cell / 'metrics.json'}")
            computed.append((name, flow))
    records = _read_cells(out)
    videos = order + sorted({v for v, _ in records} - set(order))
    methods = [m for m in ("faceflow3d", "dis2d", "none") if any(mm == m for _, mm in records)]
    methods += sorted({m for _, m in records} - set(methods))
    tables = write_tables(out, records, videos, methods)
    _write_figures(out, records, videos, methods, cfg.sample_frames, say)
    say(f"tables: {out / 'table.md'} (and tables/)")
    return {"records": records, "tables": tables, "computed": computed}


# ============================================================================ CLI

if __name__ == "__main__":  # python -m evaluation.self_reenact: the command of evaluation/commands/self_reenact.py
    from evaluation.commands.self_reenact import main

    sys.exit(main())
