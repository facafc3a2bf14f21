"""The driving side of reenactment: per-frame conditioning for a target's model (Head2Head++,
Koujan's thesis Sec. 7.2.3).

A reenactment model is trained on one target's annotation (``python -m faceflow annotate``)
and driven by conditioning images X = [NMFC | eye sketch] in the target's crop:

- **self** (:func:`drive_self`): the target's own stored conditioning of held-out frames, with
  the real crops as ground truth;
- **face** (:func:`drive_from_source`, ``mode="face"``): a source video's expressions on the
  target's identity, cameras and eye sketches (the target's frames from its test part on; the
  sketches drawn from its stored landmarks and pupils);
- **head** (``mode="head"``): the source's expressions and head rotations, its camera scale and
  translation adapted to the target's statistics, and its eyes.

The source video is tracked and fitted with the annotation tool's own functions
(:func:`analyse_source`), cached in a work directory.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceflow import io as vio
from faceflow.annotate import pipeline as ann
from faceflow.errors import FaceflowError, MediaError
from faceflow.face.eyes import pupil_centres
from faceflow.face.registration import crop_box, crop_image
from faceflow.face.tracking import true_runs
from faceflow.geometry.morphable import MorphableModel
from reenact.conditioning import mouth_boxes, render_conditioning
from reenact.preprocess import split_frames

ANALYSIS_VERSION = 1
MODEL_VARIANT = "skin"  # the model faceflow.annotate.pipeline fits and renders NMFCs with
MODES = ("self", "face", "head")

__all__ = ["Drive", "SourceAnalysis", "drive_self", "analyse_source", "drive_from_source", "adapt_cameras",
           "pingpong_indices", "held_out_start", "load_annotation"]


@dataclass
class Drive:
    """What drives a target's model for T frames (S = the target's crop size).

    cond (T, S, S, 6) uint8 [NMFC | eye sketch]; face_mask (T, S, S) bool; mouth (T, 4) int64
    mouth boxes (x0, y0, x1, y1); source (T, h, w, 3) uint8 frames for a side-by-side (the
    source video's frames as read, or the target's real crops in self mode); real (T, S, S, 3)
    uint8 ground truth (self mode) or None; fps; audio: the file to copy the audio track from,
    or None; frame_index (T,) int64 frame numbers in the source (target in self mode) video;
    mode 'self', 'face' or 'head'; params: the model parameters rendered (exp, rotation,
    translation, scale; target_index in face mode; in head mode crop_box, the source's crop in
    its video, and adapt = (r, shift x, shift y), so that a source video pixel x lands at
    ``r * crop(x) + shift`` in the target's crop); notes: what was dropped or adapted; landmarks
    (T, 68, 2) float32 where the face is drawn in the crop (the rendered model's projected
    landmarks; the stored detected ones in self mode).
    """

    cond: np.ndarray
    face_mask: np.ndarray
    mouth: np.ndarray
    source: np.ndarray
    real: np.ndarray | None
    fps: float
    audio: str | None
    frame_index: np.ndarray
    mode: str
    params: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cond)

    @property
    def size(self) -> int:
        return int(self.cond.shape[1])


@dataclass
class SourceAnalysis:
    """A tracked and fitted source video, cameras and landmarks in its own crop of ``size``.

    frame_index (T,) kept frame numbers; lmk68 (T, 68, 2) smoothed landmarks and pupils (T, 2, 2)
    (NaN for a closed eye) in crop pixels; id (100,), exp (T, 53); rotation (T, 3, 3),
    translation (T, 3), scale (T,) crop-pixel cameras (as an annotation's ``camera_*.npy``);
    crop_box the crop in the original frames; frames_read; dropped: [start, end) runs of
    frames without the face; notes; reused: loaded from the work directory's cache.
    """

    video: str
    fps: float
    size: int
    has_audio: bool
    image_size: tuple[int, int]
    crop_box: dict
    frames_read: int
    frame_index: np.ndarray
    lmk68: np.ndarray
    pupils: np.ndarray
    id: np.ndarray
    exp: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    dropped: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    reused: bool = False


_ARRAYS = ("frame_index", "lmk68", "pupils", "id", "exp", "rotation", "translation", "scale")


# ---------------------------------------------------------------------- helpers

def held_out_start(n: int) -> int:
    """First kept frame of a target's test part, the held-out last third of its N kept frames:
    the split of :func:`reenact.preprocess.split_frames` (round(2N/3), at least one frame each side)."""

    return int(split_frames(int(n))["test"][0])



def pingpong_indices(T: int, lo: int, hi: int) -> np.ndarray:
    """(T,) int64 indices walking lo, lo+1, ..., hi-1, hi-2, ..., lo, lo+1, ... (each end once
    per turn): a range [lo, hi) read forwards then backwards, looped to length T."""
    if not 0 <= lo < hi:
        raise ValueError(f"need 0 <= lo < hi, got lo={lo}, hi={hi}")
    n = hi - lo
    if n == 1:
        return np.full(T, lo, np.int64)
    k = np.arange(T, dtype=np.int64) % (2 * (n - 1))
    return lo + np.where(k < n, k, 2 * (n - 1) - k)


def load_annotation(annotation_dir) -> tuple[dict, Path]:
    """(manifest, data directory) of a complete annotation, else FaceflowError."""
    d = Path(annotation_dir)
    man = d / "manifest.json"
    if not man.is_file():
        raise FaceflowError(f"{d} is not a complete annotation: no manifest.json (run `python -m faceflow annotate "
                            "VIDEO DIR` first, or let it finish)")
    manifest = json.loads(man.read_text())
    if not manifest.get("complete"):
        raise FaceflowError(f"{d}: the annotation is incomplete")
    return manifest, d / "data"


def _load(data: Path, name: str, mmap: bool = False) -> np.ndarray:
    p = data / f"{name}.npy"
    if not p.is_file():
        raise FaceflowError(f"annotation file {p} is missing")
    return np.load(p, mmap_mode="r" if mmap else None)


def _model(model):

    if model is None:
        return MorphableModel.load(MODEL_VARIANT)
    if model.variant != MODEL_VARIANT:
        raise FaceflowError(f"annotations are fitted with the {MODEL_VARIANT!r} morphable model; got the "
                            f"{model.variant!r} one, whose NMFC would differ from the training data")
    return model


# ---------------------------------------------------------------------- self reenactment

def drive_self(annotation_dir, start: int, stop: int) -> Drive:
    """Self reenactment of kept frames [start, stop) of an annotation (the caller picks the
    held-out part, e.g. ``start = held_out_start(N)``): its stored NMFC and eye sketches, the real
    crops as ground truth (also as ``source``), mouth boxes around the stored (detected)
    landmarks. ``audio`` is None: the clip's audio would start at frame 0, not at ``start``."""
    manifest, data = load_annotation(annotation_dir)
    N = int(manifest["frames_kept"])
    if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer)) and 0 <= start < stop <= N):
        raise FaceflowError(f"need 0 <= start < stop <= {N} (kept frames), got start={start}, stop={stop}")
    S = int(manifest["crop_size"])
    sl = slice(int(start), int(stop))
    nmfc, eyes = _load(data, "nmfc", True)[sl], _load(data, "eyes", True)[sl]
    crops = np.array(_load(data, "crops", True)[sl])
    lmk = np.array(_load(data, "lmk68", True)[sl])
    sel = np.arange(sl.start, sl.stop)
    return Drive(cond=np.concatenate([nmfc, eyes], -1), face_mask=np.array(_load(data, "face_mask", True)[sl]),
                 mouth=mouth_boxes(lmk, S), source=crops, real=crops, fps=float(manifest["fps"]), audio=None,
                 frame_index=np.array(_load(data, "frame_index")[sl], np.int64), mode="self",
                 params={"exp": np.array(_load(data, "exp", True)[sl]),
                         "rotation": np.array(_load(data, "camera_rotation", True)[sl]),
                         "translation": np.array(_load(data, "camera_translation", True)[sl]),
                         "scale": np.array(_load(data, "camera_scale", True)[sl]), "target_index": sel},
                 landmarks=lmk.astype(np.float32))


# ---------------------------------------------------------------------- source analysis

def _signature(video: Path, size: int, max_frames: int | None) -> dict:
    st = video.stat()
    return {"version": ANALYSIS_VERSION, "video": str(video.resolve()), "bytes": st.st_size,
            "mtime": int(st.st_mtime), "size": int(size), "max_frames": max_frames, "detector": "mediapipe",
            "model": MODEL_VARIANT}


def _cache_paths(work_dir: Path, video: Path) -> tuple[Path, Path]:
    return work_dir / f"{video.stem}.source.npz", work_dir / f"{video.stem}.source.json"


def _read_cache(npz: Path, meta: Path, sig: dict) -> SourceAnalysis | None:
    if not (npz.is_file() and meta.is_file()):
        return None
    try:
        m = json.loads(meta.read_text())
        if m.get("signature") != sig:
            return None
        with np.load(npz, allow_pickle=False) as d:
            arrays = {k: d[k] for k in _ARRAYS}
    except (OSError, ValueError, KeyError):
        return None
    return SourceAnalysis(video=m["video"], fps=m["fps"], size=m["size"], has_audio=m["has_audio"],
                          image_size=tuple(m["image_size"]), crop_box=m["crop_box"], frames_read=m["frames_read"],
                          dropped=[tuple(r) for r in m["dropped"]], notes=list(m["notes"]), reused=True, **arrays)


def analyse_source(video, work_dir, size: int, max_frames: int | None = None, *, model=None,
                   overwrite: bool = False, say=print) -> SourceAnalysis:
    """Track and fit a source video with the annotation tool's functions
    (:func:`faceflow.annotate.pipeline.track_landmarks`, :func:`~faceflow.annotate.pipeline.fit_landmarks`, the
    per-video crop box, :func:`~faceflow.annotate.pipeline.crop_fit`) and find the pupils (eq. (7.3)) on
    its ``size`` x ``size`` crops, over its first ``max_frames`` frames.

    The result is cached in ``work_dir`` as ``<stem>.source.npz`` + ``<stem>.source.json`` (the
    json, written last, holds a signature of the video and options): a later call with the same
    video and options loads it (``reused`` True); other options or ``overwrite`` redo and replace
    it. Frames where tracking lost the face are dropped (``dropped``, ``notes``, said).
    Raises :class:`faceflow.face.landmarks.NoFaceError` naming the file when no face is usable,
    :class:`~faceflow.errors.MediaError` for a missing or unreadable file or a still image.
    """

    video = Path(video)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 32 <= size <= 2048:
        raise FaceflowError(f"crop size must be an integer between 32 and 2048, got {size!r}")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer))
                                   or max_frames < 1):
        raise FaceflowError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    info = vio.probe(video, allow_still=True)
    if info.still:
        raise MediaError(f"{video}: is a still image; a driving source must be a video")
    work_dir = Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise FaceflowError(f"work directory {work_dir} exists and is not a directory")
    work_dir.mkdir(parents=True, exist_ok=True)
    npz, meta = _cache_paths(work_dir, video)
    sig = _signature(video, size, max_frames)
    if not overwrite:
        cached = _read_cache(npz, meta, sig)
        if cached is not None:
            say(f"reusing the analysis of {video.name} in {npz}")
            return cached
        if meta.exists():
            say(f"{meta} holds an analysis of another video or with other options: redoing it")
    meta.unlink(missing_ok=True)  # incomplete until rewritten at the end

    t0 = time.perf_counter()
    total = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
    say(f"tracking the face in {total} frames of {video.name}")
    _, sm = ann.track_landmarks(video, max_frames, "mediapipe", total)  # NoFaceError names the file
    seg = sm.segment_ids()
    model = _model(model)
    say(f"fitting the morphable model to {int((seg >= 0).sum())} frames")
    keep, fit, _ = ann.fit_landmarks(model, sm.lmk68, sm.dense, seg, True, progress=lambda m: say("  " + m))
    box = crop_box(sm.boxes, seg >= 0, image_size=(info.height, info.width))
    cfit = ann.crop_fit(fit, box, size)
    lmk_c = box.transform(size).apply(sm.lmk68[keep].astype(np.float64)).astype(np.float32)
    say(f"finding pupils in {len(keep)} frames")
    pupils = np.full((len(keep), 2, 2), np.nan, np.float32)
    pos = {int(fr): i for i, fr in enumerate(keep)}
    for k, frame in enumerate(vio.read_frames(video, max_frames=int(keep[-1]) + 1)):
        i = pos.get(k)
        if i is not None:
            pupils[i] = pupil_centres(crop_image(frame, box, size), lmk_c[i])
    n = len(seg)
    dropped = true_runs(seg < 0)
    notes = list(sm.messages())
    if dropped:
        notes.append(f"{int((seg < 0).sum())} of {n} source frames dropped (no tracked face): "
                     + ", ".join(f"{a}-{b - 1}" for a, b in dropped))
    for msg in notes:
        say("note: " + msg)
    res = SourceAnalysis(video=str(video.resolve()), fps=float(info.fps), size=int(size),
                         has_audio=bool(info.has_audio),
                         image_size=(int(info.height), int(info.width)), crop_box=box.to_dict(), frames_read=n,
                         frame_index=keep.astype(np.int64), lmk68=lmk_c, pupils=pupils, id=fit.id.astype(np.float32),
                         exp=fit.exp.astype(np.float32), rotation=cfit.rotation.astype(np.float32),
                         translation=cfit.translation.astype(np.float32), scale=cfit.scale.astype(np.float32),
                         dropped=dropped, notes=notes)
    vio.save_npz(npz, **{k: getattr(res, k) for k in _ARRAYS})
    vio.save_json(meta, {"signature": sig, "video": res.video, "fps": res.fps, "size": res.size,
                         "has_audio": res.has_audio, "image_size": list(res.image_size), "crop_box": res.crop_box,
                         "frames_read": n, "dropped": [list(r) for r in dropped], "notes": notes,
                         "seconds": time.perf_counter() - t0})
    return res


# ---------------------------------------------------------------------- source-driven reenactment

def adapt_cameras(f_src, t_src, f_tgt, t_tgt):
    """Head reenactment's camera adaptation (Head2Head++ thesis Sec. 7.2.3: the source's scale and
    translation "adapted to the target's scale/translation statistics"): with r = mean f_tgt /
    mean f_src, ``f' = r f_s`` and ``t' = r (t_s - mean t_src) + mean t_tgt`` (all three
    components; z only offsets depth). f (T,), t (T, 3). Returns (f' (T,), t' (T, 3), r, shift)
    where a source point p maps to ``r p + shift`` in the target crop, shift (2,) =
    mean t_tgt,xy - r mean t_src,xy (the same 2D similarity maps the source's eye landmarks)."""
    f_src, t_src = np.asarray(f_src, np.float64), np.asarray(t_src, np.float64)
    r = float(np.mean(f_tgt, dtype=np.float64) / f_src.mean())
    mt_src, mt_tgt = t_src.mean(0), np.asarray(t_tgt, np.float64).mean(0)
    return r * f_src, r * (t_src - mt_src) + mt_tgt, r, mt_tgt[:2] - r * mt_src[:2]


def _source_frames(video: Path, frame_index: np.ndarray) -> np.ndarray:
    """The frames ``frame_index`` (sorted) of a video as read, (T, h, w, 3) uint8."""
    want = {int(f): i for i, f in enumerate(frame_index)}
    out = None
    for k, frame in enumerate(vio.read_frames(video, max_frames=int(frame_index[-1]) + 1)):
        i = want.get(k)
        if i is None:
            continue
        if out is None:
            out = np.empty((len(frame_index),) + frame.shape, np.uint8)
        out[i] = frame
    return out


def drive_from_source(annotation_dir, source_video, mode: str, work_dir, max_frames: int | None = None, *,
                      size: int | None = None, model=None, overwrite: bool = False, say=print) -> Drive:
    """Conditioning for a target's model from a source video (face or head reenactment).

    - ``mode="head"``: the source's expressions and rotations; its camera scale and translation
      adapted to the target's statistics over all kept frames (:func:`adapt_cameras`); the
      target's identity; eye sketches from the source's eye landmarks and pupils mapped by the
      same 2D similarity.
    - ``mode="face"``: the source's expressions only; the target's identity, cameras and stored
      eye sketches, taken in order from its test part (:func:`held_out_start`) on and ping-ponged
      inside it (:func:`pingpong_indices`) when the source is longer.

    Mouth boxes surround the projected model landmarks of the rendered face. ``source`` holds
    the source frames as read, ``fps`` the source's, ``audio`` the source file (None without an
    audio track). The source is analysed by :func:`analyse_source` at the target's crop size,
    cached in ``work_dir``; ``size``, when given, must equal the annotation's crop size.
    """
    if mode not in ("face", "head"):
        raise FaceflowError(f"mode must be 'face' or 'head' (self reenactment: drive_self), got {mode!r}")
    manifest, data = load_annotation(annotation_dir)
    S = int(manifest["crop_size"])
    if size is not None and size != S:
        raise FaceflowError(f"crop size {size} asked, but the target annotation {annotation_dir} has crop size {S}: "
                            "drive it at its own size (or annotate the target again with --size)")
    model = _model(model)
    video = Path(source_video)
    src = analyse_source(video, work_dir, S, max_frames, model=model, overwrite=overwrite, say=say)
    if src.size != S:  # cannot happen through analyse_source's signature; guards hand-made caches
        raise FaceflowError(f"source analysis has crop size {src.size}, the target {S}")
    T, N = len(src.frame_index), int(manifest["frames_kept"])
    ident = _load(data, "id")
    f_tgt, t_tgt = _load(data, "camera_scale"), _load(data, "camera_translation")
    notes = list(src.notes)
    if src.dropped and src.has_audio:
        notes.append("source frames were dropped: the copied audio runs ahead of the video after them")
    params = {"exp": src.exp}
    if mode == "head":
        f, t, r, shift = adapt_cameras(src.scale, src.translation, f_tgt, t_tgt)
        R = src.rotation
        lmk = src.lmk68.astype(np.float64) * r + shift
        pupils = src.pupils.astype(np.float64) * r + shift  # NaN (closed eye) stays NaN
        say(f"head reenactment: source scale x{r:.3f}, translation onto the target's mean")
        out = render_conditioning(model, ident, src.exp, R, t, f, lmk, pupils, S)
        notes.append(f"cameras adapted: scale ratio {r:.4f}, shift ({shift[0]:.1f}, {shift[1]:.1f}) px")
        # source video pixels -> target crop: x -> r * crop(x) + shift (reenact.cycle maps frames with it)
        params.update(crop_box=src.crop_box, adapt=np.array([r, shift[0], shift[1]]))
    else:
        idx = pingpong_indices(T, held_out_start(N), N)
        R, t, f = _load(data, "camera_rotation")[idx], t_tgt[idx], f_tgt[idx]
        say(f"face reenactment: target cameras and eyes from kept frame {int(idx[0])} on")
        # the target's eye sketches drawn again from its stored landmarks and pupils: the same
        # images as its eyes.npy (faceflow.annotate.pipeline draws them so), which a packed model
        # (reenact.package) does not carry
        out = render_conditioning(model, ident, src.exp, R, t, f, np.asarray(_load(data, "lmk68")[idx], np.float64),
                                  np.asarray(_load(data, "pupils")[idx], np.float64), size=S)
        params["target_index"] = idx
        if T > N - held_out_start(N):
            notes.append(f"source ({T} frames) longer than the target's test part ({N - held_out_start(N)} frames): "
                         "target poses ping-ponged")
    params.update(rotation=np.asarray(R, np.float32), translation=np.asarray(t, np.float32),
                  scale=np.asarray(f, np.float32))
    say(f"reading {T} source frames")
    return Drive(cond=out["cond"], face_mask=out["face_mask"], mouth=mouth_boxes(out["lmk68_model"], S),
                 source=_source_frames(video, src.frame_index), real=None, fps=src.fps,
                 audio=src.video if src.has_audio else None, frame_index=src.frame_index, mode=mode,
                 params=params, notes=notes, landmarks=np.asarray(out["lmk68_model"], np.float32))
