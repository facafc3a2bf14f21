"""Prepare a target video for person-specific training: ``python -m reenact preprocess VIDEO DATA_DIR``.

Head2Head++ (thesis Sec. 7.2) conditions its renderer on NMFC images of a 3D morphable face and
on eye sketches. This command makes them, with everything else training and evaluation need:

1. ``annotation/``: the annotation tool (:mod:`faceflow.annotate.pipeline`) on the video: a fixed crop
   (``--size``, default 256), landmarks, one identity fitted over the whole video with per-frame
   expressions and cameras, the NMFC (eq. (7.2)) and eye-sketch images, masks, pupils.
2. ``mouth.npy``: (N, 4) int64 mouth boxes (x0, y0, x1, y1) in crop pixels, side 72 at 256
   (scaled with the crop), centred on the mouth landmarks (the mouth discriminator's crops).
3. ``flows/<provider>.npy`` (N, S, S, C) float16 and ``flows/<provider>_conf.npy`` (N, S, S)
   float16: the flow between consecutive REAL frames from each selected provider
   (:mod:`reenact.flows`; ``flows[t] = F_{t->t-1}``), computed once and cached.
4. ``split.json``: the self-reenactment protocol: the first two thirds of the kept frames train,
   the last third is held out for testing.
5. ``nmfc.mp4``, ``eyes.mp4``: the conditioning as videos (for looking at), at the video's fps.
6. ``manifest.json``, written last: a directory with a manifest is complete.

Rerunning resumes (the annotation from its ``state.json``; finished flows, boxes and videos are
kept). Asking for another flow provider later only computes that one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from faceflow import io as vio
from faceflow.annotate.pipeline import AnnotateConfig, annotate
from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.estimate import DFFNET_FILE, MESHREG_FILE, WEIGHTS_DIR
from faceflow.nets.modules import resolve_device
from faceflow.runtime.provenance import file_record, portable_json, portable_path, provenance, weights_records
from reenact.conditioning import mouth_boxes
from reenact.flows import flow_channels, make_provider
from reenact.presets import PreprocessConfig

__all__ = ["PreprocessConfig", "preprocess", "split_frames", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "reenact-data/1"
TRAIN_FRACTION = 2.0 / 3.0  # the paper's self-reenactment protocol


def split_frames(n: int, fraction: float = TRAIN_FRACTION) -> dict:
    """The train/test split of ``n`` kept frames: ``{"train": [0, k], "test": [k, n]}`` with
    ``k = round(fraction * n)`` (half-open ranges of kept-frame indices)."""
    if n < 2:
        raise FaceflowError(f"need at least 2 usable frames to split into train and test, got {n}")
    k = min(max(int(round(fraction * n)), 1), n - 1)
    return {"train": [0, k], "test": [k, n], "rule": f"first {fraction:.4g} of the kept frames train, the rest test"}


def _say(msg: str) -> None:
    print(msg, flush=True)


def preprocess(video: str | Path, data_dir: str | Path, cfg: PreprocessConfig | None = None, *,
               overwrite: bool = False, say=_say) -> dict:
    """Run (or resume) preprocessing of ``video`` into ``data_dir``; returns the manifest."""
    cfg = cfg or PreprocessConfig()
    data_dir = _prepare(data_dir, cfg)
    t0 = time.perf_counter()
    say(f"[1/4] annotating {video}")
    ann = _annotate(video, data_dir, cfg, overwrite, say)
    d = data_dir / "annotation" / "data"
    N = int(ann["frames_kept"])
    segment = np.load(d / "segment.npy")
    say("[2/4] mouth boxes and split")
    lmk = np.load(d / "lmk68.npy")
    split = _mouth_and_split(data_dir, lmk, N, cfg)
    flow_info = _flows(data_dir, d, lmk, segment, N, cfg, overwrite, say)
    videos = _videos(data_dir, d, float(ann["fps"]), cfg, overwrite, say)
    manifest = _manifest(video, data_dir, ann, cfg, N, split, flow_info, videos, t0)
    vio.save_json(data_dir / "manifest.json", manifest)
    return manifest


def _prepare(data_dir: str | Path, cfg: PreprocessConfig) -> Path:
    """Check the options, create ``data_dir`` and remove its manifest (incomplete until rewritten)."""

    for name in cfg.flows:
        flow_channels(name)  # unknown provider -> FaceflowError before any work
    if cfg.flow_weights is not None and "faceflow3d" in cfg.flows:  # missing weights: before the annotation stage
        for f in _flow_weight_files("faceflow3d", cfg.flow_weights).values():
            if not Path(f).is_file():
                raise AssetNotFoundError(f"--flow-weights {cfg.flow_weights}: {Path(f).name} not found there (the "
                                         "directory must hold DeepFaceFlow's meshreg.pt and dffnet.pt)")
    resolve_device(cfg.device)  # an unknown device: before any work
    if not 32 <= cfg.size <= 1024 or cfg.size % 8:
        raise FaceflowError(f"--size must be a multiple of 8 between 32 and 1024, got {cfg.size}")
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise FaceflowError(f"{data_dir} exists and is not a directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    return data_dir


def _annotate(video, data_dir: Path, cfg: PreprocessConfig, overwrite: bool, say) -> dict:
    """Step 1: the annotation tool on the video into ``data_dir/annotation``; returns its manifest."""

    acfg = AnnotateConfig(size=cfg.size, max_frames=cfg.max_frames, pairs=(), previews=2, detector=cfg.detector)
    return annotate(video, data_dir / "annotation", acfg, overwrite=overwrite, say=lambda m: say("  " + m))


def _mouth_and_split(data_dir: Path, lmk: np.ndarray, N: int, cfg: PreprocessConfig) -> dict:
    """Steps 2 and 4: ``mouth.npy`` from the crop landmarks lmk (N, 68, 2) and ``split.json``;
    returns the split."""

    vio.save_npy(data_dir / "mouth.npy", mouth_boxes(lmk, cfg.size))
    split = split_frames(N)
    vio.save_json(data_dir / "split.json", split)
    return split


def _flows(data_dir: Path, d: Path, lmk: np.ndarray, segment: np.ndarray, N: int, cfg: PreprocessConfig,
           overwrite: bool, say) -> dict:
    """Step 3: ``flows/<provider>.npy`` and ``_conf.npy`` of every provider in ``cfg.flows`` (cached
    ones kept), from the annotation's crops in ``d``; returns {provider: its record}, including the
    providers of earlier runs."""

    flows_dir = data_dir / "flows"
    flows_dir.mkdir(exist_ok=True)
    crops = np.load(d / "crops.npy", mmap_mode="r")
    flow_info = {}
    for name in cfg.flows:
        f_path, c_path = flows_dir / f"{name}.npy", flows_dir / f"{name}_conf.npy"
        meta_path = flows_dir / f"{name}.json"
        if not overwrite and f_path.exists() and c_path.exists() and meta_path.exists():
            flow_info[name] = json.loads(meta_path.read_text())
            say(f"[3/4] flow {name}: cached")
            continue
        say(f"[3/4] flow {name} between {N} consecutive frames")
        t1 = time.perf_counter()
        prov = make_provider(name, weights=cfg.flow_weights, device=cfg.device)
        flows, conf = prov.compute(crops, segment, lmk, tau=cfg.conf_tau)
        vio.save_npy(f_path, flows)
        vio.save_npy(c_path, conf)
        pairs = max(N - len(np.unique(segment)), 0)
        info = {"provider": name, "channels": prov.channels, "description": prov.description,
                "convention": "flows[t] = F_{t->t-1} in crop pixels (x right, y down[, z depth]); 0 at segment starts",
                "confidence": f"||I_t - W(I_t-1, F)||_2 < {cfg.conf_tau} on RGB in [0, 1]",
                "mean_confidence": float(conf.astype(np.float32).mean()) if N else 0.0,
                "pairs": pairs, "seconds": time.perf_counter() - t1,
                "weights": weights_records(_flow_weight_files(name, cfg.flow_weights))}
        vio.save_json(meta_path, info)  # written last: the flow is complete
        flow_info[name] = info
    for p in sorted(flows_dir.glob("*.json")):  # providers computed by earlier runs stay listed
        flow_info.setdefault(p.stem, json.loads(p.read_text()))
    return flow_info


def _videos(data_dir: Path, d: Path, fps: float, cfg: PreprocessConfig, overwrite: bool, say) -> dict:
    """Step 5: ``nmfc.mp4`` and ``eyes.mp4`` (when ``cfg.videos``); returns {name: file name}."""
    videos = {}
    if cfg.videos:
        say("[4/4] conditioning videos")
        for name in ("nmfc", "eyes"):
            out = data_dir / f"{name}.mp4"
            if overwrite or not out.exists():
                vio.write_video(out, np.load(d / f"{name}.npy", mmap_mode="r"), fps=fps)
            videos[name] = out.name
    return videos


def _manifest(video, data_dir: Path, ann: dict, cfg: PreprocessConfig, N: int, split: dict, flow_info: dict,
              videos: dict, t0: float) -> dict:
    """Step 6: the manifest (not yet written), with the provenance of the fit and the flows and the
    seconds since ``t0``."""
    used = {}
    for name in flow_info:
        used.update(_flow_weight_files(name, cfg.flow_weights))
    prov = provenance(weights=used, device=_device_name(cfg.device), base=data_dir)
    prov["weights"] = {**(ann.get("provenance") or {}).get("weights", {}), **prov["weights"]}  # + the fit's model
    return {
        # source: the video relative to this directory (resolve_recorded), else its name; source_file: its
        # name, size and sha256
        "format": MANIFEST_FORMAT, "complete": True, "source": portable_path(video, data_dir, climb=True),
        "source_file": file_record(video, data_dir), "fps": ann["fps"],
        "size": cfg.size, "frames": N, "segments": ann["segments"], "split": split,
        "flows": flow_info, "videos": videos, "annotation": "annotation/manifest.json",
        "fit": ann["fit"], "options": portable_json(json.loads(json.dumps(asdict(cfg))), data_dir),
        "layout": {"annotation/": "faceflow annotate output (crops, nmfc, eyes, masks, fits: see its manifest)",
                   "mouth.npy": "(N, 4) int64 mouth boxes x0, y0, x1, y1 in crop pixels",
                   "flows/<provider>.npy": "(N, S, S, C) float16 F_{t->t-1}",
                   "flows/<provider>_conf.npy": "(N, S, S) float16 flow confidence",
                   "split.json": "train / test kept-frame ranges"},
        "seconds": time.perf_counter() - t0, "provenance": prov,
    }


def _flow_weight_files(provider: str, weights_dir: str | None) -> dict:
    """{role: path} of the weights files a flow provider uses (DeepFaceFlow's for faceflow3d)."""
    if provider != "faceflow3d":
        return {}

    root = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    return {"meshreg": root / MESHREG_FILE, "dffnet": root / DFFNET_FILE}


def _device_name(device: str) -> str:
    """The torch device ``device`` ('auto', 'cpu', 'cuda', ...) resolves to, for the record."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
