"""The dataset maker: ``python -m faceflow annotate VIDEO OUT_DIR``.

Turns a talking-head video into a 3D-flow / reenactment training set by the process of
DeepFaceFlow Sec. 3 and Head2Head++ Sec. 7.2 (thesis ch. 3): track the face and its landmarks
(:mod:`faceflow.face.landmarks`), fit the morphable model over the whole video
(:mod:`faceflow.face.fitting`), then render per-frame codes and 3D-flow ground truth.

Stages, each resumable (state in ``OUT_DIR/state.json``; rerun the same command after an
interruption and finished work is kept):

1. ``track``  landmarks of every frame, following one face; usable segments  -> ``track.npz``
2. ``fit``    identity, expressions, cameras over the usable frames           -> ``fit.npz``
3. ``render`` per kept frame: crop, registration, PNCC, NMFC, eyes, masks     -> ``data/*.npy``
4. ``pairs``  3D flow for consecutive pairs and gap pairs                     -> ``data/flow.npy``
5. previews and ``manifest.json`` (written last: a directory with a manifest is complete).

Storage (all under ``data/``, memory-mappable ``.npy``, N = kept frames, S = crop size,
M = pairs): see :data:`faceflow.annotate.layout.LAYOUT`, also copied into the manifest. The
previews are :mod:`faceflow.annotate.previews`; resuming is :class:`faceflow.io.rundir.RunState`.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from faceflow import io as vio
from faceflow.annotate.conditioning import FitRenderer, to_template
from faceflow.annotate.config import AnnotateConfig
from faceflow.annotate.layout import LAYOUT, TEMPLATE, open_array  # noqa: F401 (LAYOUT: its older home was here)
from faceflow.annotate.previews import write_previews
from faceflow.annotate.store import (
    FRAME_CODECS,
    STORAGES,
    Annotation,
    encode_frame,
    frames_record,
    full_shapes,
    join_encoded,
    layout_of,
)
from faceflow.errors import FaceflowError, MediaError
from faceflow.face.correspondence import load_correspondence
from faceflow.face.eyes import pupil_centres
from faceflow.face.fit_energy import FitConfig
from faceflow.face.fitting import VideoFit, fit_video, reprojection_summary
from faceflow.face.landmarks import NoFaceError, make_detector
from faceflow.face.registration import CropBox, crop_box, crop_image, register_landmarks
from faceflow.face.tracking import TrackConfig, smooth_track, track_video
from faceflow.geometry.morphable import MorphableModel
from faceflow.io.rundir import RunState
from faceflow.render.flow import flow_ground_truth
from faceflow.render.rasterize import rasterize
from faceflow.runtime.provenance import file_record, portable_json, portable_path, provenance

STATE_VERSION = 1


# ---------------------------------------------------------------------- state

# what --overwrite deletes in OUT_DIR
OUTPUTS = ("state.json", "manifest.json", "track.npz", "fit.npz", "data", "previews")


def _open_state(out: Path, video: Path, cfg: AnnotateConfig, overwrite: bool) -> RunState:
    """``OUT_DIR/state.json``: ``stages[name]`` holds each stage's progress (``done``, timings,
    resume points), tied to the input video and the options (:func:`_signature`)."""
    return RunState(out, {"version": STATE_VERSION, "signature": _signature(video, cfg), "stages": {}},
                    overwrite=overwrite, outputs=OUTPUTS,
                    refuse=lambda old: f"{out} holds an annotation of another input or with other options "
                                       f"({(old.get('signature') or {}).get('video')}); pass --overwrite to replace "
                                       "it or choose another output directory")


def _stage(state: RunState, name: str) -> dict:
    """The progress dict of stage ``name`` (created empty)."""
    return state.section("stages", name)


def _done(state: RunState, name: str) -> bool:
    """Whether stage ``name`` finished (in this run or an earlier one)."""
    return bool(state.data["stages"].get(name, {}).get("done"))


def _signature(video: Path, cfg: AnnotateConfig) -> dict:
    """What an annotation depends on: the video (path, size, modification time) and the options
    (all but ``previews``)."""
    st = video.stat()
    drop = ("previews",) + (("storage", "frames", "quality") if cfg.storage == "full" else ())
    keys = {k: v for k, v in asdict(cfg).items() if k not in drop}  # full-storage runs as before the option
    return {"video": str(video.resolve()), "bytes": st.st_size, "mtime": int(st.st_mtime),
            "options": json.loads(json.dumps(keys))}


# ---------------------------------------------------------------------- track and fit

def track_landmarks(video: Path, max_frames: int | None = None, detector: str = "mediapipe",
                    total: int | None = None):
    """Landmarks of every frame, following one face (:func:`faceflow.face.tracking.track_video`),
    then smoothed. Returns (raw, smoothed) :class:`~faceflow.face.tracking.Track`."""

    det = make_detector(detector)
    try:
        raw = track_video(vio.read_frames(video, max_frames=max_frames), det, TrackConfig(), progress=True,
                          total=total)
    except NoFaceError as e:
        raise NoFaceError(f"{video}: {e}") from e
    finally:
        det.close()
    return raw, smooth_track(raw)


def fit_landmarks(model, lmk68: np.ndarray, dense: np.ndarray | None, segment: np.ndarray, use_dense: bool = True,
                  progress=None):
    """Fit the morphable model to the frames inside segments (``segment`` (T,) >= 0), with
    mediapipe's dense points (T, 478, 2|3) through :mod:`faceflow.face.correspondence` when given.
    Returns (kept frame indices, :class:`~faceflow.face.fitting.VideoFit`, dense vertex ids)."""

    keep = np.flatnonzero(segment >= 0)
    dense_pts, dense_v = None, np.zeros(0, np.int64)
    if use_dense and dense is not None:
        mp_idx, dense_v = load_correspondence()
        dense_pts = dense[keep][:, mp_idx, :2]
    fit = fit_video(model, lmk68[keep], dense_pts, dense_v if dense_pts is not None else None, segment[keep],
                    FitConfig(), progress=progress)
    return keep, fit, dense_v


# ---------------------------------------------------------------------- stages

def _stage_track(video: Path, info, cfg: AnnotateConfig, state: RunState, say) -> dict:
    """Stage 1, ``track``: the landmarks of every frame -> ``track.npz`` (its arrays returned)."""
    path = state.out / "track.npz"
    if _done(state, "track") and path.exists():
        return dict(np.load(path, allow_pickle=False))
    t0 = time.perf_counter()
    total = info.num_frames if cfg.max_frames is None else min(info.num_frames, cfg.max_frames)
    say(f"tracking the face in {total} frames")
    raw, sm = track_landmarks(video, cfg.max_frames, cfg.detector, total)
    summary = sm.to_dict()
    arrays = {"lmk68_raw": raw.lmk68, "lmk68": sm.lmk68, "boxes": sm.boxes, "detected": sm.detected,
              "num_faces": sm.num_faces, "segment": sm.segment_ids(),
              "status": np.array(sm.status, dtype="U8")}
    if sm.dense is not None:
        arrays["dense"] = sm.dense
    vio.save_npz(path, **arrays)
    st = _stage(state, "track")
    st.update(done=True, seconds=time.perf_counter() - t0, summary=summary)
    state.save()
    return arrays


def _stage_fit(model, track: dict, cfg: AnnotateConfig, state: RunState, say):
    """Stage 2, ``fit``: the morphable model over the usable frames -> ``fit.npz``. Returns (kept
    frame indices, :class:`~faceflow.face.fitting.VideoFit`, dense vertex ids)."""

    path = state.out / "fit.npz"
    keep = np.flatnonzero(track["segment"] >= 0)
    if _done(state, "fit") and path.exists():
        d = np.load(path, allow_pickle=False)
        fit = VideoFit(d["id"], d["exp"], d["rotation"], d["translation"], d["scale"], d["jaw_vertices"],
                       d["lmk_error"], d["iod"], _stage(state, "fit")["stats"])
        return keep, fit, d["dense_vertices"]
    t0 = time.perf_counter()
    say(f"fitting the morphable model to {len(keep)} frames")
    keep, fit, dense_v = fit_landmarks(model, track["lmk68"], track.get("dense"), track["segment"], cfg.dense,
                                       progress=lambda m: say("  " + m))
    vio.save_npz(path, id=fit.id, exp=fit.exp, rotation=fit.rotation, translation=fit.translation, scale=fit.scale,
              jaw_vertices=fit.jaw_vertices, lmk_error=fit.lmk_error, iod=fit.iod, dense_vertices=dense_v)
    st = _stage(state, "fit")
    st.update(done=True, seconds=time.perf_counter() - t0, stats=json.loads(json.dumps(fit.stats, default=float)))
    state.save()
    return keep, fit, dense_v


def crop_fit(fit, box, size: int):
    """The fit (:class:`~faceflow.face.fitting.VideoFit`, cameras in original image pixels) with its
    cameras expressed in the pixels of the ``size x size`` crop of ``box``:
    p_crop = s p + (tx, ty, 0), as stored in ``data/camera_*.npy``."""
    sim = box.transform(size)
    t = fit.translation.astype(np.float64) * sim.scale
    t[:, :2] += sim.translation
    return replace(fit, translation=t.astype(np.float32), scale=(fit.scale * sim.scale).astype(np.float32))


def _stage_render(video: Path, model, track, keep, fit, box, cfg: AnnotateConfig, state: RunState, say) -> None:
    """Stage 3, ``render``: per kept frame the crop, its registration to the template, PNCC, NMFC,
    eye sketches and masks -> ``data/*.npy`` (:data:`LAYOUT`); resumable at the last checkpoint
    (every 8 batches)."""
    data = state.out / "data"
    data.mkdir(parents=True, exist_ok=True)
    st = _stage(state, "render")
    if st.get("done"):
        shutil.rmtree(data / "crops_chunks", ignore_errors=True)  # compact: a kill between marking done and this
        return
    N = len(keep)
    job = _render_job(model, track, keep, fit, box, cfg, data)
    start = int(st.get("frames_done", 0))
    say(f"rendering {N} frames" + (f" (resuming at {start})" if start else ""))
    t0 = time.perf_counter()

    def checkpoint(frames_done: int) -> None:  # everything before kept frame frames_done is on disk
        job.flush()
        st["frames_done"] = frames_done
        state.save()

    _render_frames(video, keep, start, cfg.batch, job, checkpoint)
    job.flush()
    if cfg.storage == "compact" and not job.join_chunks(N):  # a chunk lost to a kill: encode them all again
        say("some encoded crops were lost by an interruption; encoding every frame again")
        _render_frames(video, keep, 0, cfg.batch, job, lambda frames_done: None)
        if not job.join_chunks(N):
            raise FaceflowError(f"{data / 'crops_chunks'}: encoded crops are missing after re-encoding; rerun with "
                                "--overwrite")
    st.update(done=True, frames_done=N, seconds=st.get("seconds", 0) + time.perf_counter() - t0)
    state.save()
    shutil.rmtree(data / "crops_chunks", ignore_errors=True)  # joined into crops_encoded.npy


@dataclass
class _RenderJob:
    """What rendering the kept frames needs; :meth:`render` fills rows of :attr:`arrays` (full
    storage) or writes the batch's crops as one encoded chunk (compact storage: crops and pupils
    only, the rest is drawn when read)."""

    renderer: FitRenderer  # draws the arrays the fit determines (faceflow.annotate.conditioning)
    box: object  # the per-video crop box (CropBox)
    arrays: dict  # name -> (N, ...) memmap of data/<name>.npy (crops, aligned, pncc, ..., pupils)
    cfg: AnnotateConfig  # storage, frames, quality
    chunks: Path  # compact storage: data/crops_chunks/<first kept index>.npz, joined when the stage ends

    def render(self, batch: list[tuple[int, np.ndarray]]) -> None:
        """Render the kept frames ``batch`` [(kept index, video frame (H, W, 3) uint8)] into their rows."""

        r, a, S = self.renderer, self.arrays, self.renderer.size
        idx = np.array([i for i, _ in batch])
        crops = np.stack([crop_image(fr, self.box, S) for _, fr in batch])
        for j, i in enumerate(idx):
            a["pupils"][i] = pupil_centres(crops[j], r.lmk[i])
        if self.cfg.storage == "compact":
            data, offsets = join_encoded([encode_frame(c, self.cfg.frames, self.cfg.quality) for c in crops])
            vio.save_npz(self.chunks / f"{int(idx[0]):07d}.npz", index=idx, data=data, offsets=offsets)
            return
        a["crops"][idx] = crops
        for j, i in enumerate(idx):
            a["aligned"][i] = r.aligned(crops[j], i)
            a["eyes"][i], a["eye_mask"][i] = r.eyes(i, a["pupils"][i])
        with torch.no_grad():
            v = r.vertices(idx)
            a["pncc"][idx], a["pncc_mask"][idx] = r.pncc(idx, v)
            a["nmfc"][idx], a["face_mask"][idx] = r.nmfc(idx, v)

    def flush(self) -> None:
        """Write the arrays' rendered rows to disk."""
        for arr in self.arrays.values():
            arr.flush()

    def join_chunks(self, N: int) -> bool:
        """Compact storage: the chunks -> ``crops_encoded.npy`` + ``crops_offsets.npy``; False
        (nothing written) when a kept frame's crop is missing or a chunk is unreadable (a kill
        mid-write leaves only a hidden temporary file, which is not read)."""
        parts: list[np.ndarray | None] = [None] * N
        for path in sorted(self.chunks.glob("[0-9]*.npz")):
            try:
                with np.load(path, allow_pickle=False) as z:
                    index, data, off = z["index"], z["data"], z["offsets"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                continue
            for k, i in enumerate(index):
                if 0 <= int(i) < N:
                    parts[int(i)] = data[off[k]:off[k + 1]]
        if any(p is None for p in parts):
            return False
        data, offsets = join_encoded(parts)
        vio.save_npy(self.chunks.parent / "crops_encoded.npy", data)
        vio.save_npy(self.chunks.parent / "crops_offsets.npy", offsets)
        return True


def _render_job(model, track: dict, keep: np.ndarray, fit, box, cfg: AnnotateConfig, data: Path) -> _RenderJob:
    """Write the small per-frame arrays (frame index, segment, landmarks, dense points, codes,
    cameras, ``aligned_transform``) and open the big ones (:func:`faceflow.annotate.layout.open_array`, resumable) for
    :class:`_RenderJob`."""

    N, S = len(keep), cfg.size
    sim = box.transform(S)
    cfit = crop_fit(fit, box, S)
    lmk_c = sim.apply(track["lmk68"][keep].astype(np.float64)).astype(np.float32)
    small = {"frame_index.npy": keep.astype(np.int64), "segment.npy": track["segment"][keep].astype(np.int32),
             "lmk68.npy": lmk_c, "exp.npy": fit.exp, "id.npy": fit.id, "camera_rotation.npy": cfit.rotation,
             "camera_translation.npy": cfit.translation, "camera_scale.npy": cfit.scale}
    if "dense" in track:
        small["dense.npy"] = sim.apply_3d(track["dense"][keep].astype(np.float64)).astype(np.float32)
    for name, arr in small.items():
        vio.save_npy(data / name, arr)
    A = np.stack([register_landmarks(lmk_c[i], TEMPLATE).matrix for i in range(N)])
    vio.save_npy(data / "aligned_transform.npy", A)
    shapes = {"pupils": ((N, 2, 2), np.float32)}
    if cfg.storage == "full":
        shapes.update({n: shape for n, shape in full_shapes(N, 0, S).items() if n != "flow"})
    arrays = {name: open_array(data / f"{name}.npy", shape, dtype) for name, (shape, dtype) in shapes.items()}
    chunks = data / "crops_chunks"
    if cfg.storage == "compact":
        chunks.mkdir(exist_ok=True)
    return _RenderJob(FitRenderer(model, cfit, A, lmk_c, S), box, arrays, cfg, chunks)


def _render_frames(video: Path, keep: np.ndarray, start: int, batch_size: int, job: _RenderJob, checkpoint) -> None:
    """Read the video from kept frame ``start`` on and render the kept frames in batches of
    ``batch_size``; ``checkpoint(frames_done)`` after every 8th batch."""

    N = len(keep)
    pos = {int(f): i for i, f in enumerate(keep)}
    first = int(keep[start]) if start < N else int(keep[-1]) + 1
    bar = tqdm(total=N, initial=start, unit="frame", desc="render")
    buf: list[tuple[int, np.ndarray]] = []
    batches = 0
    try:
        for k, frame in enumerate(vio.read_frames(video, start=first, max_frames=int(keep[-1]) + 1 - first)):
            i = pos.get(first + k)
            if i is None:
                continue
            buf.append((i, frame))
            if len(buf) == batch_size:
                job.render(buf)
                bar.update(len(buf))
                buf.clear()
                batches += 1
                if batches % 8 == 0:
                    checkpoint(i + 1)
        if buf:
            job.render(buf)
            bar.update(len(buf))
    finally:
        bar.close()


def gap_pairs_rule(mean_flow, max_gap: int) -> int:
    """DeepFaceFlow's temporal gap: advance the gap g = 1, 2, ... while the mean 3D flow per
    pixel of (a, a + g) is <= 1 pixel; ``mean_flow(g)`` returns that mean (or None when a + g
    leaves the segment). Returns the chosen gap (0 if no frame is available)."""
    g = 1
    m = mean_flow(g)
    if m is None:
        return 0
    while m <= 1.0 and g < max_gap:
        nxt = mean_flow(g + 1)
        if nxt is None:
            break
        g, m = g + 1, nxt
    return g


def _choose_pairs(N, segment, cfg: AnnotateConfig, frame_frags, verts, A, tris, say):
    """The flow pairs (a, b) of kept frames and their kinds (0 consecutive, 1 gap), ordered by a."""


    pairs, kinds = [], []
    for a in range(N - 1):
        if "consecutive" in cfg.pairs and segment[a + 1] == segment[a]:
            pairs.append((a, a + 1))
            kinds.append(0)
    say("choosing gap pairs" if "gap" in cfg.pairs else "no gap pairs")
    if "gap" in cfg.pairs:
        with torch.no_grad():
            for a in tqdm(range(0, N - 1, cfg.gap_stride), unit="frame", desc="gap pairs"):
                v1, frags = frame_frags(a)
                if not frags.mask.any():
                    continue

                def mean_flow(g):
                    b = a + g
                    if b >= N or segment[b] != segment[a]:
                        return None
                    v2 = to_template(verts[b:b + 1], A[a:a + 1])
                    fl, mask = flow_ground_truth(v1, v2, tris, (TEMPLATE, TEMPLATE), frags1=frags)
                    return float(fl[mask].norm(dim=-1).mean())

                g = gap_pairs_rule(mean_flow, cfg.max_gap)
                if g > 1:
                    pairs.append((a, a + g))
                    kinds.append(1)
    order = sorted(range(len(pairs)), key=lambda m: (pairs[m][0], kinds[m]))  # pairs of one frame together:
    return [pairs[m] for m in order], [kinds[m] for m in order]  # one rasterisation serves them


def _stage_pairs(model, fit, keep, segment, box, cfg: AnnotateConfig, state: RunState, say) -> dict:
    """Stage 4, ``pairs``: choose the flow pairs (resumable once listed) and render their 3D flow
    -> ``data/pairs.npy``, ``pair_kind.npy``, ``flow.npy``; returns the pair summary."""


    st = _stage(state, "pairs")
    if st.get("done"):
        return st["summary"]
    t0 = time.perf_counter()
    data = state.out / "data"
    N = len(keep)
    A = np.load(data / "aligned_transform.npy")
    # the meshes the render stage drew PNCC and NMFC from
    renderer = FitRenderer(model, crop_fit(fit, box, cfg.size), A, np.load(data / "lmk68.npy"), cfg.size)
    verts = torch.cat([renderer.vertices(np.arange(a, min(a + 256, N))) for a in range(0, N, 256)])
    tris = renderer.face.triangles
    frags_cache = {}

    def frame_frags(a):
        """Frame a's mesh in its own template and its rasterisation (the last one is kept)."""
        if a not in frags_cache:
            frags_cache.clear()
            v1 = to_template(verts[a:a + 1], A[a:a + 1])
            frags_cache[a] = (v1, rasterize(v1, tris, (TEMPLATE, TEMPLATE), cull_backfaces=True))
        return frags_cache[a]

    if st.get("listed") and (data / "pairs.npy").exists():  # resuming: the pair list is fixed
        pairs_a, kinds_a = np.load(data / "pairs.npy"), np.load(data / "pair_kind.npy")
    else:
        pairs, kinds = _choose_pairs(N, segment, cfg, frame_frags, verts, A, tris, say)
        pairs_a, kinds_a = np.array(pairs, np.int64).reshape(-1, 2), np.array(kinds, np.uint8)
        vio.save_npy(data / "pairs.npy", pairs_a)
        vio.save_npy(data / "pair_kind.npy", kinds_a)
        st.update(listed=True, pairs_done=0)
        state.save()
    M = len(pairs_a)
    gaps = pairs_a[kinds_a == 1, 1] - pairs_a[kinds_a == 1, 0]
    gap_hist = {int(g): int((gaps == g).sum()) for g in np.unique(gaps)}
    kinds = kinds_a.tolist()
    mags = []
    if cfg.storage == "full":  # compact storage draws each pair's flow when it is read
        mags = _render_flows(pairs_a, st, state, frame_frags, verts, A, tris)
    summary = {"pairs": M, "consecutive": int(sum(k == 0 for k in kinds)), "gap": int(sum(k == 1 for k in kinds)),
               "gap_histogram": {str(k): v for k, v in sorted(gap_hist.items())},
               "mean_flow_px": float(np.mean(mags)) if mags else None}
    st.update(done=True, pairs_done=M, summary=summary, seconds=st.get("seconds", 0) + time.perf_counter() - t0)
    state.save()
    return summary


def _render_flows(pairs_a: np.ndarray, st: dict, state: RunState, frame_frags, verts, A, tris) -> list[float]:
    """The 3D flow of every pair -> ``data/flow.npy`` (resumable every 256 pairs); returns the
    mean flow magnitude of each pair with face pixels."""
    M = len(pairs_a)
    flow = open_array(state.out / "data" / "flow.npy", (M, TEMPLATE, TEMPLATE, 3), np.float16)
    start = int(st.get("pairs_done", 0))
    mags = []
    with torch.no_grad():
        for m in tqdm(range(start, M), unit="pair", desc="3D flow", initial=start, total=M):
            a, b = pairs_a[m]
            v1, frags = frame_frags(int(a))
            v2 = to_template(verts[b:b + 1], A[a:a + 1])
            fl, mask = flow_ground_truth(v1, v2, tris, (TEMPLATE, TEMPLATE), frags1=frags)
            flow[m] = fl[0].numpy().astype(np.float16)
            if mask.any():
                mags.append(float(fl[mask].norm(dim=-1).mean()))
            if (m + 1) % 256 == 0:
                flow.flush()
                st["pairs_done"] = m + 1
                state.save()
    flow.flush()
    return mags


def _stage_previews(ann: Annotation, model, fit, keep, box, cfg: AnnotateConfig, state: RunState) -> list[str]:
    """Stage 5: PNG previews of a few frames (:func:`faceflow.annotate.previews.write_previews`)."""

    return write_previews(state.out, ann, model, crop_fit(fit, box, cfg.size), keep, cfg.previews)


# ---------------------------------------------------------------------- entry point

def annotate(video: str | Path, out: str | Path, cfg: AnnotateConfig | None = None, overwrite: bool = False,
             say=print) -> dict:
    """Run (or resume) the whole annotation; returns the manifest dict."""

    cfg = cfg or AnnotateConfig()
    video, out = Path(video), Path(out)
    info = _check_request(video, out, cfg)
    out.mkdir(parents=True, exist_ok=True)
    state = _open_state(out, video, cfg, overwrite)
    (out / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    model = MorphableModel.load("skin")
    t_all = time.perf_counter()

    track = _stage_track(video, info, cfg, state, say)
    keep, fit, dense_v = _stage_fit(model, track, cfg, state, say)
    box = _crop_box(state, track, info)
    _stage_render(video, model, track, keep, fit, box, cfg, state, say)
    pair_summary = {"pairs": 0}
    if cfg.pairs:
        pair_summary = _stage_pairs(model, fit, keep, track["segment"][keep], box, cfg, state, say)
    else:
        vio.save_npy(out / "data" / "pairs.npy", np.zeros((0, 2), np.int64))
        vio.save_npy(out / "data" / "pair_kind.npy", np.zeros(0, np.uint8))
        if cfg.storage == "full":
            vio.save_npy(out / "data" / "flow.npy", np.zeros((0, TEMPLATE, TEMPLATE, 3), np.float16))
    storage = {"storage": cfg.storage, "crop_size": cfg.size,
               "frames": frames_record(cfg.frames, cfg.quality) if cfg.storage == "compact" else None}
    previews = _stage_previews(Annotation(out, model, manifest=storage), model, fit, keep, box, cfg, state)

    n_frames = len(track["segment"])
    manifest = {
        # source: the video relative to OUT (faceflow.runtime.provenance.resolve_recorded), or its bare name when the
        # two share no folder; source_file: its name, size and sha256
        "source": portable_path(video, out, climb=True), "source_file": file_record(video, out),
        "fps": info.fps, "frames_in_video": info.num_frames,
        "frames_read": n_frames, "frames_kept": int(len(keep)), "image_size": [info.height, info.width],
        "segments": _stage(state, "track")["summary"]["segments"], "crop_box": box.to_dict(),
        "template_size": TEMPLATE, "tracking": _stage(state, "track")["summary"],
        "fit": _fit_summary(fit, keep, dense_v, cfg), "pairs": pair_summary,
        "timings": _timings(state, n_frames, t_all),
        "options": asdict(cfg), **storage, "layout": layout_of(cfg.storage), "previews": previews, "complete": True,
        "provenance": provenance(weights={"morphable_model": model.path}, base=out),
    }
    manifest = portable_json(manifest, out)
    if not fit.stats["plausible"]:
        say(f"warning: implausible identity (||i||^2 = {fit.stats['id_norm2']:.1f} > "
            f"{fit.stats['chi2_threshold']:.1f}); the fit may have failed")
    for msg in manifest["tracking"]["messages"]:
        say("note: " + msg)
    vio.save_json(out / "manifest.json", manifest)
    return manifest


def _check_request(video: Path, out: Path, cfg: AnnotateConfig):
    """Refuse bad options, a video that is a still or too short, an ``out`` that is a file, before
    any work; returns the video's :class:`~faceflow.io.VideoInfo`."""
    if not 32 <= cfg.size <= 2048:
        raise FaceflowError(f"--size must be between 32 and 2048, got {cfg.size}")
    if cfg.max_frames is not None and cfg.max_frames < 2:
        raise FaceflowError(f"--max-frames must be at least 2, got {cfg.max_frames}")
    if cfg.storage not in STORAGES or cfg.frames not in FRAME_CODECS:
        raise FaceflowError(f"--storage must be full or compact and --frames jpeg or png, got {cfg.storage!r} and "
                            f"{cfg.frames!r}")
    if not 1 <= cfg.quality <= 100:
        raise FaceflowError(f"--quality must be between 1 and 100, got {cfg.quality}")
    unknown = set(cfg.pairs) - {"consecutive", "gap"}
    if unknown:
        raise FaceflowError(f"unknown pair kind(s) {sorted(unknown)}; use consecutive and/or gap")
    info = vio.probe(video, allow_still=True)  # MediaError for missing, corrupt, absurd sizes
    if info.still:
        raise MediaError(f"{video}: is a still image, not a video; annotate needs a video "
                         "(fit a photo with faceflow.face.fitting.fit_image)")
    if info.num_frames < 2:
        raise MediaError(f"{video}: has {info.num_frames} frame(s); annotate needs a video of at least 2 frames "
                         "(fit a photo with faceflow.face.fitting.fit_image)")
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"output {out} exists and is not a directory")
    return info


def _crop_box(state: RunState, track: dict, info):
    """The per-video crop box around the tracked face (:func:`faceflow.face.registration.crop_box`),
    chosen once and kept in the fit stage's state."""

    st = _stage(state, "fit")
    if st.get("crop_box") is not None:
        return CropBox.from_dict(st["crop_box"])
    box = crop_box(track["boxes"], track["segment"] >= 0, image_size=(info.height, info.width))
    st["crop_box"] = box.to_dict()
    state.save()
    return box


def _fit_summary(fit, keep: np.ndarray, dense_v: np.ndarray, cfg: AnnotateConfig) -> dict:
    """The manifest's ``fit``: reprojection error, identity plausibility, dense points, flagged frames."""

    flagged = keep[fit.relative_error > cfg.flag_error_iod]
    return {"reprojection": reprojection_summary(fit),
            "identity": {k: fit.stats[k] for k in ("id_norm2", "chi2_threshold", "quantile", "plausible")},
            "dense_points": int(len(dense_v)), "flagged_frames": [int(f) for f in flagged],
            "flag_threshold_iod": cfg.flag_error_iod}


def _timings(state: RunState, n_frames: int, t_all: float) -> dict:
    """The manifest's ``timings``: seconds of each stage (over all runs) and of this run."""
    t_track = _stage(state, "track")["seconds"]
    t_fit = _stage(state, "fit")["seconds"]
    return {"track_s": t_track, "fit_s": t_fit, "render_s": _stage(state, "render").get("seconds"),
            "pairs_s": _stage(state, "pairs").get("seconds"),
            "landmarks_and_fit_fps": n_frames / max(t_track + t_fit, 1e-9),
            "this_run_s": time.perf_counter() - t_all}
