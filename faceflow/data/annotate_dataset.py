"""Annotating many videos at once on Ray: ``faceflow annotate-dataset SOURCES OUT_DIR``
(DeepFaceFlow Sec. 3.2: about 12,000 videos annotated to train the flow network).

One task per video, each a :func:`faceflow.annotate.pipeline.annotate` run into its own folder,
which makes a video's result self-contained and resumable on its own::

    OUT_DIR/
      dataset.json           the options, written first (a rerun with other options is refused)
      videos/<name>/         one annotate output (compact storage by default); manifest.json = done
      videos/<name>/failed.json   why the video failed (corrupt, no face, too short, a crash)
      videos/<name>/annotate.log  what annotate printed
      names.json             the folder name given to each source (kept across reruns)
      splits/{train,val,test}.txt  the done videos of each identity split (paths relative to splits/)
      manifest.json          written last: counts, frames, pairs, fit quality, splits, times, bytes

Ray runs the tasks on this machine's cores (``--workers``, default all) or on an existing
cluster (``--address``); each worker limits its own torch / OpenCV / BLAS threads
(``--threads``, default 1) so N workers do not oversubscribe the CPU. A rerun skips finished
videos, resumes interrupted ones from their own state and leaves failed ones alone unless
``--retry-failed``.

The identity split: each video's person (``--identity``: the video's name, or its folder for
``person/clip.mp4`` layouts) is hashed into train / val / test by ``--split-fractions``, so a
person never crosses splits and adding videos never moves the old ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceflow import io as vio
from faceflow.annotate.config import AnnotateConfig
from faceflow.errors import FaceflowError
from faceflow.runtime.flags import option
from faceflow.runtime.threads import cpu_count, subprocess_env

__all__ = ["DatasetConfig", "VIDEO_SUFFIXES", "list_sources", "video_names", "split_of_identity",
           "annotate_dataset", "dataset_videos", "summarize_dataset", "FORMAT"]

FORMAT = "annotated-dataset/1"
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".flv", ".wmv")
SPLITS = ("train", "val", "test")


@dataclass
class DatasetConfig:
    """Options of an annotate-dataset run that are not annotate's own (saved in dataset.json)."""

    workers: int | None = option(None, "annotation tasks at once on this machine (when left out: its cores / "
                                       "--threads); with --address, a cap on the tasks in flight (when left out: "
                                       "as many as the cluster fits)")
    threads: int = option(1, "torch / OpenCV / BLAS threads of each worker")
    address: str | None = option(None, "join an existing Ray cluster (HOST:PORT of `ray start --head`) instead of "
                                       "starting one on this machine; OUT_DIR must be on storage every node sees")
    retry_failed: bool = option(False, "annotate again the videos a previous run recorded as failed")
    identity: str = option("video", "what names a person for the identity split: the video's file name, or its "
                                    "folder (person/clip.mp4 layouts such as VoxCeleb)", choices=("video", "folder"))
    split_fractions: tuple[float, ...] = option((0.8, 0.1, 0.1), "train, val, test shares of the persons",
                                                nargs=3, metavar="F")
    max_retries: int = option(1, "times Ray reruns a video whose worker process died (out of memory, a crash)")

    FLAGS = ("workers", "threads", "address", "retry_failed", "identity", "split_fractions", "max_retries")


# ---------------------------------------------------------------------- sources and names

def list_sources(sources: str | Path) -> list[Path]:
    """The videos of SOURCES: a folder (searched recursively for :data:`VIDEO_SUFFIXES`), a
    glob pattern, or a text file of paths (one per line; relative ones from the file's folder;
    ``#`` comments). Sorted, duplicates removed; :class:`FaceflowError` when none is found."""
    s = str(sources)
    p = Path(s)
    if p.is_dir():
        found = [q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES]
    elif p.is_file() and p.suffix.lower() not in VIDEO_SUFFIXES:
        found = read_path_list(p, "video paths (nor a video with a known suffix)")
        missing = [str(q) for q in found if not q.exists()]
        if missing:
            raise FaceflowError(f"{p}: {len(missing)} listed video(s) do not exist, e.g. {missing[0]}")
    elif p.is_file():
        found = [p]
    else:
        found = [Path(q) for q in glob.glob(s, recursive=True)
                 if Path(q).is_file() and Path(q).suffix.lower() in VIDEO_SUFFIXES]
    videos = sorted({Path(os.path.abspath(q)) for q in found})
    if not videos:
        raise FaceflowError(f"no videos found in {s!r} (a folder of videos with suffixes {', '.join(VIDEO_SUFFIXES)}, "
                            "a glob pattern, or a text file of paths)")
    return videos


def read_path_list(path: Path, what: str) -> list[Path]:
    """The paths a text file lists, one per line (``#`` starts a comment; relative paths are
    taken from the file's folder); :class:`FaceflowError` when it is not text."""
    try:
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    except UnicodeDecodeError as e:
        raise FaceflowError(f"{path}: not a text file of {what}") from e
    return [Path(ln) if Path(ln).is_absolute() else path.parent / ln for ln in lines if ln]


def video_names(videos: list[Path], earlier: dict[str, str] | None = None) -> dict[Path, str]:
    """A folder name under ``videos/`` per video: the name an earlier run gave it (``earlier``:
    {source path: name}, so adding or removing videos never renames one), else its file stem,
    else (a stem already taken, or shared in this list) stem-<8 hex digits of its path's hash>."""
    earlier = dict(earlier or {})
    names = {v: earlier[str(v)] for v in videos if str(v) in earlier}
    taken = set(earlier.values())
    stems: dict[str, int] = {}
    for v in videos:
        stems[v.stem] = stems.get(v.stem, 0) + 1
    for v in videos:
        if v not in names:
            name = v.stem
            if stems[v.stem] > 1 or name in taken:
                name = f"{v.stem}-{hashlib.sha1(str(v).encode()).hexdigest()[:8]}"
            names[v] = name
            taken.add(name)
    return names


def person_and_split(video: Path, how: str, fractions=(0.8, 0.1, 0.1)) -> tuple[str, str]:
    """(person, split) of a video: the project's identity split table for its clips
    (:mod:`faceflow.data.splits`), else the person ``--identity`` names (the file name or its
    folder) hashed by :func:`split_of_identity`."""
    from faceflow.data import splits

    split_of_identity("check", fractions)  # bad shares are refused whatever the video
    if video.stem in splits._CLIP:
        return splits.identity_of(video.stem), splits.split_of(video.stem)
    person = video.parent.name if how == "folder" else video.stem
    return person, split_of_identity(person, fractions)


def split_of_identity(identity: str, fractions=(0.8, 0.1, 0.1)) -> str:
    """'train', 'val' or 'test' for a person, from a hash of its name (stable, uniform)."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise FaceflowError(f"--split-fractions needs three non-negative shares, got {list(fractions)}")
    u = int(hashlib.sha1(identity.encode()).hexdigest()[:12], 16) / float(16 ** 12)
    k = int(np.searchsorted(np.cumsum(f / f.sum()), u, side="right"))
    return SPLITS[min(k, 2)]


# ---------------------------------------------------------------------- one task

def annotate_task(video: str, out: str, options: dict, threads: int) -> dict:
    """Annotate one video into ``out`` (resuming its own state) on a worker limited to
    ``threads`` threads; never raises: a failure is written to ``out/failed.json`` and returned.
    Returns {"status": "done" | "failed", "seconds", and the manifest's counts or the error}."""
    import cv2
    import torch

    from faceflow.annotate.pipeline import annotate

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(max(1, threads))
    out_p = Path(out)
    t0 = time.perf_counter()
    try:
        out_p.mkdir(parents=True, exist_ok=True)
        with open(out_p / ".lock", "w") as lock, open(out_p / "annotate.log", "a") as log, \
                contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            # one writer per video: a worker orphaned by a killed run (Ray's workers finish their task after
            # their driver is gone) holds the lock until it exits; then its finished work is found, or resumed
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (out_p / "manifest.json").is_file():
                man = json.loads((out_p / "manifest.json").read_text())
            else:
                man = annotate(video, out_p, AnnotateConfig(**options), say=lambda m: print(m, flush=True))
        return {"status": "done", "seconds": time.perf_counter() - t0, "frames": man["frames_kept"],
                "frames_read": man["frames_read"], "pairs": man["pairs"]["pairs"]}
    except Exception as e:  # any failure of one video is recorded, the run goes on
        error = {"video": video, "error": f"{type(e).__name__}: {e}",
                 "traceback": traceback.format_exc(limit=8)[-4000:], "seconds": time.perf_counter() - t0}
        with contextlib.suppress(OSError):
            vio.save_json(out_p / "failed.json", error)
        return {"status": "failed", **error}


# ---------------------------------------------------------------------- the run

def _options_record(acfg: AnnotateConfig, dcfg: DatasetConfig) -> dict:
    """What a dataset's content depends on (a rerun must match): annotate's options but the
    previews, the identity rule and the split shares."""
    ann = {k: v for k, v in asdict(acfg).items() if k not in ("previews",)}
    return json.loads(json.dumps({"annotate": ann, "identity": dcfg.identity,
                                  "split_fractions": list(dcfg.split_fractions)}))


def _open_dataset(out: Path, acfg: AnnotateConfig, dcfg: DatasetConfig) -> None:
    """Create OUT_DIR (or check that its dataset.json has the same options)."""
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"output {out} exists and is not a directory")
    rec = _options_record(acfg, dcfg)
    path = out / "dataset.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("options") != rec:
            raise FaceflowError(f"{out} holds a dataset made with other options ({path}); rerun with the same "
                                "options to resume it, or choose another OUT_DIR")
        return
    if out.is_dir() and any(out.iterdir()):
        raise FaceflowError(f"{out} is not empty and is not an annotate-dataset output; choose another OUT_DIR")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    vio.save_json(path, {"format": FORMAT, "options": rec})


def _start_ray(dcfg: DatasetConfig):
    """ray.init on this machine (``workers * threads`` CPUs) or joining ``--address``."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - ray is a dependency
        raise FaceflowError("annotate-dataset needs Ray (pip install ray)") from e
    env = {k: v for k, v in subprocess_env(dcfg.threads).items()
           if k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FACEFLOW_FFMPEG_THREADS",
                    "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2])] +
                                        [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    kw = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env},
              configure_logging=False, ignore_reinit_error=True)
    if dcfg.address:
        ray.init(address=dcfg.address, **kw)
    else:
        workers = dcfg.workers or max(1, cpu_count() // max(1, dcfg.threads))
        ray.init(num_cpus=workers * dcfg.threads, object_store_memory=80 * 1024 ** 2, **kw)
    return ray


def _plan(videos: list[Path], out: Path, dcfg: DatasetConfig) -> list[dict]:
    """One record per video: name, source, identity, split, and its state on disk. The names
    given so far are kept in ``OUT_DIR/names.json`` (a video keeps its folder across reruns); a
    done folder whose manifest names another file (size or name) is refused."""
    path = out / "names.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    names = video_names(videos, earlier)
    vio.save_json(path, {**earlier, **{str(v): n for v, n in names.items()}})
    plan = []
    for v in videos:
        d = out / "videos" / names[v]
        state = ("done" if (d / "manifest.json").is_file() else "failed" if (d / "failed.json").is_file()
                 else "partial" if (d / "state.json").is_file() else "new")
        if state == "done":
            rec = json.loads((d / "manifest.json").read_text()).get("source_file") or {}
            if rec.get("bytes") not in (None, v.stat().st_size) or Path(str(rec.get("file", v.name))).name != v.name:
                raise FaceflowError(f"{d} holds an annotation of {rec.get('file')} ({rec.get('bytes')} bytes), not of "
                                    f"{v}; move that folder away or choose another OUT_DIR")
        person, split = person_and_split(v, dcfg.identity, dcfg.split_fractions)
        plan.append({"name": names[v], "source": str(v), "dir": d, "identity": person, "split": split,
                     "state": state})
    return plan


def annotate_dataset(sources, out: str | Path, acfg: AnnotateConfig | None = None,
                     dcfg: DatasetConfig | None = None, say=print, progress: bool = True) -> dict:
    """Annotate every video of ``sources`` (:func:`list_sources`) into ``out`` on Ray (see the
    module docstring); returns the dataset manifest (also ``out/manifest.json``, written last)."""
    from tqdm import tqdm

    acfg = acfg or AnnotateConfig(storage="compact")
    dcfg = dcfg or DatasetConfig()
    if dcfg.threads < 1 or (dcfg.workers is not None and dcfg.workers < 1):
        raise FaceflowError("--workers and --threads must be at least 1")
    split_of_identity("check", dcfg.split_fractions)  # refuse bad shares before any work
    out = Path(out)
    videos = list_sources(sources)
    _open_dataset(out, acfg, dcfg)
    (out / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    plan = _plan(videos, out, dcfg)
    if dcfg.retry_failed:
        for rec in plan:
            if rec["state"] == "failed":
                (rec["dir"] / "failed.json").unlink()
                rec["state"] = "partial" if (rec["dir"] / "state.json").is_file() else "new"
    todo = [r for r in plan if r["state"] in ("new", "partial")]
    counts = {s: sum(r["state"] == s for r in plan) for s in ("done", "failed", "partial", "new")}
    say(f"{len(plan)} videos: {counts['done']} done earlier, {counts['failed']} failed earlier"
        f"{' (pass --retry-failed to retry them)' if counts['failed'] else ''}, {counts['partial']} to resume, "
        f"{counts['new']} new")
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    times = {"ray_start_s": 0.0, "tasks_s": 0.0}
    if todo:
        results, times = _run_tasks(todo, acfg, dcfg, say, progress, tqdm)
    manifest = summarize_dataset(out, plan, results, time.perf_counter() - t0, acfg, dcfg)
    manifest["time"].update(times)
    _write_splits(out, plan)
    vio.save_json(out / "manifest.json", manifest)
    v = manifest["videos"]
    say(f"done: {v['done']} of {v['total']} videos annotated ({v['done_this_run']} this run, {v['failed']} failed), "
        f"{manifest['frames']} frames, {manifest['pairs']} pairs in {manifest['time']['this_run_s']:.0f} s "
        f"-> {out / 'manifest.json'}")
    return manifest


def _run_tasks(todo: list[dict], acfg: AnnotateConfig, dcfg: DatasetConfig, say, progress: bool, tqdm):
    """Submit one Ray task per video and collect the results as they come, with progress bars.
    Returns ({name: result}, {"ray_start_s", "tasks_s"})."""
    t0 = time.perf_counter()
    ray = _start_ray(dcfg)
    times = {"ray_start_s": time.perf_counter() - t0}
    try:
        task = ray.remote(num_cpus=dcfg.threads, max_retries=dcfg.max_retries)(annotate_task)
        options = asdict(acfg)
        queue = list(todo)
        # local: Ray runs --workers at once; on a cluster, --workers (when given) caps the tasks in flight
        in_flight = dcfg.workers if (dcfg.address and dcfg.workers) else len(queue)

        def submit(pending: dict) -> None:
            while queue and len(pending) < in_flight:
                r = queue.pop(0)
                pending[task.remote(r["source"], str(r["dir"]), options, dcfg.threads)] = r

        pending: dict = {}
        submit(pending)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        where = f"cluster {dcfg.address} ({cpus} CPUs)" if dcfg.address else f"this machine ({cpus} CPUs)"
        say(f"annotating {len(todo)} videos on {where}, {dcfg.threads} thread(s) per worker")
        results = {}
        bar = tqdm(total=len(todo), unit="video", desc="videos", disable=not progress, position=0)
        fbar = tqdm(unit="frame", desc="frames", disable=not progress, position=1)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
                for ref in ready:
                    rec = pending.pop(ref)
                    try:
                        res = ray.get(ref)
                    except Exception as e:  # the worker died (every retry): recorded, the run goes on
                        res = {"status": "failed", "video": rec["source"], "error": f"worker lost: {type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''}"}
                        if not (rec["dir"] / "manifest.json").is_file():
                            rec["dir"].mkdir(parents=True, exist_ok=True)
                            vio.save_json(rec["dir"] / "failed.json", res)
                    results[rec["name"]] = res
                    bar.update(1)
                    fbar.update(int(res.get("frames_read", 0)))
                    nfail = sum(r["status"] == "failed" for r in results.values())
                    bar.set_postfix(failed=nfail)
                    if res["status"] == "failed":
                        tqdm.write(f"failed: {rec['name']}: {res['error'].splitlines()[0][:200]}")
                submit(pending)
        finally:
            bar.close()
            fbar.close()
        times["tasks_s"] = time.perf_counter() - t0 - times["ray_start_s"]
        return results, times
    finally:
        if not dcfg.address:
            ray.shutdown()


# ---------------------------------------------------------------------- the manifest

def summarize_dataset(out: Path, plan: list[dict], results: dict, seconds: float, acfg: AnnotateConfig,
                      dcfg: DatasetConfig) -> dict:
    """The dataset manifest from the per-video folders (done / failed), this run's ``results``
    and its wall time."""
    from faceflow.annotate.store import directory_bytes

    rows, errors, lmk_err, rel_err = [], [], [], []
    flagged = frames = frames_read = pairs = 0
    minutes = 0.0
    per_split = {s: {"videos": 0, "persons": set(), "frames": 0, "pairs": 0} for s in SPLITS}
    annotate_s = 0.0
    for rec in plan:
        d = rec["dir"]
        row = {"name": rec["name"], "source": rec["source"], "identity": rec["identity"], "split": rec["split"]}
        if (d / "manifest.json").is_file():
            man = json.loads((d / "manifest.json").read_text())
            row.update(status="done", frames=man["frames_kept"], pairs=man["pairs"]["pairs"])
            frames += man["frames_kept"]
            frames_read += man["frames_read"]
            pairs += man["pairs"]["pairs"]
            minutes += man["frames_read"] / max(float(man["fps"]), 1e-6) / 60
            flagged += len(man["fit"]["flagged_frames"])
            annotate_s += sum(float(v or 0) for k, v in man["timings"].items()
                              if k in ("track_s", "fit_s", "render_s", "pairs_s"))
            if (d / "fit.npz").is_file():
                with np.load(d / "fit.npz", allow_pickle=False) as z:
                    lmk_err.append(z["lmk_error"])
                    rel_err.append(z["lmk_error"] / np.maximum(z["iod"], 1e-6))
            s = per_split[rec["split"]]
            s["videos"] += 1
            s["persons"].add(rec["identity"])
            s["frames"] += man["frames_kept"]
            s["pairs"] += man["pairs"]["pairs"]
        elif (d / "failed.json").is_file():
            err = json.loads((d / "failed.json").read_text())
            row.update(status="failed", error=err.get("error", "?"))
            errors.append({"name": rec["name"], "source": rec["source"], "error": row["error"]})
        else:
            row.update(status="incomplete")
        row["this_run"] = rec["name"] in results
        rows.append(row)
    status = [r["status"] for r in rows]
    e = np.concatenate(lmk_err) if lmk_err else np.zeros(0)
    r = np.concatenate(rel_err) if rel_err else np.zeros(0)
    q = lambda x, p: float(np.percentile(x, p)) if len(x) else None
    nbytes = sum(directory_bytes(rec["dir"], "**/*") for rec, row in zip(plan, rows) if row["status"] == "done")
    done_now = sum(1 for row in rows if row["this_run"] and row["status"] == "done")
    return {
        "format": FORMAT, "kind": "annotated-dataset", "complete": status.count("incomplete") == 0,
        "videos": {"total": len(rows), "done": status.count("done"), "failed": status.count("failed"),
                   "incomplete": status.count("incomplete"), "done_this_run": done_now,
                   "skipped": sum(1 for row in rows if not row["this_run"])},
        "frames": frames, "frames_read": frames_read, "pairs": pairs, "minutes_of_video": minutes,
        "fit": {"median_px": q(e, 50), "p95_px": q(e, 95), "median_iod": q(r, 50), "p95_iod": q(r, 95),
                "flagged_frames": flagged, "flag_threshold_iod": acfg.flag_error_iod},
        "splits": {s: {**{k: v for k, v in d.items() if k != "persons"}, "persons": len(d["persons"])}
                   for s, d in per_split.items()},
        "failed": errors,
        "time": {"this_run_s": seconds, "annotate_s_sum": annotate_s,
                 "videos_per_hour_this_run": 3600 * done_now / max(seconds, 1e-9)},
        "storage": {"storage": acfg.storage, "bytes_of_done_videos": nbytes,
                    "mb_per_minute": nbytes / 1e6 / minutes if minutes else None},
        "options": _options_record(acfg, dcfg), "list": rows,
    }


def _write_splits(out: Path, plan: list[dict]) -> None:
    """``splits/<split>.txt``: the done videos of each split, relative to ``splits/``."""
    (out / "splits").mkdir(exist_ok=True)
    for s in SPLITS:
        names = [r["name"] for r in plan if r["split"] == s and (r["dir"] / "manifest.json").is_file()]
        text = "".join(f"../videos/{n}\n" for n in names)
        with vio.atomic_path(out / "splits" / f"{s}.txt") as tmp:
            Path(tmp).write_text(text)


def dataset_videos(path: str | Path) -> list[Path]:
    """The annotation folders a training ``--data`` entry names: an annotate-dataset OUT_DIR
    (every done video), a split list (``OUT_DIR/splits/train.txt``, or any text file of
    annotation folders, relative to its folder), or one annotation folder."""
    p = Path(path)
    if p.is_file():
        return [q.resolve() if not q.is_absolute() else q for q in read_path_list(p, "annotation folders")]
    if (p / "dataset.json").is_file():
        return sorted(d for d in (p / "videos").iterdir() if (d / "manifest.json").is_file())
    return [p]
