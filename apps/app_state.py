"""The Gradio app's shared state and guards (:mod:`apps.gradio_app`): its config and context, gradio
imported late, readable errors, upload limits, job folders and jobs run in a thread.

Nothing here imports gradio or torch at import time: ``faceflow app --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from faceflow.errors import FaceflowError, MediaError

if TYPE_CHECKING:  # imported in build_app (GRADIO_ANALYTICS_ENABLED must be set first)
    import gradio as gr

__all__ = ["AppConfig", "AppContext", "TAB_NAMES", "check_video"]

TAB_NAMES = ("3D face flow", "Reenact", "Prepare and train", "Evaluate")
MAX_LOG_LINES = 400


def gradio_module():
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
    ``eval_dir``) only, never the app's own ``jobs/`` and ``tmp/`` (other users' uploads and results).
    ``keep_jobs`` / ``max_jobs_mb``: a new request first deletes the oldest job folders beyond the
    newest ``keep_jobs`` - 1 and while all of them take more than ``max_jobs_mb``;
    ``concurrency``: how many long jobs (flow, reenactment, training) run at once (1 on a CPU: two
    would only share its cores; more on a GPU host)."""

    workdir: Path
    models_dir: Path | None = None
    eval_dir: Path | None = None
    max_upload_mb: float = 200.0
    max_video_seconds: float = 300.0
    device: str = "auto"
    results_root: Path | None = None
    keep_jobs: int = 20
    max_jobs_mb: float = 2048.0
    concurrency: int = 1

    def __post_init__(self):
        self.workdir = Path(self.workdir).resolve()
        self.models_dir = Path(self.models_dir).resolve() if self.models_dir else self.workdir / "models"
        self.eval_dir = Path(self.eval_dir).resolve() if self.eval_dir else self.workdir / "eval"
        self.results_root = Path(self.results_root).resolve() if self.results_root else self.workdir
        if not self.max_upload_mb > 0 or not self.max_video_seconds > 0:
            raise FaceflowError(f"upload limits must be positive, got {self.max_upload_mb} MB and "
                                f"{self.max_video_seconds} s")
        if int(self.keep_jobs) < 1 or not self.max_jobs_mb > 0 or int(self.concurrency) < 1:
            raise FaceflowError(f"keep_jobs and concurrency must be >= 1 and max_jobs_mb > 0, got {self.keep_jobs}, "
                                f"{self.concurrency} and {self.max_jobs_mb}")


@dataclass
class AppContext:
    """The state of one running app: its config and the lazily loaded DeepFaceFlow estimator."""

    config: AppConfig
    _flow: object = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _jobs_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    running: set = field(default_factory=set, repr=False)  # job folders of requests still in flight

    def face_flow(self):
        """The :class:`faceflow.estimate.FaceFlow` with the shipped weights, loaded on first use."""
        with self._lock:
            if self._flow is None:
                from faceflow.estimate import FaceFlow
                self._flow = FaceFlow.from_pretrained(device=self.config.device)
            return self._flow

    def new_job(self) -> Path:
        """A fresh ``workdir/jobs/<uuid>`` folder for one request, after :meth:`prune_jobs`."""
        with self._jobs_lock:
            self.prune_jobs()
            job = self.config.workdir / "jobs" / uuid.uuid4().hex
            job.mkdir(parents=True)
            self.running.add(job.name)
        return job

    def end_job(self, job: Path) -> None:
        """The request of ``job`` returned (its folder may now be pruned by a later one)."""
        with self._jobs_lock:
            self.running.discard(Path(job).name)

    def prune_jobs(self) -> list[str]:
        """Delete the oldest job folders so that at most ``keep_jobs`` - 1 remain and they take at
        most ``max_jobs_mb`` (the results of a job are delivered when it returns; a later request
        makes room). Returns the names deleted."""
        root = self.config.workdir / "jobs"
        if not root.is_dir():
            return []
        jobs = sorted((p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name not in self.running),
                      key=_mtime)
        sizes = [_folder_bytes(j) for j in jobs]
        total, cap, gone = sum(sizes), self.config.max_jobs_mb * 2**20, []
        for j, size in zip(jobs, sizes):
            if len(jobs) - len(gone) < self.config.keep_jobs and total <= cap:
                break
            shutil.rmtree(j, ignore_errors=True)
            total -= size
            gone.append(j.name)
        return gone

    def close(self) -> None:
        with self._lock:
            if self._flow is not None:
                self._flow.close()
            self._flow = None



def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0


def _folder_bytes(d: Path) -> int:
    """Bytes of the files below ``d`` (files vanishing meanwhile, e.g. renamed partials, count 0)."""
    total = 0
    for f in d.rglob("*"):
        with contextlib.suppress(OSError):
            if f.is_file():
                total += f.stat().st_size
    return total


# ----------------------------------------------------------------------------- errors and limits
def _user_error(e: BaseException) -> BaseException:
    """The readable :class:`gr.Error` for a toolkit error (others are returned unchanged)."""
    from faceflow.face.landmarks import MultipleFacesError, NoFaceError
    from faceflow.face.pair_check import PairMismatchError

    gr = gradio_module()
    if isinstance(e, gr.Error):
        return e
    if isinstance(e, PairMismatchError):
        msg = (f"{str(e).split('; pass --force')[0]}. Use two images of the same person in a similar position, or "
               "tick 'Proceed even if image 2's face is far from image 1's'.")
    elif isinstance(e, NoFaceError):
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
def user_errors() -> Iterator[None]:
    """Turn toolkit errors raised inside into readable :class:`gr.Error` messages."""
    try:
        yield
    except Exception as e:
        err = _user_error(e)
        if err is e:
            raise
        raise err from e


@contextlib.contextmanager
def job_dir(ctx: AppContext) -> Iterator[Path]:
    """A fresh job folder, removed again when the job fails."""
    job = ctx.new_job()
    try:
        yield job
    except BaseException:
        shutil.rmtree(job, ignore_errors=True)
        raise
    finally:
        ctx.end_job(job)


def fail(msg: str) -> gr.Error:
    return gradio_module().Error(msg, title="Cannot do that", print_exception=False)


def discard_upload(cfg: AppConfig, path: str | Path) -> None:
    """Delete a refused upload, when it is one (a file in the app's ``tmp/``); other paths are left."""
    real = Path(os.path.realpath(path))
    tmp = Path(os.path.realpath(cfg.workdir / "tmp"))
    if real.is_file() and tmp in real.parents:
        real.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # gradio keeps each upload in a folder of its own
            real.parent.rmdir()


def _check_file_size(cfg: AppConfig, path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise fail(f"{what}: the uploaded file is missing ({p.name}); upload it again")
    mb = p.stat().st_size / 2**20
    if mb > cfg.max_upload_mb:
        discard_upload(cfg, p)
        raise fail(f"{what} is {mb:.0f} MB; the limit is {cfg.max_upload_mb:.0f} MB")
    return p


def check_video(cfg: AppConfig, path: str | Path | None, what: str = "the video"):
    """Size and duration limits of an uploaded video; returns its :class:`faceflow.io.VideoInfo`."""
    from faceflow import io as vio

    if not path:
        raise fail(f"upload {what} first")
    p = _check_file_size(cfg, path, what)
    try:
        with user_errors():
            info = vio.probe(p)
        if info.duration > cfg.max_video_seconds:
            raise fail(f"{what} lasts {info.duration:.0f} s; the limit is {cfg.max_video_seconds:.0f} s "
                       f"({cfg.max_video_seconds / 60:.0f} min): trim it first")
    except Exception:
        discard_upload(cfg, p)
        raise
    return info


# ----------------------------------------------------------------------------- jobs in a thread
class JobLog:
    """Lines of text shared between a worker thread and the generator that shows them."""

    def __init__(self):
        self.lines: list[str] = []

    def say(self, msg: str) -> None:
        self.lines.extend(str(msg).splitlines() or [""])

    def text(self) -> str:
        return "\n".join(self.lines[-MAX_LOG_LINES:])


def in_thread(fn) -> tuple[threading.Thread, dict]:
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


def job_result(box: dict):
    if "error" in box:
        raise _user_error(box["error"]) from box["error"]
    return box.get("result")
