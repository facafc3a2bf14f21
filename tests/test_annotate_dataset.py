"""annotate-dataset (faceflow.data.annotate_dataset): sources, names and identity splits; a local Ray run
with 2 workers over three real clips and a corrupt file, killed in the middle and rerun; equality
of a video's arrays with the single-video annotate; training (also DDP) on the result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _media import REPO, media

from faceflow.data.annotate_dataset import list_sources, person_and_split, split_of_identity, video_names
from faceflow.engine.dff_tasks import expand_data_paths
from faceflow.errors import FaceflowError

CLIPS = ("videos/EDTalk_uncrop_Obama.mp4", "videos/MimicTalk_Trump_10s.mp4", "videos/LivePortrait_d10.mp4")
OPTIONS = ["--max-frames", "10", "--size", "128", "--previews", "1"]


# ---------------------------------------------------------------------------- sources, names, splits

def test_sources_from_folder_glob_and_list(tmp_path):
    for rel in ("a/x.mp4", "a/b/y.MOV", "a/notes.txt", "c/z.mkv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = list_sources(tmp_path / "a")
    assert [p.name for p in found] == ["y.MOV", "x.mp4"]  # recursive, any case of the suffix, sorted by path
    assert [p.name for p in list_sources(str(tmp_path / "*" / "*.mkv"))] == ["z.mkv"]
    lst = tmp_path / "list.txt"
    lst.write_text("# my clips\nc/z.mkv\n\na/x.mp4  # the first\nc/z.mkv\n")
    assert [p.name for p in list_sources(lst)] == ["x.mp4", "z.mkv"]  # relative to the list, duplicates once
    lst.write_text("gone.mp4\n")
    with pytest.raises(FaceflowError, match="do not exist"):
        list_sources(lst)
    with pytest.raises(FaceflowError, match="no videos found"):
        list_sources(tmp_path / "nothing*")


def test_names_are_unique_and_stable():
    vids = [Path("/d/p1/clip.mp4"), Path("/d/p2/clip.mp4"), Path("/d/p2/other.mp4")]
    names = video_names(vids)
    assert names[vids[2]] == "other"
    assert names[vids[0]] != names[vids[1]] and all(names[v].startswith("clip-") for v in vids[:2])
    assert video_names(list(reversed(vids))) == names
    # an earlier run's names are kept when videos are added or removed
    earlier = {str(v): n for v, n in video_names(vids[1:]).items()}
    assert earlier[str(vids[1])] == "clip"
    again = video_names(vids, earlier)
    assert again[vids[1]] == "clip" and again[vids[0]].startswith("clip-") and again[vids[2]] == "other"
    assert video_names([Path("/e/clip.mp4")], earlier)[Path("/e/clip.mp4")].startswith("clip-")  # name taken

def test_identity_split_is_stable_and_proportional():
    splits = [split_of_identity(f"person{i}") for i in range(20000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.8) < 0.015 and abs(share["val"] - 0.1) < 0.01 and abs(share["test"] - 0.1) < 0.01
    assert all(split_of_identity(f"person{i}") == splits[i] for i in range(100))  # deterministic
    assert {split_of_identity(f"p{i}", (0, 0, 1)) for i in range(50)} == {"test"}
    with pytest.raises(FaceflowError, match="split-fractions"):
        split_of_identity("p", (1, -1, 0))
    # the project's own clips keep their identity split; others go by person
    assert person_and_split(Path("/x/EDTalk_uncrop_Obama.mp4"), "video")[1] == "test"
    a, b = person_and_split(Path("/x/id1/a.mp4"), "folder"), person_and_split(Path("/x/id1/b.mp4"), "folder")
    assert a == b and a[0] == "id1"


# ---------------------------------------------------------------------------- the Ray run

def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "apps.cli", *map(str, args)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid``, as a crash of the machine or the job would."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
            try:
                os.kill(int(stat.parent.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three real clips and a corrupt file annotated on Ray with 2 workers; the first run is
    killed (SIGKILL to all its processes) as soon as one video is done, then rerun to the end.
    Returns (out dir, facts about the kill, the rerun's exit status)."""
    root = tmp_path_factory.mktemp("ds")
    src = root / "src"
    src.mkdir()
    for rel in CLIPS:
        (src / Path(rel).name).symlink_to(media(rel))
    (src / "corrupt.mp4").write_bytes(media(CLIPS[0]).read_bytes()[:30000])  # truncated: no moov atom
    out = root / "out"
    cmd = _cli("annotate-dataset", src, out, "--workers", 2, *OPTIONS)
    log = open(root / "first.log", "w")
    proc = subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 300 and proc.poll() is None:
        done = sorted(out.glob("videos/*/manifest.json"))
        if done:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the first run ended before the kill: {(root / 'first.log').read_text()[-2000:]}"
    _kill_session(proc.pid)  # the driver, Ray's daemons and its workers (each in a process group of its own)
    proc.wait()
    kill = {"done_at_kill": {p.parent.name: p.stat().st_mtime_ns for p in out.glob("videos/*/manifest.json")},
            "failed_at_kill": [p.parent.name for p in out.glob("videos/*/failed.json")],
            "dataset_manifest_at_kill": (out / "manifest.json").exists()}
    rerun = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    kill["manifest_after_rerun"] = json.loads((out / "manifest.json").read_text())  # later tests rewrite it
    return out, kill, rerun


@pytest.mark.slow
def test_killed_run_resumes_and_records_the_corrupt_file(dataset):
    out, kill, rerun = dataset
    assert rerun.returncode == 3, rerun.stdout[-2000:] + rerun.stderr[-2000:]  # 3: some video failed
    assert not kill["dataset_manifest_at_kill"]  # the dataset manifest is written last
    assert 1 <= len(kill["done_at_kill"]) < 3
    m = kill["manifest_after_rerun"]
    assert m["kind"] == "annotated-dataset" and m["complete"]
    before = len(kill["done_at_kill"]) + len(kill["failed_at_kill"])  # not attempted again by the rerun
    assert m["videos"] == {"total": 4, "done": 3, "failed": 1, "incomplete": 0,
                           "done_this_run": 3 - len(kill["done_at_kill"]), "skipped": before}
    # finished videos were not redone
    for name, mtime in kill["done_at_kill"].items():
        assert (out / "videos" / name / "manifest.json").stat().st_mtime_ns == mtime
    assert [f["name"] for f in m["failed"]] == ["corrupt"] and "cannot be opened" in m["failed"][0]["error"]
    rows = {r["name"]: r for r in m["list"]}
    per_video = [json.loads((out / "videos" / n / "manifest.json").read_text()) for n in rows if n != "corrupt"]
    assert m["frames"] == sum(v["frames_kept"] for v in per_video) == 30
    assert m["pairs"] == sum(v["pairs"]["pairs"] for v in per_video) > 27
    # fit statistics pooled over every frame of every video
    errs = np.concatenate([np.load(out / "videos" / n / "fit.npz")["lmk_error"] for n in rows if n != "corrupt"])
    assert m["fit"]["median_px"] == pytest.approx(float(np.median(errs)))
    assert m["fit"]["p95_px"] == pytest.approx(float(np.percentile(errs, 95)))
    # identity splits: each done video in the list of its split
    for s in ("train", "val", "test"):
        listed = {Path(p).name for p in (out / "splits" / f"{s}.txt").read_text().split()}
        assert listed == {n for n, r in rows.items() if r["split"] == s and r["status"] == "done"}
        assert m["splits"][s]["videos"] == len(listed)
    assert all(v["storage"] == "compact" for v in per_video)


@pytest.mark.slow
def test_video_equals_single_video_annotate(dataset, tmp_path):
    """The single-video command with the same options and the same thread limits as a Ray worker
    (the fit's BLAS sums depend on the thread count) writes the very same arrays."""
    from faceflow.runtime.threads import subprocess_env

    out, _, _ = dataset
    single = tmp_path / "single"
    proc = subprocess.run(_cli("annotate", media(CLIPS[2]), single, "--storage", "compact", *OPTIONS),
                          env={**_env(), **subprocess_env(1)}, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ray_dir = out / "videos" / Path(CLIPS[2]).stem
    names = sorted(f.name for f in (single / "data").iterdir() if not f.name.startswith("."))
    assert names == sorted(f.name for f in (ray_dir / "data").iterdir() if not f.name.startswith("."))
    for name in names:
        np.testing.assert_array_equal(np.load(single / "data" / name), np.load(ray_dir / "data" / name), err_msg=name)


@pytest.mark.slow
def test_rerun_with_other_options_refused_and_retry_failed(dataset):
    out, _, _ = dataset
    other = subprocess.run(_cli("annotate-dataset", out.parent / "src", out, "--workers", 1, "--max-frames", 12,
                                "--size", 128), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "other options" in other.stderr
    failed = out / "videos" / "corrupt" / "failed.json"
    before = failed.stat().st_mtime_ns
    done = {p: p.stat().st_mtime_ns for p in out.glob("videos/*/manifest.json")}
    retry = subprocess.run(_cli("annotate-dataset", out.parent / "src", out, "--workers", 1, "--retry-failed",
                                *OPTIONS), env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 3, retry.stderr[-2000:]
    assert failed.stat().st_mtime_ns != before  # tried again (and failed again)
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # the done ones untouched
    m = json.loads((out / "manifest.json").read_text())
    assert m["videos"]["done_this_run"] == 0 and m["videos"]["skipped"] == 3


@pytest.mark.slow
def test_training_reads_the_dataset_and_its_splits(dataset, tmp_path):
    out, _, _ = dataset
    vids = expand_data_paths([out])
    assert sorted(v.name for v in vids) == sorted(Path(c).stem for c in CLIPS)
    # the three clips are test persons in the project's split table, and the split lists say so
    test = expand_data_paths([out / "splits" / "test.txt"])
    assert sorted(v.name for v in test) == sorted(v.name for v in vids)
    assert (out / "splits" / "train.txt").read_text() == ""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(FaceflowError, match="name no annotated video"):
        expand_data_paths([empty])


def _distributed_ok() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


@pytest.mark.slow
@pytest.mark.skipif(not _distributed_ok(), reason="torch.distributed with gloo is not available")
def test_ddp_training_on_the_dataset(dataset, tmp_path):
    """Two DDP processes (gloo, CPU) train DFFNet on the dataset's OUT_DIR (its compact videos as
    shards; each rank reads its slice of every global batch, faceflow.engine.sampler)."""
    out, _, _ = dataset
    run = tmp_path / "run"
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "apps.cli",
           "train", "dffnet", "--preset", "tiny", "--data", str(out), "--out", str(run), "--iterations", "2",
           "--batch-size", "4", "--log-every", "1"]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] == 2 and summary["status"] == "done"
