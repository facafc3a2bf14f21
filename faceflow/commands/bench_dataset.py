"""Benchmarks of dataset building, as JSON.

``faceflow bench annotate-dataset``: ``annotate-dataset`` over the same videos with 1 and with 2
Ray workers (one thread each): videos per hour and frames per second of each, the speed-up
(target: 2 workers at least 1.7x one), the same speed-up of two plain ``faceflow annotate``
processes without Ray (what the machine itself allows: the fit's sparse solves share the memory
bus), and from these figures an estimate of the hours and the
storage for a Face3DVid-sized set (default 12,000 one-minute videos at 25 fps) on a 64-core
machine and on a 10-node cluster of such machines. The estimate assumes every further worker adds
what the second one added (the measured efficiency) and reads the storage per minute from
``faceflow bench storage``'s figure when given (``--mb-per-minute``), else from this run's videos.

``faceflow bench storage``: one clip annotated in the full form, then converted to compact JPEG
(quality 95) and compact PNG: megabytes per minute of video of each (target: compact at most 250),
the JPEG crops' PSNR, milliseconds to read one training pair, and the DFFNet training step of
``faceflow train dffnet --preset tiny`` fed from each form (target: compact at most 1.3x the full
form's time per step). The training steps are timed with 0 and 1 data-loader processes
(the tiny preset reads in the training process; a loader process overlaps the compact form's
decoding and drawing with the step). Run both with nothing else busy on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CLIPS = ("EDTalk_uncrop_Obama.mp4", "MimicTalk_Trump_10s.mp4", "LivePortrait_d10.mp4", "HelloMeme_xzy1.mp4")


def _clips(names) -> list[str]:
    from faceflow.runtime.assets import media_dir

    return [n if Path(n).exists() else str(media_dir() / "videos" / n) for n in names]


# ---------------------------------------------------------------------- annotate-dataset

def bench_annotate_dataset(videos, max_frames: int, workers=(1, 2), videos_total: int = 12000,
                           minutes: float = 1.0, fps: float = 25.0, cores: int = 64, nodes: int = 10,
                           mb_per_minute: float | None = None, copies: int = 2, rounds: int = 3) -> dict:
    """Time annotate-dataset over ``copies`` copies of ``videos`` (first ``max_frames`` frames)
    with each number of ``workers``, ``rounds`` times interleaved (this machine's speed drifts by
    10-20 % between minutes); returns the median rows, the speed-up of each round and of the
    medians, and the estimate (see the module docstring)."""

    rounds_rows = [[_time_dataset_run(videos, max_frames, w, copies) for w in workers] for _ in range(rounds)]
    rows = []  # per worker count, the round with the median frames per second
    for k, w in enumerate(workers):
        runs = sorted((r[k] for r in rounds_rows), key=lambda r: r["frames_per_s"])
        rows.append({**runs[len(runs) // 2], "frames_per_s_rounds": [r[k]["frames_per_s"] for r in rounds_rows]})
    ceiling = plain_process_speedup(videos[0], max_frames)
    one = rows[0]
    speedups = {f"{r['workers']}_vs_{one['workers']}": round(r["frames_per_s"] / one["frames_per_s"], 3)
                for r in rows[1:]}
    speedups["each_round"] = [round(rr[-1]["frames_per_s"] / rr[0]["frames_per_s"], 3) for rr in rounds_rows]
    last = rows[-1]
    efficiency = last["frames_per_s"] / (one["frames_per_s"] * last["workers"] / one["workers"])
    per_worker = one["frames_per_s"] / one["workers"]
    frames_total = videos_total * minutes * 60 * fps
    mbm = mb_per_minute if mb_per_minute is not None else last["mb_per_minute"]

    def hours(n_workers: int) -> float:
        return frames_total / (per_worker * n_workers * min(1.0, efficiency)) / 3600

    estimate = {
        "videos": videos_total, "minutes_each": minutes, "fps": fps, "frames": int(frames_total),
        "per_worker_frames_per_s": round(per_worker, 2), "scaling_efficiency": round(efficiency, 3),
        "machine_64_cores_hours": round(hours(cores), 1), "cluster_hours": round(hours(cores * nodes), 1),
        "cores_per_machine": cores, "nodes": nodes, "mb_per_minute": mbm,
        "storage_tb": round(videos_total * minutes * mbm / 1e6, 2) if mbm else None,
        "full_form_storage_tb_for_comparison": round(videos_total * minutes * 2500 / 1e6, 1),
    }
    return {"benchmark": "annotate-dataset", "max_frames": max_frames, "videos": [Path(v).name for v in videos],
            "copies": copies, "rounds": rounds,
            "rows": rows, "speedup": speedups, "target_speedup_2_workers": 1.7,
            "machine_ceiling_two_plain_processes": ceiling, "estimate": estimate}


def _time_dataset_run(videos, max_frames: int, workers: int, copies: int) -> dict:
    """One annotate-dataset run over ``copies`` copies of ``videos`` with ``workers`` workers."""
    from faceflow.annotate.config import AnnotateConfig
    from faceflow.data.annotate_dataset import DatasetConfig, annotate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for k in range(copies):  # more tasks than workers: each worker's start-up cost is shared out
            for v in videos:
                (src / f"{Path(v).stem}_{k}{Path(v).suffix}").symlink_to(Path(v).resolve())
        m = annotate_dataset(src, Path(tmp) / "out", AnnotateConfig(storage="compact", max_frames=max_frames,
                                                                      previews=0),
                             DatasetConfig(workers=workers, threads=1), say=lambda s: None, progress=False)
    t = m["time"]
    return {"workers": workers, "videos": m["videos"]["done"], "failed": m["videos"]["failed"],
            "frames": m["frames_read"], "ray_start_s": round(t["ray_start_s"], 2),
            "tasks_s": round(t["tasks_s"], 2), "wall_s": round(t["this_run_s"], 2),
            "videos_per_hour": round(3600 * m["videos"]["done"] / t["tasks_s"], 1),
            "frames_per_s": round(m["frames_read"] / t["tasks_s"], 2), "mb_per_minute": m["storage"]["mb_per_minute"]}


def plain_process_speedup(video: str, max_frames: int) -> dict:
    """The machine's own ceiling for two workers, without Ray: ``faceflow annotate`` of ``video``
    alone, then two at once (one thread each, as a Ray worker); speed-up = 2 x alone / together."""
    from faceflow.runtime.threads import subprocess_env

    env = subprocess_env(1)

    def start(out: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "apps.cli", "annotate", str(video), str(out), "--storage", "compact",
               "--previews", "0", "--max-frames", str(max_frames)]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        codes = [start(Path(tmp) / "alone").wait()]
        alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        procs = [start(Path(tmp) / f"together{k}") for k in range(2)]
        codes += [p.wait() for p in procs]
        together = time.perf_counter() - t0
    if any(codes):
        raise RuntimeError(f"faceflow annotate {video} failed (exit codes {codes})")
    return {"video": Path(video).name, "alone_s": round(alone, 2), "two_at_once_s": round(together, 2),
            "speedup": round(2 * alone / together, 3)}


class AnnotateDatasetBench:
    """annotate-dataset with 1 and 2 Ray workers: videos per hour, frames per second, speed-up
    (target 1.7x), and the estimate for 12,000 one-minute videos."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print only the JSON result")
        p.add_argument("--videos", nargs="+", default=None,
                       help=f"videos (default: {', '.join(DEFAULT_CLIPS)} of the shared media)")
        p.add_argument("--max-frames", type=int, default=60, help="frames annotated of each video")
        p.add_argument("--copies", type=int, default=2, help="times each video is annotated (as another video)")
        p.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the medians are reported")
        p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
        p.add_argument("--estimate-videos", type=int, default=12000, help="videos of the estimated dataset")
        p.add_argument("--estimate-minutes", type=float, default=1.0, help="minutes of each estimated video")
        p.add_argument("--cores", type=int, default=64, help="cores of one machine in the estimate")
        p.add_argument("--nodes", type=int, default=10, help="machines of the cluster in the estimate")
        p.add_argument("--mb-per-minute", type=float, default=None,
                       help="storage per minute for the estimate (default: this run's; `faceflow bench storage` "
                            "measures it on a longer clip)")

    def run(self, args) -> int:
        res = bench_annotate_dataset(_clips(args.videos or DEFAULT_CLIPS), args.max_frames, tuple(args.workers),
                                     args.estimate_videos, args.estimate_minutes, cores=args.cores, nodes=args.nodes,
                                     mb_per_minute=args.mb_per_minute, copies=args.copies, rounds=args.rounds)
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        for r in res["rows"]:
            print(f"{r['workers']} worker(s): {r['videos']} videos, {r['frames']} frames in {r['tasks_s']} s "
                  f"(+{r['ray_start_s']} s starting Ray): {r['videos_per_hour']} videos/h, {r['frames_per_s']} fps")
        e = res["estimate"]
        print(f"speed-up {res['speedup']} (target 1.7; two plain processes: "
              f"{res['machine_ceiling_two_plain_processes']['speedup']}); {e['videos']} x {e['minutes_each']} min: "
              f"{e['machine_64_cores_hours']} h on {e['cores_per_machine']} cores, {e['cluster_hours']} h on "
              f"{e['nodes']} such nodes, {e['storage_tb']} TB")
        return 0


# ---------------------------------------------------------------------- storage

def _train_step_seconds(data: Path, out: Path, steps: int, batch: int, num_workers: int) -> float:
    """Seconds per DFFNet step of ``faceflow train dffnet --preset tiny`` on ``data`` with
    ``num_workers`` data-loader processes: two warm-up steps, then ``steps`` more in a resumed
    run (whose time is the one reported)."""
    base = [sys.executable, "-m", "apps.cli", "train", "dffnet", "--preset", "tiny", "--data", str(data),
            "--out", str(out), "--batch-size", str(batch), "--log-every", "1000", "--ckpt-every", "100000",
            "--val-every", "100000", "--seed", "0", "--num-workers", str(num_workers)]
    for its in (2, 2 + steps):
        proc = subprocess.run(base + ["--iterations", str(its)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"training on {data} failed: {proc.stderr[-2000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds_per_step"])


def _source_bytes(d: Path) -> int:
    """Bytes an annotation keeps as data (data/ and the track / fit arrays; not previews, logs)."""
    from faceflow.annotate.store import directory_bytes

    return directory_bytes(d, "data/*") + directory_bytes(d, "*.npz")


def bench_storage(video: str, frames: int, steps: int = 20, batch: int = 8, read_items: int = 32,
                  num_workers=(0, 1), rounds: int = 2) -> dict:
    """See the module docstring."""
    from faceflow.annotate.pipeline import AnnotateConfig, annotate
    from faceflow.annotate.store import Annotation, convert_annotation, frames_psnr
    from faceflow.data.pseudo import AnnotatedPairs
    from faceflow.geometry.morphable import MorphableModel

    model = MorphableModel.load("skin")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full = tmp / "full"
        man = annotate(video, full, AnnotateConfig(max_frames=frames, previews=0), say=lambda s: None)
        minutes = man["frames_read"] / float(man["fps"]) / 60
        forms = {"full": full}
        for name, codec in (("compact_jpeg95", "jpeg"), ("compact_png", "png")):
            convert_annotation(full, tmp / name, "compact", frames=codec, quality=95, model=model, progress=False)
            forms[name] = tmp / name
        rows = {}
        for name, d in forms.items():
            ds = AnnotatedPairs([d], model=model)
            idx = np.linspace(0, len(ds) - 1, min(read_items, len(ds))).round().astype(int)
            ds[int(idx[0])]
            t0 = time.perf_counter()
            for i in idx:
                ds[int(i)]
            read_ms = 1000 * (time.perf_counter() - t0) / len(idx)
            b = _source_bytes(d)
            rows[name] = {"bytes": b, "mb_per_minute": round(b / 1e6 / minutes, 1), "read_pair_ms": round(read_ms, 1)}
        rows["compact_jpeg95"]["crop_psnr_db"] = round(frames_psnr(Annotation(forms["compact_jpeg95"]),
                                                                   Annotation(full), count=32), 2)
        times: dict[tuple, list[float]] = {}
        for r in range(rounds):  # interleaved, so a drift of the machine's speed hits both forms
            for nw in num_workers:
                for name in ("full", "compact_jpeg95"):
                    run = tmp / f"run_{name}_{nw}_{r}"
                    times.setdefault((name, nw), []).append(_train_step_seconds(forms[name], run, steps, batch, nw))
        for (name, nw), ts in times.items():
            rows[name][f"train_step_s_workers{nw}"] = round(float(np.median(ts)), 3)
            rows[name][f"train_step_s_workers{nw}_rounds"] = [round(t, 3) for t in ts]
    ratio = {f"workers{nw}": round(rows["compact_jpeg95"][f"train_step_s_workers{nw}"]
                                   / rows["full"][f"train_step_s_workers{nw}"], 3) for nw in num_workers}
    return {"benchmark": "storage", "video": Path(video).name, "frames": man["frames_read"], "fps": man["fps"],
            "minutes": round(minutes, 3), "forms": rows, "train_step_ratio_compact_vs_full": ratio,
            "targets": {"compact_mb_per_minute_max": 250, "train_step_ratio_max": 1.3},
            "train": {"preset": "tiny", "batch": batch, "timed_steps": steps, "num_workers": list(num_workers),
                      "rounds": rounds}}


class StorageBench:
    """Storage per minute of video of the full and compact forms, PSNR of the JPEG crops, and
    the DFFNet training step fed from each (targets: compact at most 250 MB/min and 1.3x)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print only the JSON result")
        p.add_argument("--video", default=None, help="the clip (default: EDTalk_uncrop_Obama.mp4 of the shared media)")
        p.add_argument("--frames", type=int, default=250, help="frames annotated (250: 10 s at 25 fps)")
        p.add_argument("--steps", type=int, default=20, help="timed training steps per form and round")
        p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the medians are reported")
        p.add_argument("--batch-size", type=int, default=8, help="training batch (the tiny preset's)")
        p.add_argument("--num-workers", type=int, nargs="+", default=[0, 1],
                       help="data-loader processes to time each form with (0: read in the training process)")

    def run(self, args) -> int:
        res = bench_storage(_clips([args.video or DEFAULT_CLIPS[0]])[0], args.frames, args.steps, args.batch_size,
                            num_workers=tuple(args.num_workers), rounds=args.rounds)
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        for name, r in res["forms"].items():
            steps = ", ".join(f"train step {v} s with {k}" for k, v in r.items()
                              if k.startswith("train_step_s") and not k.endswith("rounds"))
            psnr = f", crops {r['crop_psnr_db']} dB" if "crop_psnr_db" in r else ""
            print(f"{name}: {r['mb_per_minute']} MB/min, read a pair {r['read_pair_ms']} ms"
                  + (f", {steps}" if steps else "") + psnr)
        print(f"train step compact / full: {res['train_step_ratio_compact_vs_full']} (target <= 1.3)")
        return 0


ANNOTATE_DATASET, STORAGE = AnnotateDatasetBench(), StorageBench()
