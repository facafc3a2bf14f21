"""Self-reenactment error tables: Head2Head++ trained with each flow provider, scored on held-out
frames (DeepFaceFlow Table 3: "Head2Head++ with 2D optical flow vs with 3D facial flow").

``python -m evaluation.self_reenact VIDEO_OR_DATA_DIR [...] --out OUT [--flows dis2d faceflow3d]
[--preset tiny] [--iterations N | --max-minutes M] [--seed 0] [--size 256] [--max-frames N] [--device auto]``

For every input (a video, or a directory prepared by ``python -m reenact preprocess``) and every
flow provider (:mod:`reenact.flows`) this

1. preprocesses the video once into ``OUT/data/<video>`` (all providers' flows side by side,
   plus ``dis2d`` as the temporal metric's reference flow; cached, resumable);
2. trains a person-specific model under ``OUT/models/<video>/<flow>/seed<k>`` for every provider
   and every seed of ``--seeds`` with the same preset and budget (``--iterations`` steps, or
   ``--max-minutes`` of training time in total, resumed runs included);
3. self-reenacts the held-out last third of the kept frames (the split of
   :func:`reenact.preprocess.split_frames`) frame by frame exactly as ``python -m reenact run
   --mode self`` does (:class:`vid2vid.collector.StreamGenerator`, zero history at the first
   test frame);
4. scores it into ``OUT/cells/<video>/<flow>/seed<k>/metrics.json`` (written last, atomically: a
   cell with it is finished and never recomputed; delete it to redo the cell).

With several seeds every table cell reads ``mean +- std`` over the seeds (the std of a mean over
videos is that of the per-seed means), and ``table.md`` adds a **paired comparison** of every
pair of providers on every metric: the differences ``d = A - B`` of the cells trained on the same
video with the same seed, their mean and std, how many favour A, and the two-sided p-value of a
paired t-test (``scipy.stats.ttest_rel``; n/a under 2 pairs). A seed changes the initial weights
and the order of the training windows only, so the pairs share data and budget.

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
- **CSIM** (identity similarity, :mod:`faceflow.face.identity`): the mean cosine similarity of dlib's
  face-recognition embeddings of the generated frames (aligned by the real frames' landmarks)
  with the target's reference, the mean unit embedding of 32 of its TRAINING crops (higher is
  better; 1 = the same embedding).
- **AED / ARD / AELD** from re-fits: the generated frames and the real held-out crops are
  written to near-lossless mp4s (crf 10; frames under 256 px upscaled bicubically to 256, the
  same for both) and tracked and fitted the same way (:func:`reenact.drive.analyse_source`);
  on the frames where both fits exist, AED = mean over frames of the L1 distance of the 53
  expression coefficients ``sum_k |e~_k - e_k|``; ARD = mean geodesic angle between the head
  rotations, ``arccos((tr(R~ R^T) - 1) / 2)`` in degrees; AELD = mean over frames and the 12
  eye landmarks (68-point indices 36-47) of their Euclidean distance, in pixels of the target's
  crop. "n/a" (with the reason) when a fit finds no face.
- **Sharpness**: the energy of the Laplacian of the generated frames' luma over that of the real
  frames (:func:`evaluation.self_reenact_metrics.sharpness`; 1 = as much fine detail as the real
  frames, a blurry result well under 1).
- **Grid**: the checkerboard of transposed-convolution decoders, the geometric mean over the
  period-8 lattice frequencies of the spectrum's peak over its neighbours
  (:func:`~evaluation.self_reenact_metrics.grid_score`; natural frames about 1; the real frames'
  score is the table's reference row).
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

Code: the metrics are :mod:`evaluation.self_reenact_metrics` (APD through :mod:`reenact.metrics`)
and :mod:`evaluation.lpips_metric`, the tables :mod:`evaluation.self_reenact_tables`, the heatmaps
and samples :mod:`evaluation.self_reenact_figures`; this module runs the cells (:func:`evaluate`)
and re-exports their public names. The command line is :mod:`evaluation.commands.self_reenact`.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch

from evaluation.identity import cached_reference, target_reference
from evaluation.lpips_metric import ALEXNET_FILENAME, LPIPSMetric, find_alexnet_weights
from evaluation.self_reenact_config import SelfReenactConfig  # re-exported
from evaluation.self_reenact_figures import heatmap_image, write_figures
from evaluation.self_reenact_metrics import (
    EYE_POINTS,
    apd,
    as_number,
    check_frames,
    compare_fits,
    error_map,
    expression_distance,
    eye_landmark_distance,
    grid_score,
    mouth_apd,
    pixel_distance,
    psnr,
    reference_flow,
    rotation_difference,
    sharpness,
    ssim,
    warping_error,
)
from evaluation.self_reenact_tables import (
    FLOW_LABELS,
    METRICS,
    REAL_ROW,
    first_seed,
    format_table_csv,
    format_table_md,
    metric_table,
    paired_comparison,
    seed_groups,
    write_tables,
    write_text,
)
from faceflow import io as vio
from faceflow.engine.checkpoint import checkpoint_path, load_checkpoint
from faceflow.engine.config import TrainConfig
from faceflow.engine.trainer import train
from faceflow.errors import FaceflowError
from faceflow.face.dlib_face import optional_embedder
from faceflow.face.identity import csim
from faceflow.io.rundir import RunState
from faceflow.nets.modules import resolve_device
from faceflow.runtime.provenance import portable_json, portable_path, provenance, resolve_recorded
from reenact.drive import analyse_source, drive_self
from reenact.flows import flow_channels
from reenact.preprocess import PreprocessConfig, preprocess
from reenact.run import generate_frames, load_model
from reenact.task import PRESETS, ReenactTask

__all__ = [
    "METRICS", "FLOW_LABELS", "EYE_POINTS", "ALEXNET_FILENAME",
    "pixel_distance", "apd", "mouth_apd", "psnr", "ssim", "error_map", "rotation_difference",
    "expression_distance", "eye_landmark_distance", "warping_error", "find_alexnet_weights", "LPIPSMetric",
    "compare_fits", "reference_flow", "score_frames", "metric_table", "format_table_md", "format_table_csv",
    "write_tables", "REAL_ROW", "paired_comparison", "seed_groups",
    "heatmap_image", "SelfReenactConfig", "generate_self", "evaluate", "Stopped", "refit_frames", "log_command",
    "read_cells", "safe_name",
]

FORMAT = "self-reenact/2"  # /2: one cell per seed (cells/<video>/<flow>/seed<k>)
ANALYSIS_MIN_SIZE = 256  # frames are upscaled to at least this before the re-fit (real and generated alike)


def _say(msg: str) -> None:
    print(msg, flush=True)


# ============================================================================ the pipeline

class Stopped(Exception):
    """Training stopped by a signal: the run ends, rerun to resume."""


def safe_name(name: str) -> str:
    """``name`` as a folder name: runs of other characters than letters, digits, ``._-`` become ``_``."""
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
        raise FaceflowError("give either --iterations or --max-minutes, not both")
    if cfg.iters is not None and cfg.iters < 1:
        raise FaceflowError(f"--iterations must be >= 1, got {cfg.iters}")
    if cfg.minutes is not None and not cfg.minutes > 0:
        raise FaceflowError(f"--max-minutes must be > 0, got {cfg.minutes}")
    out, names = [], {}
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FaceflowError(f"input not found: {p}")
        if p.is_dir():
            if not (p / "manifest.json").is_file():
                raise FaceflowError(f"{p} is a directory but not a prepared target (no manifest.json); give a "
                                    f"video, or prepare it with python -m reenact preprocess VIDEO {p}")
            name, is_dir = safe_name(p.resolve().name), True
        else:
            name, is_dir = safe_name(p.stem), False
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


def _train_cell(data: Path, model_dir: Path, flow: str, cell: Path, cfg: SelfReenactConfig, command, say,
                seed: int | None = None) -> dict:
    """Train (or resume, or reuse) the model of a cell; returns the training record."""
    seed = cfg.seeds[0] if seed is None else int(seed)
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
    tcfg = TrainConfig(**{**preset, "out": str(model_dir), "data": [str(data)], "seed": seed,
                          "iterations": iterations, "max_minutes": max(minutes, 0.0), "device": cfg.device})
    if cfg.minutes and minutes <= 0:
        say(f"  training budget of {cfg.minutes} min already used")
        ck = load_checkpoint(checkpoint_path(model_dir))
        summary = {"step": int(ck["step"]), "status": "time budget", "elapsed_s": float(ck.get("elapsed", 0.0))}
    else:
        say(f"  training {model_dir} ({cfg.preset} preset, {budget}, seed {seed}, device {cfg.device})")
        summary = train(task, tcfg, command=command, progress=cfg.progress)
    if summary["status"] not in ("done", "time budget"):
        raise Stopped(f"training of {model_dir} stopped ({summary['status']}) at step {summary['step']}; "
                       f"rerun the same command to resume")
    rec = {"step": int(summary["step"]), "iterations": iterations, "status": summary["status"],
           "elapsed_s": float(summary.get("elapsed_s", 0.0)), "budget": budget, "seed": seed,
           "preset": cfg.preset, "model_dir": portable_path(model_dir, cell, climb=True)}  # relative to the cell
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


def refit_frames(path: Path, frames: np.ndarray, fps: float, rewrite: bool):
    """Write ``frames`` (T, S, S, 3) as a near-lossless mp4 at ``path`` (upscaled to at least 256)
    and track and fit it (:func:`reenact.drive.analyse_source`): (analysis or None, upscale
    factor, reason when None)."""
    scale = _analysis_video(path, frames, fps, rewrite)
    try:
        an = analyse_source(path, path.parent, int(round(frames.shape[1] * scale)), say=lambda s: None)
    except FaceflowError as e:  # NoFaceError and friends: the metric is n/a
        return None, scale, str(e)
    return an, scale, ""


def _grid_or_none(frames) -> float | None:
    """:func:`grid_score`, or None for frames whose sides are not multiples of 8."""
    try:
        return grid_score(frames)
    except ValueError:
        return None


def score_frames(fake, real, *, mask, mouth, flows=None, conf=None, lpips_metric: LPIPSMetric | None = None,
                 refit_dir=None, real_refit_dir=None, fps: float = 25.0, device=None, identity=None) -> dict:
    """Every metric of generated frames against the real ones (see the module docstring).

    fake, real (T, S, S, 3) uint8; mask (T, S, S) bool face mask; mouth (T, 4) boxes; flows
    (T, S, S, C>=2) / conf (T, S, S): the reference flow between the real frames (``flows[t] =
    F_{t->t-1}``; None: temporal n/a); ``lpips_metric`` None or unavailable: LPIPS n/a;
    ``refit_dir`` / ``real_refit_dir``: where the generated / real frames are written and
    re-fitted (the real video is written once and its fit reused; None: AED/ARD/AELD n/a);
    ``identity``: (embedder, reference (128,), landmarks (T, 68, 2) where the faces are) for CSIM
    (None: CSIM n/a).
    Returns {"metrics": {key: float | None}, "temporal_real", "fit_frames", "notes"}.
    """
    fake, real = check_frames(fake, real)
    notes = []
    m = {"apd": apd(fake, real), "mapd": apd(fake, real, mask), "mouth_apd": mouth_apd(fake, real, mouth),
         "psnr": psnr(fake, real), "ssim": ssim(fake, real), "lpips": None, "sharpness": sharpness(fake, real),
         "grid": _grid_or_none(fake)}
    if lpips_metric is not None and lpips_metric.available:
        m["lpips"] = lpips_metric(fake, real)
    m["temporal"], temporal_real = None, None
    if flows is None:
        notes.append("temporal: n/a (no dis2d or faceflow3d flow cached in the data directory)")
    else:
        m["temporal"] = warping_error(fake, flows, conf, device)
        temporal_real = warping_error(real, flows, conf, device)
    m["csim"] = None
    if identity is None:
        notes.append("CSIM: n/a (no face-recognition embedder)")
    else:
        emb, ref, lmk = identity
        m["csim"] = csim(emb, fake, ref, lmk)["csim"]
    m.update(aed=None, ard=None, aeld=None)
    fit_frames = 0
    if refit_dir is None or real_refit_dir is None:
        notes.append("AED/ARD/AELD: not computed (no re-fit directory)")
    else:
        real_an, scale, why_r = refit_frames(Path(real_refit_dir) / "real.mp4", real, fps, False)
        gen_an, _, why_g = refit_frames(Path(refit_dir) / "generated.mp4", fake, fps, True)
        if real_an is None or gen_an is None:
            which = "real" if real_an is None else "generated"
            notes.append(f"AED/ARD/AELD: n/a: the re-fit of the {which} frames failed: {why_r or why_g}")
        else:
            c = compare_fits(gen_an, real_an, scale)
            fit_frames = c.pop("frames")
            m.update(c)
            if fit_frames < len(fake):
                notes.append(f"AED/ARD/AELD on the {fit_frames} of {len(fake)} frames fitted in both videos")
    return {"metrics": {k: as_number(v) for k, v in m.items()}, "temporal_real": as_number(temporal_real),
            "grid_real": as_number(_grid_or_none(real)),
            "fit_frames": fit_frames, "notes": notes}


def _score_cell(name: str, flow: str, data: Path, model_dir: Path, cell: Path, train_rec: dict,
                lp: LPIPSMetric, dev: torch.device, say, command: str | None = None, seed: int = 0,
                identity=None) -> dict:
    """Self-reenact the held-out frames of a trained cell, score them (:func:`score_frames`) and
    write ``generated.mp4``, ``error_map.npy`` and, last, ``metrics.json`` into ``cell``; returns
    the metrics.json dict."""
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
                     refit_dir=cell / "analysis", real_refit_dir=cell.parents[1] / "real", fps=fps, device=dev,
                     identity=None if identity is None else
                     (*identity, np.asarray(np.load(d / "lmk68.npy", mmap_mode="r")[lo:hi])))
    rec = {"format": FORMAT, "video": name, "method": flow, "seed": int(seed), **s, "frames": int(len(fake)),
           "test_range": [lo, hi],
           "reference_flow": ref, "lpips_reason": "" if lp.available else lp.reason,
           "lpips_weights": Path(lp.weights_path).name if lp.available else None, "train": train_rec,
           # relative to this file's directory (the cell): faceflow.runtime.provenance.resolve_recorded
           "data_dir": portable_path(data, cell, climb=True), "model_dir": portable_path(model_dir, cell, climb=True),
           "generation_fps": gen_fps,
           "per_frame_apd": [float(x) for x in pixel_distance(fake, real).mean((1, 2))],
           "seconds": time.perf_counter() - t0}
    out = cell.parents[3]  # OUT/cells/<video>/<flow>/seed<k>
    rec["provenance"] = provenance(command, device=dev, base=out,
                                   weights={"generator": checkpoint_path(model_dir), "lpips_alexnet": lp.weights_path
                                            if lp.available else None})
    rec = portable_json(rec, cell)
    vio.save_json(cell / "metrics.json", rec)  # written last: the cell is finished
    return rec


def read_cells(out: Path, pattern: str, fmt: str) -> list[dict]:
    """The ``metrics.json`` records of format ``fmt`` under ``OUT/cells`` matching ``pattern`` (a
    glob), in path order; unreadable ones are skipped (a cell being written is not finished)."""
    recs = []
    for p in sorted((out / "cells").glob(pattern)):
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if r.get("format") == fmt:
            recs.append(r)
    return recs


def _read_cells(out: Path) -> dict:
    """{(video, method, seed): metrics.json dict} of every finished cell in OUT (this run's and earlier ones')."""
    return {(r["video"], r["method"], int(r["seed"])): r for r in read_cells(out, "*/*/seed*/metrics.json", FORMAT)}


def log_command(out: Path, command: str, cfg, dev: torch.device) -> None:
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
    write_text(path, old + "\n".join(lines) + "\n")


def _check_out(out: Path, cfg: SelfReenactConfig, names: list[str]) -> list[str]:
    """OUT/config.json: the fixed options must match earlier runs'; returns the video order (earlier
    runs' videos first, then the new ``names``)."""
    fixed = cfg.fixed()
    state = RunState(out, {"format": FORMAT, "options": fixed, "videos": []}, match=("format", "options"),
                     name="config.json", refuse=lambda prev: _other_run(out, prev, fixed))
    order = list(state.data.get("videos", []))
    order += [n for n in names if n not in order]
    state.data["videos"] = order
    state.save()
    return order


def _other_run(out: Path, prev: dict, fixed: dict) -> str:
    """Why OUT/config.json ``prev`` refuses this run (another format, or other fixed options)."""
    if prev.get("format") != FORMAT and str(prev.get("format", "")).startswith("self-reenact/"):
        return (f"{out} holds an evaluation in the older layout {prev.get('format')!r} (one model per video and flow, "
                f"no seeds); use another --out (its cells would all be trained again)")
    if prev.get("format") != FORMAT:
        return f"{out / 'config.json'}: not a self-reenactment evaluation ({prev.get('format')!r})"
    old = prev.get("options") or {}
    what = ", ".join(f"{k}: {old.get(k)} there, {v} now" for k, v in fixed.items() if old.get(k) != v)
    return (f"{out} holds results made with other options ({what}); use another --out or "
            f"the same options so the cells stay comparable")


def evaluate(inputs, out, cfg: SelfReenactConfig | None = None, *, say=_say, command: str | None = None) -> dict:
    """Run (or resume) the evaluation of ``inputs`` (videos or prepared data directories) into
    ``out``; returns {"records": {(video, method, seed): metrics.json dict}, "tables": {metric:
    rows}, "computed": [(video, method, seed) cells computed by this call]}."""
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
    log_command(out, command, cfg, dev)
    computed = _run_cells(resolved, out, cfg, dev, command, say)
    records = _read_cells(out)
    videos = order + sorted({k[0] for k in records} - set(order))
    methods = [m for m in ("faceflow3d", "dis2d", "none") if any(k[1] == m for k in records)]
    methods += sorted({k[1] for k in records} - set(methods))
    tables = write_tables(out, records, videos, methods)
    write_figures(out, first_seed(records), videos, methods, cfg.sample_frames, say)
    say(f"tables: {out / 'table.md'} (and tables/)")
    return {"records": records, "tables": tables, "computed": computed}


def _run_cells(resolved: list[tuple[str, Path, bool]], out: Path, cfg: SelfReenactConfig, dev: torch.device,
               command: str, say) -> list[tuple[str, str]]:
    """Prepare, train and score every cell (video, flow, seed) without a ``metrics.json``, seed by
    seed (a first full table comes before the extra seeds); returns the cells computed."""
    lp = None
    embedder, refs = optional_embedder(say), {}
    computed = []
    n_cells = len(resolved) * len(cfg.flows) * len(cfg.seeds)
    k = 0
    data_dirs: dict[str, Path] = {}
    for seed in cfg.seeds:
        for name, path, is_dir in resolved:
            for flow in cfg.flows:
                k += 1
                cell = out / "cells" / name / flow / f"seed{seed}"
                if (cell / "metrics.json").is_file():
                    say(f"[{k}/{n_cells}] {name} / {flow} / seed {seed}: finished earlier ({cell / 'metrics.json'})")
                    continue
                if name not in data_dirs:
                    data_dirs[name] = _prepare(name, path, is_dir, out, cfg, say)
                data = data_dirs[name]
                say(f"[{k}/{n_cells}] {name} / {flow} / seed {seed}")
                cell.mkdir(parents=True, exist_ok=True)
                model_dir = out / "models" / name / flow / f"seed{seed}"
                rec = _train_cell(data, model_dir, flow, cell, cfg, command, say, seed=seed)
                if lp is None:
                    lp = LPIPSMetric(cfg.lpips_weights, dev)
                    if not lp.available:
                        say(f"note: {lp.reason}")
                ref = None if embedder is None else cached_reference(
                    refs, name, lambda: target_reference(embedder, data), say)
                r = _score_cell(name, flow, data, model_dir, cell, rec, lp, dev, say, command=command, seed=seed,
                                identity=None if ref is None else (embedder, ref))
                say(f"  APD {r['metrics']['apd']:.2f}, MAPD {r['metrics']['mapd']:.2f} -> {cell / 'metrics.json'}")
                computed.append((name, flow, seed))
    return computed


# ============================================================================ CLI

if __name__ == "__main__":  # python -m evaluation.self_reenact: the command of evaluation/commands/self_reenact.py
    from evaluation.commands.self_reenact import main

    sys.exit(main())
