"""The local web front-end: ``python -m apps.gradio_app [--port N] [--host 127.0.0.1]
[--workdir outputs/app] [--models DIR] [--share]``.

Four tabs over the toolkit's entry points:

1. **3D face flow**: two images (or two frames of an uploaded video) -> DeepFaceFlow's colour-coded
   3D flow, 2D flow, PNCC, mesh overlay and the warped mesh of Fig. 1, plus ``flow3d.npy``
   (:mod:`faceflow.estimate`, the shipped weights, loaded once on first use).
2. **Reenact**: a trained person-specific model (``MODELS/<name>/checkpoints/last.pt``) driven by an
   uploaded source video (:func:`reenact.run.reenact`), head or face reenactment (or self).
3. **Prepare and train**: a target video -> :func:`reenact.preprocess.preprocess` -> the training
   harness (:mod:`reenact.commands.train`) into ``MODELS/<name>``, with a live log; the model then appears
   in the Reenact tab.
4. **Evaluate**: the self-reenactment tables (``OUT/table.md``, ``OUT/tables/*.md``, heatmaps) of
   an evaluation folder (default ``WORKDIR/eval``).

Offline by design: bound to 127.0.0.1, no analytics (``GRADIO_ANALYTICS_ENABLED=False`` is set
before gradio is imported), no share link unless ``--share``; gradio 6's theme fonts are bundled.
Everything the app writes goes under WORKDIR: one ``jobs/<uuid>`` folder per request, gradio's
upload cache in ``tmp/`` (``GRADIO_TEMP_DIR``), trained models in ``models/`` unless ``--models``
points elsewhere. Long jobs share one queue slot (``concurrency_id='jobs'``, limit 1), so two users
never run two jobs at once. Uploads are limited in size (200 MB) and videos in duration (5 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from faceflow.errors import FaceflowError, MediaError

if TYPE_CHECKING:  # imported in build_app (GRADIO_ANALYTICS_ENABLED must be set first)
    import gradio as gr

__all__ = ["AppConfig", "AppContext", "TAB_NAMES", "build_app", "launch", "list_models", "check_video", "estimate_flow",
           "run_reenact", "prepare_and_train", "read_evaluation", "add_arguments", "run", "main"]

TAB_NAMES = ("3D face flow", "Reenact", "Prepare and train", "Evaluate")
FLOW_OUTPUTS = ("flow3d.png", "flow2d.png", "pncc.png", "mesh_overlay.png", "mesh_warped.png", "flow3d.npy")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_IMAGE_SIDE = 8192
MAX_LOG_LINES = 400
MAX_HEATMAPS = 48
MAX_TABLE_BYTES = 1 << 20


def _gradio():
    """gradio, imported on first use (by :func:`build_app`, after it has set ``GRADIO_TEMP_DIR``:
    gradio fixes some of its folders at import). Analytics are switched off before the import."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio

    return gradio


@dataclass
class AppConfig:
    """Where the app works and its limits. ``models_dir`` defaults to ``workdir/models``,
    ``eval_dir`` to ``workdir/eval``; ``device``: 'auto' | 'cpu' | 'cuda' for every job.
    ``results_root`` (default: ``workdir``): the Evaluate tab reads folders under it (or under
    ``eval_dir``) only, never the app's own ``jobs/`` and ``tmp/`` (other users' uploads and results)."""

    workdir: Path
    models_dir: Path | None = None
    eval_dir: Path | None = None
    max_upload_mb: float = 200.0
    max_video_seconds: float = 300.0
    device: str = "auto"
    results_root: Path | None = None

    def __post_init__(self):
        self.workdir = Path(self.workdir).resolve()
        self.models_dir = Path(self.models_dir).resolve() if self.models_dir else self.workdir / "models"
        self.eval_dir = Path(self.eval_dir).resolve() if self.eval_dir else self.workdir / "eval"
        self.results_root = Path(self.results_root).resolve() if self.results_root else self.workdir
        if not self.max_upload_mb > 0 or not self.max_video_seconds > 0:
            raise FaceflowError(f"upload limits must be positive, got {self.max_upload_mb} MB and "
                                f"{self.max_video_seconds} s")


@dataclass
class AppContext:
    """The state of one running app: its config and the lazily loaded DeepFaceFlow estimator."""

    config: AppConfig
    _flow: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def face_flow(self):
        """The :class:`faceflow.estimate.FaceFlow` with the shipped weights, loaded on first use."""
        with self._lock:
            if self._flow is None:
                from faceflow.estimate import FaceFlow
                self._flow = FaceFlow.from_pretrained(device=self.config.device)
            return self._flow

    def new_job(self) -> Path:
        """A fresh ``workdir/jobs/<uuid>`` folder for one request."""
        job = self.config.workdir / "jobs" / uuid.uuid4().hex
        job.mkdir(parents=True)
        return job

    def close(self) -> None:
        with self._lock:
            if self._flow is not None:
                self._flow.close()
            self._flow = None


# ----------------------------------------------------------------------------- errors and limits
def _user_error(e: BaseException) -> BaseException:
    """The readable :class:`gr.Error` for a toolkit error (others are returned unchanged)."""
    from faceflow.face.landmarks import MultipleFacesError, NoFaceError

    gr = _gradio()
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, NoFaceError):
        msg = f"No face found: {e}. Use images or frames that show one face clearly (frontal, well lit)."
    elif isinstance(e, MultipleFacesError):
        msg = f"Several faces found: {e}. Use a video or image with exactly one person."
    elif isinstance(e, MediaError):
        msg = f"Cannot use this file: {e}. Upload an ordinary image (PNG, JPEG) or video (MP4, MOV, WebM)."
    elif isinstance(e, FaceflowError):
        msg = str(e)
    else:
        return e
    err = gr.Error(msg, title="Cannot do that", print_exception=False)
    err.__cause__ = e
    return err


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn toolkit errors raised inside into readable :class:`gr.Error` messages."""
    try:
        yield
    except Exception as e:
        err = _user_error(e)
        if err is e:
            raise
        raise err from e


@contextlib.contextmanager
def _job(ctx: AppContext) -> Iterator[Path]:
    """A fresh job folder, removed again when the job fails."""
    job = ctx.new_job()
    try:
        yield job
    except BaseException:
        shutil.rmtree(job, ignore_errors=True)
        raise


def _fail(msg: str) -> gr.Error:
    return _gradio().Error(msg, title="Cannot do that", print_exception=False)


def _check_file_size(cfg: AppConfig, path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise _fail(f"{what}: the uploaded file is missing ({p.name}); upload it again")
    mb = p.stat().st_size / 2**20
    if mb > cfg.max_upload_mb:
        raise _fail(f"{what} is {mb:.0f} MB; the limit is {cfg.max_upload_mb:.0f} MB")
    return p


def check_video(cfg: AppConfig, path: str | Path | None, what: str = "the video"):
    """Size and duration limits of an uploaded video; returns its :class:`faceflow.io.VideoInfo`."""
    from faceflow import io as vio

    if not path:
        raise _fail(f"upload {what} first")
    p = _check_file_size(cfg, path, what)
    with _user_errors():
        info = vio.probe(p)
    if info.duration > cfg.max_video_seconds:
        raise _fail(f"{what} lasts {info.duration:.0f} s; the limit is {cfg.max_video_seconds:.0f} s "
                    f"({cfg.max_video_seconds / 60:.0f} min): trim it first")
    return info


def _check_image(image, what: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or max(img.shape[:2]) > MAX_IMAGE_SIDE:
        raise _fail(f"{what}: expected an RGB image of at most {MAX_IMAGE_SIDE} px per side, got {img.shape}")
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)


class _Log:
    """Lines of text shared between a worker thread and the generator that shows them."""

    def __init__(self):
        self.lines: list[str] = []

    def say(self, msg: str) -> None:
        self.lines.extend(str(msg).splitlines() or [""])

    def text(self) -> str:
        return "\n".join(self.lines[-MAX_LOG_LINES:])


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    """Run ``fn()`` in a daemon thread; the box receives ``result`` or ``error``."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=target, daemon=True, name="faceflow-app-job")
    t.start()
    return t, box


def _result(box: dict):
    if "error" in box:
        raise _user_error(box["error"]) from box["error"]
    return box.get("result")


# ----------------------------------------------------------------------------- tab 1: 3D face flow
def _frames_from_video(cfg: AppConfig, video, n1, n2) -> tuple[np.ndarray, np.ndarray]:
    from faceflow import io as vio

    info = check_video(cfg, video)
    out = []
    for k, n in (("1", n1), ("2", n2)):
        if n is None or int(n) != n or n < 0:
            raise _fail(f"frame {k} must be a whole number >= 0, got {n}")
        if int(n) >= info.num_frames:
            raise _fail(f"frame {k} is {int(n)} but the video has about {info.num_frames} frames "
                        f"(numbered from 0)")
        with _user_errors():
            frames = list(vio.read_frames(video, start=int(n), max_frames=1))
        if not frames:
            raise _fail(f"the video has no frame {int(n)}")
        out.append(frames[0])
    return out[0], out[1]


def estimate_flow(ctx: AppContext, image1, image2, video=None, frame1=0, frame2=8, progress=None) -> tuple:
    """The flow tab: 3D flow from image1 (H, W, 3) to image2, or between two frames of a video
    when the two images are not both given. Returns paths of (flow3d.png, flow2d.png, pncc.png,
    mesh_overlay.png, mesh_warped.png, flow3d.npy) and a Markdown summary."""
    from faceflow import io as vio
    from faceflow.estimate import write_outputs
    from faceflow.render.overlay import draw_wireframe

    step = progress or (lambda *a, **k: None)
    if image1 is not None and image2 is not None:
        img1, img2 = _check_image(image1, "image 1"), _check_image(image2, "image 2")
        what = "the two images"
    elif video:
        step(0.05, desc="reading the two frames")
        img1, img2 = _frames_from_video(ctx.config, video, frame1, frame2)
        what = f"frames {int(frame1)} and {int(frame2)} of the video"
    else:
        raise _fail("give two images, or a video and two frame numbers")
    with _job(ctx) as job, _user_errors():
        step(0.2, desc="loading DeepFaceFlow")
        ff = ctx.face_flow()
        step(0.4, desc="landmarks, 3DMeshReg, PNCC and DFFNet")
        with ctx._lock:  # one estimate at a time on the shared detector
            res = ff.estimate(img1, img2)
        step(0.8, desc="writing the results")
        write_outputs(res, job, {"input": what}, weights=ff.weights_files, device=ff.device)
        vio.write_image(job / "mesh_overlay.png", draw_wireframe(img1, res.mesh_image, res.triangles))
    mag = np.linalg.norm(res.flow[res.mask], axis=-1) if res.mask.any() else np.zeros(1)
    summary = (f"3D flow from {what}: {int(res.mask_image.sum())} face pixels of image 1 "
               f"({img1.shape[1]}x{img1.shape[0]}); median |F| {np.median(mag):.2f} px, 95th percentile "
               f"{np.percentile(mag, 95):.2f} px (in the 224x224 registered frame). `flow3d.npy` is "
               f"(H, W, 3) float32 pixels (dx right, dy down, dz depth) on image 1's grid, 0 off the face.")
    return tuple(str(job / name) for name in FLOW_OUTPUTS) + (summary,)


# ----------------------------------------------------------------------------- tab 2: reenact
def list_models(models_dir: str | Path) -> list[str]:
    """Names of the trained models in ``models_dir``: its subfolders holding ``checkpoints/last.pt``."""
    d = Path(models_dir)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and (p / "checkpoints" / "last.pt").is_file())


def models_markdown(models_dir: str | Path) -> str:
    """A Markdown table of the trained models (name, last logged step, checkpoint time)."""
    from faceflow.engine.trainer import read_csv

    names = list_models(models_dir)
    if not names:
        return (f"No trained model in `{models_dir}` yet: train one in the *Prepare and train* tab "
                f"(or `python -m reenact train DATA {models_dir}/NAME`).")
    rows = ["| model | step | saved |", "|---|---|---|"]
    for n in names:
        d = Path(models_dir) / n
        try:
            step = int(read_csv(d / "log.csv")[-1]["step"])
        except (OSError, KeyError, IndexError, ValueError):
            step = "?"
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime((d / "checkpoints" / "last.pt").stat().st_mtime))
        rows.append(f"| {n} | {step} | {saved} |")
    return "\n".join(rows)


def _model_dir(cfg: AppConfig, name) -> Path:
    if not name:
        raise _fail("pick a trained model first (press Refresh if you just trained one)")
    if name not in list_models(cfg.models_dir):
        raise _fail(f"no trained model named {name!r} in {cfg.models_dir}; press Refresh")
    return cfg.models_dir / name


def run_reenact(ctx: AppContext, model, source, mode: str = "head", side: bool = False, max_frames=0,
                progress=None) -> tuple[str, str]:
    """The reenact tab: drive ``model`` (a name from :func:`list_models`) with the ``source`` video.
    Returns (path of the result mp4, Markdown summary)."""
    from reenact.run import reenact

    cfg = ctx.config
    step = progress or (lambda *a, **k: None)
    model_dir = _model_dir(cfg, model)
    if mode not in ("head", "face", "self"):
        raise _fail(f"unknown mode {mode!r}: choose head, face or self")
    if mode != "self":
        check_video(cfg, source, "the source video")
    if max_frames is not None and (max_frames < 0 or int(max_frames) != max_frames):
        raise _fail(f"max frames must be a whole number >= 0 (0: all), got {max_frames}")
    log = _Log()

    def say(msg):
        log.say(msg)
        step(None, desc=str(msg)[:120])

    step(0.0, desc="tracking the source and fitting the face model")
    with _job(ctx) as job, _user_errors():
        out = job / "reenacted.mp4"
        s = reenact(model_dir, mode, out, source if mode != "self" else None, side=bool(side),
                    max_frames=int(max_frames) or None, device=cfg.device, work_dir=job / "source",
                    progress=True, say=say)
    lines = [f"**{s['frames']} frames** ({mode} reenactment with `{model}`, step {s['checkpoint_step']}) "
             f"at {s['generation_fps']:.1f} frames/s."]
    if "apd" in s:
        lines.append(f"APD against the held-out frames: {s['apd']:.2f} (0-255 RGB L2).")
    return str(out), "\n\n".join(lines + log.lines[-5:])


# ----------------------------------------------------------------------------- tab 3: prepare and train
def _train_args(data_dir: Path, model_dir: Path, preset: str, flow: str, iterations, minutes, device: str):
    """The ``python -m reenact train`` arguments, as its parser makes them."""
    from reenact.commands.train import add_arguments

    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    args = p.parse_args([str(data_dir), str(model_dir), "--preset", preset, "--flow", flow,
                         "--device", device, "--quiet"])
    args.max_iters = int(iterations) if iterations else None
    args.minutes = float(minutes) if minutes else None
    return args


def _training_status(model_dir: Path, iterations: int) -> tuple[int, str]:
    from faceflow.engine.trainer import read_csv

    try:
        rows = read_csv(model_dir / "log.csv")
    except (OSError, ValueError):
        return 0, ""
    if not rows:
        return 0, ""
    last = rows[-1]
    n = int(last.get("step", 0))
    losses = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k.startswith("loss"))[:300]
    return n, f"step {n}/{iterations}" + (f": {losses}" if losses else "")


def prepare_and_train(ctx: AppContext, video, name: str, preset: str = "tiny", size: int = 256, max_frames=0,
                      flow: str = "faceflow3d", iterations=0, minutes=0, progress=None) -> Iterator[str]:
    """The prepare-and-train tab (a generator of the growing log text): preprocess ``video`` into
    ``MODELS/name/data`` and train ``MODELS/name``. Rerunning with the same settings resumes."""
    from faceflow.engine.trainer import train
    from reenact.commands.train import configs
    from reenact.preprocess import PreprocessConfig, preprocess
    from reenact.task import PRESETS

    cfg = ctx.config
    step = progress or (lambda *a, **k: None)
    name = (name or "").strip()
    if not MODEL_NAME.match(name):
        raise _fail(f"model name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    if preset not in PRESETS:
        raise _fail(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    for label, v in (("max frames", max_frames), ("iterations", iterations), ("minutes", minutes)):
        if v is not None and v < 0:
            raise _fail(f"{label} must be >= 0 (0: the default), got {v}")
    info = check_video(cfg, video, "the target video")
    model_dir = cfg.models_dir / name
    data_dir = model_dir / "data"
    target = model_dir / f"target{Path(video).suffix.lower() or '.mp4'}"
    if target.exists() and not _same_file(target, Path(video)):
        raise _fail(f"a model named {name!r} already exists for another video; choose another name")
    model_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(video, target)
    log = _Log()
    log.say(f"target: {Path(video).name} ({info.width}x{info.height}, {info.duration:.1f} s at {info.fps:.3g} fps)"
            f" -> {model_dir}")
    yield log.text()

    pcfg = PreprocessConfig(size=int(size), flows=(flow,), max_frames=int(max_frames) or None, device=cfg.device)
    step(0.0, desc="preprocessing: annotation, fits, flows")
    t, box = _in_thread(lambda: preprocess(target, data_dir, pcfg, say=log.say))
    while t.is_alive():
        t.join(0.5)
        yield log.text()
    m = _result(box)
    log.say(f"prepared {m['frames']} frames at {m['size']}x{m['size']} (train {m['split']['train']}, "
            f"test {m['split']['test']})")
    yield log.text()

    with _user_errors():
        task, tcfg = configs(_train_args(data_dir.resolve(), model_dir.resolve(), preset, flow, iterations,
                                         minutes, cfg.device))
    budget = f", at most {tcfg.max_minutes:g} min" if tcfg.max_minutes else ""
    log.say(f"training ({preset} preset, {tcfg.iterations} iterations{budget}) on {tcfg.device}")
    yield log.text()
    t, box = _in_thread(lambda: train(task, tcfg, command=f"gradio app: prepare and train {name}", progress=False))
    shown = ""
    while t.is_alive():
        t.join(1.0)
        n, status = _training_status(model_dir, tcfg.iterations)
        if status and status != shown:
            log.say(status)
            shown = status
        step((n, tcfg.iterations), desc="training", unit="steps")
        yield log.text()
    s = _result(box)
    val = s.get("val") or {}
    apd = f", held-out APD {val['val_metric']:.2f}" if "val_metric" in val else ""
    log.say(f"done: {name} at step {s['step']} ({s['status']}{apd}). Pick it in the Reenact tab.")
    yield log.text()


def _same_file(a: Path, b: Path) -> bool:
    import filecmp

    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


# ----------------------------------------------------------------------------- tab 4: evaluate
MAX_WALK_ENTRIES = 20000  # folder entries looked at when listing heatmaps


def _inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (both real, absolute paths; compared by components)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # e.g. different drives
        return False


def _served(cfg: AppConfig, real: str) -> bool:
    """Whether the Evaluate tab may read the real path ``real``: under ``results_root`` or
    ``eval_dir``, and not in the app's own ``jobs/`` or ``tmp/`` (other users' uploads and results)
    nor in the models folder (previews and samples made from the targets' videos)."""
    roots = {os.path.realpath(r) for r in (cfg.results_root, cfg.eval_dir)}
    private = [os.path.realpath(cfg.workdir / sub) for sub in ("jobs", "tmp")] + [os.path.realpath(cfg.models_dir)]
    return any(_inside(real, r) for r in roots) and not any(_inside(real, q) for q in private)


def _results_folder(cfg: AppConfig, folder) -> Path:
    """The real path of the evaluation folder typed in the Evaluate tab (empty: ``eval_dir``).
    A relative path is taken relative to ``results_root``; symlinks and '..' are resolved first,
    and anything not served (see :func:`_served`) is refused before it is looked at."""
    text = str(folder).strip() if folder is not None else ""
    if not text:
        return Path(os.path.realpath(cfg.eval_dir))
    if "\x00" in text or len(text) > 4096:
        raise _fail("not a folder name")
    p = Path(text)
    real = os.path.realpath(p if p.is_absolute() else cfg.results_root / p)
    if not _served(cfg, real):
        raise _fail(f"`{text}` is outside the evaluation results this app serves: give a folder under "
                    f"`{cfg.results_root}` (absolute, or relative to it, e.g. `eval`)")
    return Path(real)


def _heatmaps(d: Path, ok) -> list[tuple[Path, Path]]:
    """(path, real path) of the PNGs below ``d`` (not following symlinked folders) whose real path
    ``ok`` accepts, sorted, at most :data:`MAX_HEATMAPS`."""
    found, seen = [], 0
    for top, dirs, files in os.walk(d, followlinks=False):
        dirs[:] = sorted(x for x in dirs if ok(os.path.realpath(os.path.join(top, x))))
        seen += len(dirs) + len(files)
        for f in files:
            if f.endswith(".png"):
                real = os.path.realpath(os.path.join(top, f))
                if ok(real) and os.path.isfile(real):
                    found.append((Path(top) / f, Path(real)))
        if seen > MAX_WALK_ENTRIES:
            break
    return sorted(found)[:MAX_HEATMAPS]


def read_evaluation(folder: str | Path, served=None) -> tuple[str, list[tuple[np.ndarray, str]]]:
    """The evaluate tab: Markdown of ``folder/table.md`` and ``folder/tables/*.md`` (each under a
    heading) and the heatmap PNGs in the folder (as (image, caption) pairs); a readable message
    when there are none. Only files whose real path (symlinks resolved) ``served(real path)``
    accepts are read; by default, those inside ``folder`` itself."""
    from faceflow import io as vio

    d = Path(folder).expanduser()
    if served is None:
        top = os.path.realpath(d)
        served = lambda real: _inside(real, top)
    if not d.is_dir():
        return (f"No evaluation results in `{d}` yet (the folder does not exist). Run the self-reenactment "
                f"evaluation (`faceflow evaluate self-reenact VIDEOS --out FOLDER`) with this folder as its output, "
                f"then press Refresh."), []
    parts = []
    for p in [d / "table.md"] + sorted((d / "tables").glob("*.md")):
        real = os.path.realpath(p)
        if served(real) and os.path.isfile(real):
            text = Path(real).read_bytes()[:MAX_TABLE_BYTES].decode("utf-8", "replace").strip()
            parts.append(text if p.name == "table.md" and p.parent == d
                         else f"### {p.stem.replace('_', ' ')}\n\n{text}")
    images = []
    for p, real in _heatmaps(d, served):
        try:
            images.append((vio.read_image(real), p.stem.replace("_", " ")))
        except FaceflowError:
            continue
    if not parts:
        return (f"No evaluation tables in `{d}` (no table.md or tables/*.md). Run the self-reenactment "
                f"evaluation (`faceflow evaluate self-reenact VIDEOS --out FOLDER`) with this folder as its output, "
                f"then press Refresh."), images
    return "\n\n".join(parts), images


# ----------------------------------------------------------------------------- the app
def build_app(workdir: str | Path = "outputs/app", models_dir: str | Path | None = None, *,
              eval_dir: str | Path | None = None, max_upload_mb: float = 200.0, max_video_seconds: float = 300.0,
              device: str = "auto", results_root: str | Path | None = None) -> gr.Blocks:
    """The app's :class:`gr.Blocks` (not launched; see :func:`launch`). Sets ``GRADIO_TEMP_DIR`` to
    ``workdir/tmp`` so that uploads stay under the workdir. ``app.faceflow`` holds its
    :class:`AppContext`. The Evaluate tab serves folders under ``results_root`` (default:
    ``workdir``) or ``eval_dir`` only (see :class:`AppConfig`)."""
    from reenact.task import PRESETS

    cfg = AppConfig(Path(workdir), models_dir, eval_dir, max_upload_mb, max_video_seconds, device, results_root)
    for sub in ("jobs", "tmp"):
        (cfg.workdir / sub).mkdir(parents=True, exist_ok=True)
    cfg.models_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cfg.workdir / "tmp")  # read when gradio, components and server are made
    gr = _gradio()
    ctx = AppContext(cfg)
    jobs = dict(concurrency_limit=1, concurrency_id="jobs")  # long jobs: one at a time for everyone

    def flow_fn(img1, img2, video, n1, n2, progress=gr.Progress()):
        return estimate_flow(ctx, img1, img2, video, n1, n2, progress=progress)

    def reenact_fn(model, source, mode, side, max_frames, progress=gr.Progress(track_tqdm=True)):
        return run_reenact(ctx, model, source, mode, side, max_frames, progress=progress)

    def train_fn(video, name, preset, size, max_frames, flow, iterations, minutes, progress=gr.Progress()):
        yield from prepare_and_train(ctx, video, name, preset, int(size), max_frames, flow, iterations, minutes,
                                     progress=progress)

    def models_fn():
        names = list_models(cfg.models_dir)
        return gr.Dropdown(choices=names, value=names[-1] if names else None), models_markdown(cfg.models_dir)

    def eval_fn(folder):  # only results under results_root / eval_dir: the folder is typed by any user
        return read_evaluation(_results_folder(cfg, folder), served=lambda real: _served(cfg, real))

    limits = f"Uploads: at most {cfg.max_upload_mb:.0f} MB; videos at most {cfg.max_video_seconds / 60:g} min."
    with gr.Blocks(title="FaceFlow: 3D facial flow and head reenactment", analytics_enabled=False) as app:
        gr.Markdown("# 3D facial flow and head reenactment\nDeepFaceFlow (dense 3D facial flow) and "
                    "Head2Head++-style person-specific reenactment, running locally. " + limits)
        with gr.Tabs():
            with gr.Tab(TAB_NAMES[0], id="flow"):
                gr.Markdown("Two images of the same face (image 1 defines the grid of the flow), or a video and "
                            "two frame numbers (used when the two images are not both given).")
                with gr.Row():
                    img1 = gr.Image(type="numpy", label="Image 1 (I1)", sources=["upload", "clipboard"])
                    img2 = gr.Image(type="numpy", label="Image 2 (I2)", sources=["upload", "clipboard"])
                with gr.Accordion("... or two frames of a video", open=False):
                    video = gr.Video(label="Video", sources=["upload"])
                    with gr.Row():
                        n1 = gr.Number(0, label="Frame 1", precision=0, minimum=0)
                        n2 = gr.Number(8, label="Frame 2", precision=0, minimum=0)
                go = gr.Button("Estimate the 3D flow", variant="primary")
                summary = gr.Markdown()
                with gr.Row():
                    o3d = gr.Image(label="3D flow (colour-coded)", interactive=False)
                    o2d = gr.Image(label="2D flow", interactive=False)
                    opn = gr.Image(label="PNCC", interactive=False)
                    oov = gr.Image(label="Mesh overlay on I1", interactive=False)
                owarp = gr.Image(label="Fig. 1: I1 with its mesh | I2 with the mesh moved by the flow | 3D flow",
                                 interactive=False)
                onpy = gr.File(label="flow3d.npy (H, W, 3)", interactive=False)
                go.click(flow_fn, [img1, img2, video, n1, n2], [o3d, o2d, opn, oov, owarp, onpy, summary],
                         api_name="estimate_flow", **jobs)

            with gr.Tab(TAB_NAMES[1], id="reenact"):
                with gr.Row():
                    model = gr.Dropdown(choices=list_models(cfg.models_dir), label="Trained target model",
                                        allow_custom_value=True, scale=4)  # checked by list_models
                    refresh = gr.Button("Refresh", scale=1)
                models_md = gr.Markdown(models_markdown(cfg.models_dir))
                source = gr.Video(label="Source (driving) video", sources=["upload"])
                with gr.Row():
                    mode = gr.Radio(["head", "face", "self"], value="head", label="Mode",
                                    info="head: expression and pose; face: expression only; "
                                         "self: the target's held-out frames (no source needed)")
                    side = gr.Checkbox(False, label="Side by side (source | NMFC | result)")
                    rmax = gr.Number(300, label="Max frames (0: all)", precision=0, minimum=0)
                rgo = gr.Button("Reenact", variant="primary")
                rvideo = gr.Video(label="Result", interactive=False)
                rsummary = gr.Markdown()
                refresh.click(models_fn, None, [model, models_md], api_name="list_models")
                rgo.click(reenact_fn, [model, source, mode, side, rmax], [rvideo, rsummary], api_name="reenact",
                          **jobs)

            with gr.Tab(TAB_NAMES[2], id="train"):
                gr.Markdown(f"Preprocess a video of the target person (one face), then train its renderer into "
                            f"`{cfg.models_dir}/NAME`. Run again with the same name and settings to resume.")
                tvideo = gr.Video(label="Target video", sources=["upload"])
                with gr.Row():
                    tname = gr.Textbox(label="Model name", placeholder="e.g. obama")
                    preset = gr.Dropdown(sorted(PRESETS), value="tiny", label="Preset",
                                         info="tiny: CPU-sized networks; paper: the thesis' (GPU)")
                    tsize = gr.Dropdown([64, 128, 256, 512], value=256, label="Crop size (px)")
                    tflow = gr.Dropdown(["faceflow3d", "dis2d", "none"], value="faceflow3d", label="Flow")
                with gr.Row():
                    tmax = gr.Number(0, label="Max frames (0: all)", precision=0, minimum=0)
                    titers = gr.Number(0, label="Iterations (0: the preset's)", precision=0, minimum=0)
                    tmin = gr.Number(0, label="Minutes (0: no time limit)", minimum=0)
                tgo = gr.Button("Prepare and train", variant="primary")
                tlog = gr.Textbox(label="Log", lines=16, max_lines=30, interactive=False, autoscroll=True)
                trained = tgo.click(train_fn, [tvideo, tname, preset, tsize, tmax, tflow, titers, tmin], tlog,
                                    api_name="prepare_and_train", **jobs)
                trained.then(models_fn, None, [model, models_md], api_visibility="undocumented")

            with gr.Tab(TAB_NAMES[3], id="evaluate"):
                with gr.Row():
                    efolder = gr.Textbox(str(cfg.eval_dir), label="Evaluation output folder", scale=4)
                    erefresh = gr.Button("Refresh", scale=1)
                etables = gr.Markdown()
                eheat = gr.Gallery(label="Heatmaps", columns=3, height="auto", format="png")
                erefresh.click(eval_fn, efolder, [etables, eheat], api_name="evaluation")
        app.load(models_fn, None, [model, models_md], api_visibility="undocumented")
        app.load(eval_fn, efolder, [etables, eheat], api_visibility="undocumented")
    app.queue(default_concurrency_limit=1)
    app.faceflow = ctx
    return app


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True, quiet: bool = False):
    """Serve ``app`` (from :func:`build_app`) offline; ``block=False`` returns at once
    (``prevent_thread_lock``). Returns gradio's (app, local_url, share_url). Of the server's files,
    gradio serves only uploads and the results of the jobs (``WORKDIR/jobs``): not the models,
    their training data or anything else under the workdir."""
    cfg: AppConfig = app.faceflow.config
    return app.launch(server_name=host, server_port=port, share=bool(share), prevent_thread_lock=not block,
                      inbrowser=False, show_error=True, quiet=quiet, allowed_paths=[str(cfg.workdir / "jobs")],
                      max_file_size=int(cfg.max_upload_mb * 2**20), ssr_mode=False, mcp_server=False, pwa=False,
                      enable_monitoring=False)


def add_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--workdir", default="outputs/app", help="where uploads, jobs and (by default) models go")
    p.add_argument("--models", default=None, help="folder of trained reenactment models (default: WORKDIR/models)")
    p.add_argument("--eval-dir", default=None, help="evaluation output folder shown first (default: WORKDIR/eval)")
    p.add_argument("--results-root", default=None,
                   help="the only folder whose evaluation results the Evaluate tab reads (default: WORKDIR)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device of every job")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload")
    p.add_argument("--max-minutes", type=float, default=5.0, help="longest video")
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")


def run(args) -> int:
    app = build_app(args.workdir, args.models, eval_dir=args.eval_dir, results_root=args.results_root,
                    max_upload_mb=args.max_upload_mb, max_video_seconds=args.max_minutes * 60.0, device=args.device)
    try:
        launch(app, host=args.host, port=args.port, share=args.share)
    finally:
        app.faceflow.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m apps.gradio_app`` (also ``faceflow app`` and ``python -m apps``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("apps.gradio_app", argv))


if __name__ == "__main__":
    raise SystemExit(main())
