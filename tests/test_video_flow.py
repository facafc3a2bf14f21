"""The whole-video flow (faceflow.outputs.video, `faceflow flow VIDEO --out DIR`): a clip made from
a still moved by a known amount per frame (exact 2D motion), resuming after an interruption, the
mp4 (frame count, duration, audio), the summary, bad options; and a real clip end to end."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from _media import media

from faceflow import io as vio
from faceflow.errors import FaceflowError, MediaError
from faceflow.outputs.config import VideoFlowConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SHIFT = 1.5  # pixels per frame, to the right


@pytest.fixture(scope="module")
def ff():
    from faceflow.estimate import FaceFlow

    return FaceFlow.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    """8 frames at 10 fps: a still (256x256) translated by SHIFT px per frame, nearly lossless H.264."""
    still = cv2.resize(vio.read_image(media("stills/LivePortrait_d12.jpg")), (256, 256), interpolation=cv2.INTER_AREA)
    frames = [cv2.warpAffine(still, np.float32([[1, 0, SHIFT * t - 5], [0, 1, 0]]), (256, 256),
                             flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT) for t in range(8)]
    path = tmp_path_factory.mktemp("clip") / "moving.mp4"
    vio.write_video(path, frames, fps=10.0, crf=4)
    return path


def test_moving_still_gives_its_motion_and_a_watchable_mp4(ff, moving_clip, tmp_path):
    from faceflow.outputs.video import video_flow

    out = tmp_path / "run"
    video_flow(ff, moving_clip, out, VideoFlowConfig(batch_size=3), say=lambda s: None)
    P = 7
    flow = np.load(out / "flow3d.npy", mmap_mode="r")
    mask = np.load(out / "mask.npy", mmap_mode="r")
    tr = np.load(out / "transforms.npy")
    pairs = np.load(out / "pairs.npy")
    assert flow.shape == (P, 224, 224, 3) and flow.dtype == np.float16 and mask.shape == (P, 224, 224)
    np.testing.assert_array_equal(pairs, np.stack([np.arange(P), np.arange(1, P + 1)], 1))
    # the flow in image pixels: SHIFT to the right, nothing down, no depth motion
    for p in range(P):
        s = float(np.sqrt(abs(np.linalg.det(tr[p][:, :2]))))
        f = flow[p][mask[p]].astype(np.float32) / s
        # the template is rotated against the image: map the template flow back with the transform's linear part
        lin = tr[p][:, :2] / s
        img = f[:, :2] @ np.linalg.inv(lin).T
        assert abs(np.median(img[:, 0]) - SHIFT) < 0.3 and abs(np.median(img[:, 1])) < 0.3, (p, np.median(img, 0))
        assert abs(np.median(f[:, 2])) < 0.3
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert [int(r["frame1"]) for r in rows] == list(range(P)) and {r["status"] for r in rows} == {"ok"}
    assert all(abs(float(r["mean_px"]) - SHIFT) < 0.5 for r in rows)
    # the video: one frame per pair at the clip's rate, three titled panels and a legend below
    info = vio.probe(out / "flow.mp4", exact=True)
    assert info.num_frames == P and info.fps == pytest.approx(10.0) and info.duration == pytest.approx(0.7, abs=0.05)
    assert info.height > 360 and info.width >= 3 * 360
    man = json.loads((out / "manifest.json").read_text())
    assert man["summary"]["pairs"] == P and man["colour_scale_px"] == 2.0  # p99 ~1.5-1.9 px, rounded up
    assert not list(out.glob(".*partial*"))
    # a rerun with another pair threshold and panel size: the flows are kept, the summary and the video redone
    before = (out / "flow3d.npy").stat().st_mtime_ns
    video_flow(ff, moving_clip, out, VideoFlowConfig(batch_size=3, max_shift=0.001, display_height=200),
               say=lambda s: None)
    assert (out / "flow3d.npy").stat().st_mtime_ns == before
    assert {r["status"] for r in csv.DictReader(open(out / "summary.csv"))} == {"fast"}
    assert vio.probe(out / "flow.mp4").height < info.height


def test_interrupted_run_resumes_to_the_same_result(ff, moving_clip, tmp_path, monkeypatch):
    from faceflow.outputs import video as vf

    full = tmp_path / "full"
    vf.video_flow(ff, moving_clip, full, VideoFlowConfig(batch_size=2, video=False), say=lambda s: None)
    real = vf._run_batch
    calls = {"n": 0}

    def dies_on_the_third_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "cut"
    monkeypatch.setattr(vf, "_run_batch", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        vf.video_flow(ff, moving_clip, out, VideoFlowConfig(batch_size=2, video=False), say=lambda s: None)
    assert not (out / "flow3d.npy").exists() and (out / ".flow3d.partial.npy").exists()
    assert json.loads((out / "state.json").read_text())["stages"]["flows"]["pairs_done"] == 4
    monkeypatch.setattr(vf, "_run_batch", real)
    seen = []
    vf.video_flow(ff, moving_clip, out, VideoFlowConfig(batch_size=2, video=False), say=seen.append)
    assert any("resuming at pair 4" in s for s in seen)
    np.testing.assert_array_equal(np.load(out / "flow3d.npy"), np.load(full / "flow3d.npy"))
    assert (out / "summary.csv").read_text() == (full / "summary.csv").read_text()
    # other options on the same directory are refused; --overwrite starts afresh
    with pytest.raises(FaceflowError, match="--overwrite"):
        vf.video_flow(ff, moving_clip, out, VideoFlowConfig(gap=2, video=False), say=lambda s: None)
    m = vf.video_flow(ff, moving_clip, out, VideoFlowConfig(gap=2, video=False), overwrite=True, say=lambda s: None)
    assert m["summary"]["pairs"] == 6 and np.load(out / "flow3d.npy", mmap_mode="r").shape[0] == 6


def test_bad_options_and_videos(ff, moving_clip, tmp_path):
    from faceflow.outputs.video import video_flow

    for kw, msg in (({"gap": 0}, "--gap"), ({"max_frames": 1}, "--max-frames"), ({"batch_size": 0}, "--batch-size"),
                    ({"max_flow": -1.0}, "--max-flow"), ({"display_height": 8}, "--display-height")):
        with pytest.raises(FaceflowError, match=msg):
            VideoFlowConfig(**kw)
    with pytest.raises(MediaError, match="past the end"):
        video_flow(ff, moving_clip, tmp_path / "a", VideoFlowConfig(start=50))
    with pytest.raises(MediaError, match="no pair"):
        video_flow(ff, moving_clip, tmp_path / "b", VideoFlowConfig(start=6, gap=2))
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError):
        video_flow(ff, bad, tmp_path / "c")
    blank = tmp_path / "blank.mp4"
    vio.write_video(blank, [np.full((64, 64, 3), 100, np.uint8)] * 6, fps=5.0)
    from faceflow.face.landmarks import NoFaceError
    with pytest.raises(NoFaceError):
        video_flow(ff, blank, tmp_path / "d")
    assert not (tmp_path / "d" / "manifest.json").exists()


@pytest.mark.slow
def test_real_clip_through_the_command_with_audio(tmp_path):
    from faceflow.__main__ import main

    video = media("videos/EDTalk_uncrop_Obama.mp4")
    out = tmp_path / "obama"
    assert main(["flow", str(video), "--out", str(out), "--start", "25", "--max-frames", "26", "--device", "cpu",
                 "--display-height", "240"]) == 0
    info = vio.probe(out / "flow.mp4", exact=True)
    assert info.num_frames == 25 and info.duration == pytest.approx(1.0, abs=0.06) and info.has_audio
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert len(rows) == 25 and rows[0]["frame1"] == "25" and float(rows[0]["time_s"]) == pytest.approx(1.0)
    assert sum(r["status"] in ("ok", "fast") for r in rows) == 25
    # a talking head moves little between consecutive frames: well under the colour scale
    man = json.loads((out / "manifest.json").read_text())
    assert 0.05 < man["summary"]["mean_px_clip_mean"] < man["colour_scale_px"]
    # the same run again resumes everything: nothing recomputed
    before = (out / "flow3d.npy").stat().st_mtime_ns
    assert main(["flow", str(video), "--out", str(out), "--start", "25", "--max-frames", "26", "--device", "cpu",
                 "--display-height", "240"]) == 0
    assert (out / "flow3d.npy").stat().st_mtime_ns == before


def test_stopwatch_sums_laps_of_one_name_and_resumes_from_earlier_totals(monkeypatch):
    from faceflow.runtime import stopwatch

    ticks = iter([10.0, 10.5, 11.0, 13.0, 13.25])
    monkeypatch.setattr(stopwatch.time, "perf_counter", lambda: next(ticks))
    sw = stopwatch.Stopwatch({"decode": 1.0})              # 1 s from an earlier session
    sw.lap("decode")                                       # +0.5
    sw.lap("net")                                          # +0.5
    sw.lap("decode")                                       # +2.0
    assert sw.laps == {"decode": 3.5, "net": 0.5} and sw.total() == 3.25
    assert sw.rounded(1) == {"decode": 3.5, "net": 0.5}
