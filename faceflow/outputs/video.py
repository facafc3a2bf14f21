"""The 3D facial flow of a whole video: ``faceflow flow VIDEO --out DIR``.

Four resumable stages fill the output directory (``state.json`` records what is finished; a rerun
with the same video and options resumes, other options are refused unless ``--overwrite``):

1. **track**: the face followed over the clip and its 68 landmarks smoothed over time
   (:func:`faceflow.face.tracking.track_video` + :func:`~faceflow.face.tracking.smooth_track`,
   thesis Sec. 3.2), not detected per frame: the registration does not jitter;
2. **flows**: for every pair (t, t + gap), both frames registered with frame t's similarity and
   DeepFaceFlow run in batches (:meth:`faceflow.estimate.FaceFlow.estimate_registered`); the
   arrays are memory-mapped under hidden partial names and renamed when complete;
3. **summary**: ``summary.csv`` (one row per pair) and the clip's colour scale;
4. **video**: ``flow.mp4`` (:mod:`faceflow.outputs.video_frames`), then ``manifest.json`` last.

Arrays (``np.load(..., mmap_mode='r')``), P pairs, in the 224x224 **registered frame of each
pair's first frame** (the template of :mod:`faceflow.face.registration`), in template pixels
(x right, y down, z depth; eq. (2) of DeepFaceFlow, p2 - p1):

- ``flow3d.npy`` (P, 224, 224, 3) float16, 0 off the face; ``mask.npy`` (P, 224, 224) bool;
- ``head_flow3d.npy`` (P, 224, 224, 3) float16 for decomposed weights (the rigid head-motion
  part; the expression part is ``flow3d - head_flow3d``);
- ``transforms.npy`` (P, 2, 3) float64: the similarity image -> template of frame t, [s R | t]
  (a flow vector f in template pixels is ``R^T f / s`` image pixels, s = sqrt(|det A|));
  :func:`faceflow.face.registration.flow_to_image` maps a flow onto the frame's pixel grid;
- ``pairs.npy`` (P, 2) int64: the frame numbers (t, t + gap) in the video.
"""
from __future__ import annotations

import csv
import time
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from faceflow import io as vio
from faceflow.errors import FaceflowError, MediaError
from faceflow.estimate import FaceFlow
from faceflow.face.landmarks import MediapipeDetector
from faceflow.face.pair_check import landmark_shift
from faceflow.face.registration import TEMPLATE_SIZE, register_landmarks, warp_image
from faceflow.face.tracking import TrackConfig, smooth_track, track_video
from faceflow.geometry.similarity import Similarity
from faceflow.io.files import check_out_dir
from faceflow.io.rundir import RunState
from faceflow.outputs.config import VideoFlowConfig
from faceflow.outputs.video_frames import render_video
from faceflow.render.flowcolor import nice_scale
from faceflow.runtime.provenance import file_record, portable_json, provenance
from faceflow.runtime.stopwatch import Stopwatch

__all__ = ["video_flow", "with_status", "clip_scale", "write_summary", "ARRAYS", "SUMMARY_FIELDS"]

STATE_VERSION = 1
ARRAYS = ("flow3d", "mask", "head_flow3d", "transforms", "pairs")
SUMMARY_FIELDS = ("pair", "frame1", "frame2", "time_s", "status", "face_pixels", "mean_px", "p50_px", "p95_px",
                  "p99_px", "mean_abs_z_px", "head_mean_px", "expression_mean_px", "shift_iod")


def _partial(out: Path, name: str) -> Path:
    return out / f".{name}.partial.npy"


def _range(info, cfg: VideoFlowConfig) -> int:
    """The number of frames to read from ``cfg.start``: the whole rest of the clip or ``max_frames``."""
    total = int(info.num_frames)
    if cfg.start >= total:
        raise MediaError(f"--start {cfg.start} is past the end of the video ({total} frames)")
    n = total - cfg.start if cfg.max_frames is None else min(cfg.max_frames, total - cfg.start)
    if n <= cfg.gap:
        raise MediaError(f"{n} frame(s) from frame {cfg.start} make no pair (t, t + {cfg.gap}); "
                         "lower --gap or read more frames")
    return n


# ----------------------------------------------------------------------------- 1. track
def _stage_track(video: Path, n: int, cfg: VideoFlowConfig, out: Path, state: RunState, say) -> np.ndarray:
    """(N, 68, 2) float32 smoothed landmarks of the followed face, NaN where it is lost."""
    st = state.section("stages", "track")
    if st.get("done") and (out / "landmarks.npy").is_file():
        return np.load(out / "landmarks.npy")
    say(f"tracking the face over {n} frames ...")
    t0 = time.perf_counter()
    with MediapipeDetector(static_image_mode=False) as det:
        track = track_video(vio.read_frames(video, start=cfg.start, max_frames=n), det, TrackConfig(),
                            progress=True, total=n)
    track = smooth_track(track)
    lmk = track.lmk68.astype(np.float32)
    vio.save_npy(out / "landmarks.npy", lmk)
    st.update(done=True, frames=len(lmk), segments=[list(s) for s in track.segments],
              seconds=round(time.perf_counter() - t0, 2),
              status={k: int(np.sum(np.asarray(track.status) == k)) for k in sorted(set(track.status))})
    state.save(force=True)
    return lmk


# ----------------------------------------------------------------------------- 2. flows
def _open_arrays(out: Path, P: int, decomposed: bool, resume: bool) -> dict:
    S = TEMPLATE_SIZE
    shapes = {"flow3d": ((P, S, S, 3), np.float16), "mask": ((P, S, S), np.bool_),
              "transforms": ((P, 2, 3), np.float64), "pairs": ((P, 2), np.int64)}
    if decomposed:
        shapes["head_flow3d"] = ((P, S, S, 3), np.float16)
    arrays = {}
    for name, (shape, dtype) in shapes.items():
        path = _partial(out, name)
        if resume:
            if not path.is_file():
                raise FaceflowError(f"{out} lost its unfinished {path.name} (resuming at a pair after 0); rerun with "
                                    "--overwrite to start afresh")
            arrays[name] = np.lib.format.open_memmap(path, mode="r+")
            if arrays[name].shape != shape or arrays[name].dtype != dtype:
                raise FaceflowError(f"{path} does not match this run; rerun with --overwrite")
        else:
            arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    return arrays


def _frames_from(video: Path, first: int, count: int):
    """Frames ``first`` .. ``first + count - 1`` of the video, numbered: yields (index, frame)."""
    for k, frame in enumerate(vio.read_frames(video, start=first, max_frames=count)):
        yield first + k, frame


def _pair_stats(flow: np.ndarray, mask: np.ndarray, head: np.ndarray | None, scale: float) -> dict:
    """Summary numbers of one pair in image pixels (the template flow divided by the registration scale)."""
    if not mask.any():
        return {"face_pixels": 0}
    f = flow[mask].astype(np.float32) / scale
    mag = np.linalg.norm(f, axis=-1)
    row = {"face_pixels": int(mask.sum()), "mean_px": float(mag.mean()), "p50_px": float(np.percentile(mag, 50)),
           "p95_px": float(np.percentile(mag, 95)), "p99_px": float(np.percentile(mag, 99)),
           "mean_abs_z_px": float(np.abs(f[:, 2]).mean())}
    if head is not None:
        h = head[mask].astype(np.float32) / scale
        row["head_mean_px"] = float(np.linalg.norm(h, axis=-1).mean())
        row["expression_mean_px"] = float(np.linalg.norm(f - h, axis=-1).mean())
    return row


def _run_batch(ff: FaceFlow, frames: dict, lmk: np.ndarray, batch: list[int], gap: int, start: int) -> list[dict]:
    """The flows of the pairs (t, t + gap), t in ``batch`` (frame numbers counted from ``start``);
    pairs without a tracked face in both frames get status 'no_face' and no flow."""
    S = TEMPLATE_SIZE
    ok = [t for t in batch if np.isfinite(lmk[t]).all() and np.isfinite(lmk[t + gap]).all()]
    rows = {t: {"status": "no_face", "transform": None} for t in batch}
    if ok:
        T = [register_landmarks(lmk[t], S) for t in ok]
        r1 = np.stack([warp_image(frames[start + t], T[j], S, border="border") for j, t in enumerate(ok)])
        r2 = np.stack([warp_image(frames[start + t + gap], T[j], S, border="border") for j, t in enumerate(ok)])
        to_t = lambda r: torch.from_numpy(r).permute(0, 3, 1, 2).float().div(255)
        res = ff.estimate_registered(to_t(r1), to_t(r2))
        for j, t in enumerate(ok):
            head = res.get("head_flow")
            rows[t] = {"status": "ok", "transform": T[j], "flow": res["flow"][j].cpu().numpy(),
                       "mask": res["mask"][j].cpu().numpy(),
                       "head": None if head is None else head[j].cpu().numpy(),
                       "shift_iod": landmark_shift(lmk[t], lmk[t + gap], T[j])}
    return [rows[t] for t in batch]


def _finish_arrays(out: Path) -> None:
    """Rename the complete partial arrays to their final names (also finishing an interrupted rename)."""
    for name in ARRAYS:
        if _partial(out, name).is_file():
            _partial(out, name).replace(out / f"{name}.npy")


def _flows_row(t: int, r: dict, cfg: VideoFlowConfig, fps: float) -> dict:
    row = {"pair": t, "frame1": cfg.start + t, "frame2": cfg.start + t + cfg.gap,
           "time_s": round((cfg.start + t) / fps, 4), "status": r["status"]}
    if r["status"] == "ok":
        row.update(_pair_stats(r["flow"], r["mask"], r["head"], r["transform"].scale),
                   shift_iod=round(r["shift_iod"], 4))
    return row


def _store(arrays: dict, t: int, r: dict, cfg: VideoFlowConfig) -> None:
    arrays["pairs"][t] = (cfg.start + t, cfg.start + t + cfg.gap)
    arrays["transforms"][t] = r["transform"].matrix if r["transform"] is not None else np.nan
    if r["status"] == "ok":
        arrays["flow3d"][t] = r["flow"].astype(np.float16)
        arrays["mask"][t] = r["mask"]
        if "head_flow3d" in arrays:
            arrays["head_flow3d"][t] = r["head"].astype(np.float16)


def _stage_flows(ff: FaceFlow, video: Path, lmk: np.ndarray, cfg: VideoFlowConfig, out: Path, state: RunState,
                 fps: float, say) -> list[dict]:
    """Fill the flow arrays batch by batch (resuming after the last finished batch); returns the
    summary rows (status 'ok' or 'no_face'; 'fast' is decided later, :func:`with_status`)."""
    st = state.section("stages", "flows")
    N, gap = len(lmk), cfg.gap
    P = N - gap
    if P < 1:
        raise MediaError(f"{video}: only {N} frame(s) could be read from frame {cfg.start}: no pair (t, t + {gap})")
    if st.get("done"):
        _finish_arrays(out)
        return st["rows"]
    done = int(st.get("pairs_done", 0))
    rows = list(st.get("rows", []))[:done]
    arrays = _open_arrays(out, P, bool(getattr(ff.dffnet, "decompose", False)), resume=done > 0)
    say(f"3D flow of {P} pairs (t, t + {gap}) in batches of {cfg.batch_size}"
        + (f", resuming at pair {done}" if done else "") + " ...")
    frames: OrderedDict[int, np.ndarray] = OrderedDict()
    source = _frames_from(video, cfg.start + done, N - done)
    t0, before = time.perf_counter(), float(st.get("seconds", 0.0))
    parts = Stopwatch(st.get("split", {}))  # the seconds of each part, summed over sessions
    bar = tqdm(total=P, initial=done, unit="pair", desc="flow", dynamic_ncols=True)
    try:
        for first in range(done, P, cfg.batch_size):
            batch = list(range(first, min(first + cfg.batch_size, P)))
            while not frames or next(reversed(frames)) < cfg.start + batch[-1] + gap:
                k, f = next(source, (None, None))
                parts.lap("decode")
                if k is None:
                    raise MediaError(f"{video}: the video ended before frame {cfg.start + batch[-1] + gap}")
                frames[k] = f
            results = _run_batch(ff, frames, lmk, batch, gap, cfg.start)
            parts.lap("register_and_networks")
            for t, r in zip(batch, results):
                _store(arrays, t, r, cfg)
                rows.append(_flows_row(t, r, cfg, fps))
            while frames and next(iter(frames)) < cfg.start + batch[-1] + 1:
                frames.popitem(last=False)
            for a in arrays.values():
                a.flush()
            parts.lap("write_and_stats")
            # recorded only once the arrays hold the batch: a resumed run starts after it
            st.update(pairs_done=batch[-1] + 1, rows=rows, split=parts.rounded(),
                      seconds=round(before + time.perf_counter() - t0, 2))
            state.save()
            bar.update(len(batch))
    except BaseException:
        state.save(force=True)  # the last finished batch, whatever the throttle
        raise
    finally:
        bar.close()
        for a in arrays.values():
            a.flush()
        arrays.clear()  # the memmaps are closed before their files are renamed
    st.update(done=True, pairs_done=P, rows=rows)
    state.save(force=True)  # done first: a rename cut short is finished by the next run
    _finish_arrays(out)
    return rows


def with_status(rows: list[dict], max_shift: float) -> list[dict]:
    """The rows with status 'fast' where the faces' landmarks moved more than ``max_shift``
    inter-ocular distances (decided here, so a rerun with another --max-shift applies it)."""
    return [{**r, "status": "fast"} if r["status"] in ("ok", "fast") and r.get("shift_iod", 0.0) > max_shift
            else {**r, "status": "ok" if r["status"] == "fast" else r["status"]} for r in rows]


# ----------------------------------------------------------------------------- 3. summary
def clip_scale(out: Path, rows: list[dict], max_flow: float | None, samples: int = 64) -> float:
    """The clip's colour scale in image pixels: ``max_flow``, or the 99th percentile flow
    magnitude over (up to ``samples`` evenly spaced) pairs with a face, rounded up (1, 2, 2.5, 5 x 10^k)."""
    if max_flow:
        return float(max_flow)
    good = [r["pair"] for r in rows if r.get("face_pixels")]
    if not good:
        return 1.0
    pick = [good[i] for i in np.unique(np.linspace(0, len(good) - 1, min(samples, len(good))).round().astype(int))]
    flow = np.load(out / "flow3d.npy", mmap_mode="r")
    mask = np.load(out / "mask.npy", mmap_mode="r")
    tr = np.load(out / "transforms.npy", mmap_mode="r")
    mags = [np.linalg.norm(flow[p][mask[p]].astype(np.float32), axis=-1) / Similarity(tr[p]).scale for p in pick]
    return nice_scale(float(np.percentile(np.concatenate(mags), 99)))


def write_summary(out: Path, rows: list[dict]) -> None:
    """``summary.csv``: one row per pair (:data:`SUMMARY_FIELDS`; magnitudes in image pixels)."""
    tmp = out / ".summary.partial.csv"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, SUMMARY_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    tmp.replace(out / "summary.csv")


def _totals(rows: list[dict]) -> dict:
    ok = [r for r in rows if r.get("face_pixels")]
    col = lambda k: [r[k] for r in ok if k in r]
    out = {"pairs": len(rows), "pairs_with_face": len(ok),
           "status": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})}}
    for k in ("mean_px", "p95_px", "mean_abs_z_px", "head_mean_px", "expression_mean_px", "shift_iod"):
        if col(k):
            out[f"{k}_clip_mean"] = round(float(np.mean(col(k))), 4)
    return out


# ----------------------------------------------------------------------------- the run
def _signature(video: Path, cfg: VideoFlowConfig, ff: FaceFlow) -> dict:
    st = video.stat()
    weights = {k: str(v) for k, v in ff.weights_files.items()}
    return {"video": str(video.resolve()), "size": st.st_size, "mtime": int(st.st_mtime), **cfg.signature(),
            "weights": weights}


def video_flow(ff: FaceFlow, video: str | Path, out: str | Path, cfg: VideoFlowConfig | None = None, *,
               overwrite: bool = False, say=print) -> dict:
    """Run (or resume) the whole-video flow of ``video`` into ``out`` (see the module docstring);
    returns the manifest. Raises :class:`~faceflow.errors.MediaError` for a missing, corrupt or
    too short video and :class:`~faceflow.face.landmarks.NoFaceError` when no face can be followed."""
    cfg = cfg or VideoFlowConfig()
    video = Path(video)
    info = vio.probe(video, exact=True)
    n = _range(info, cfg)
    out = Path(check_out_dir(out))
    state = RunState(out, {"version": STATE_VERSION, "signature": _signature(video, cfg, ff), "stages": {}},
                     overwrite=overwrite,
                     outputs=("state.json", "manifest.json", "landmarks.npy", "summary.csv", "flow.mp4")
                     + tuple(f"{a}.npy" for a in ARRAYS) + tuple(f".{a}.partial.npy" for a in ARRAYS),
                     refuse=lambda old: f"{out} holds the flow of another video or other options; pass --overwrite "
                                        "to replace it or choose another --out", every_s=5.0)
    (out / "manifest.json").unlink(missing_ok=True)
    lmk = _stage_track(video, n, cfg, out, state, say)
    rows = with_status(_stage_flows(ff, video, lmk, cfg, out, state, info.fps, say), cfg.max_shift)
    write_summary(out, rows)
    scale = clip_scale(out, rows, cfg.max_flow)
    st = state.section("stages", "video")
    look = {"scale": scale, "min_flow": cfg.min_flow, "display_height": cfg.display_height, "audio": cfg.audio,
            "max_shift": cfg.max_shift}  # what the video shows: another value redraws it
    if cfg.video and not (st.get("done") and st.get("look") == look and (out / "flow.mp4").is_file()):
        say(f"writing flow.mp4 (colour scale 0 .. {scale:g} px) ...")
        t0 = time.perf_counter()
        render_video(out, video, rows, cfg, scale, info.fps, audio=cfg.audio and info.has_audio)
        st.update(done=True, look=look, seconds=round(time.perf_counter() - t0, 2))
        state.save(force=True)
    elif not cfg.video:
        (out / "flow.mp4").unlink(missing_ok=True)  # not this run's: an earlier run's video would mislead
        state.data["stages"].pop("video", None)
    stages = state.data["stages"]
    manifest = {"video": file_record(video, out), "fps": info.fps, "frames_read": len(lmk),
                "size": [info.width, info.height], "config": asdict(cfg), "colour_scale_px": scale,
                "grid": "registered 224x224 frame of each pair's first frame (template pixels); see transforms.npy",
                "files": sorted(p.name for p in out.iterdir() if not p.name.startswith(".")
                                and p.name not in ("manifest.json", "state.json")),
                "summary": _totals(rows), "decomposed": bool(getattr(ff.dffnet, "decompose", False)),
                "stage_seconds": {k: v.get("seconds") for k, v in stages.items()},
                "provenance": provenance(weights=ff.weights_files, device=ff.device, base=out)}
    vio.save_json(out / "manifest.json", portable_json(manifest, out), indent=2)
    return manifest
