"""Tests of faceflow.io: video probe/read/write, images, atomic files.

Synthetic media is generated on the fly (small and fast).  The real clips live in
``$FACEFLOW_MEDIA`` or ``<repo>/../shared/media``; those tests skip when it is
absent (and fail instead when FACEFLOW_REQUIRE_ASSETS=1, as in CI).
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _media import media

from faceflow import io
from faceflow.errors import MediaError


def ffmpeg(*args: str) -> None:
    subprocess.run([io.video._ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *args], check=True)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def smooth_frames(t: int, h: int, w: int) -> np.ndarray:
    """(T, H, W, 3) uint8: colour gradients plus a moving Gaussian blob."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for i in range(t):
        blob = np.exp(-((xx - 20 - i) ** 2 + (yy - 30 - 10 * np.sin(i / 8)) ** 2) / (2 * 12.0 ** 2))
        out.append(np.stack([xx / w * 200 + 30 * blob, yy / h * 180 + 50 * blob, 100 + 100 * blob], -1))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def index_frames(t: int, h: int = 48, w: int = 64) -> np.ndarray:
    """(T, H, W, 3) uint8 where frame i is a flat grey of value 8 * (i + 1)."""
    return np.stack([np.full((h, w, 3), 8 * (i + 1), np.uint8) for i in range(t)])


def decode_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 8.0)) - 1


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


@pytest.fixture(scope="module")
def index_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("idx") / "index.mp4"
    io.write_video(path, index_frames(30), fps=25)
    return path


# ----------------------------------------------------------------------------- synthetic round trips
def test_round_trip_odd_size_is_padded_and_accurate(tmp_path):
    frames = smooth_frames(40, 75, 101)  # odd width and height
    out = io.write_video(tmp_path / "smooth.mp4", frames, fps=25)
    assert out == str(tmp_path / "smooth.mp4")
    assert os.listdir(tmp_path) == ["smooth.mp4"]  # no partial file left

    info = io.probe(out)
    # the writer pads odd sizes to even (repeating the last column/row); the reader returns that size
    assert (info.width, info.height) == (102, 76)
    assert info.fps == 25 and info.num_frames == 40 and info.codec == "h264"
    assert not info.has_audio and info.rotation == 0
    assert io.probe(out, exact=True).num_frames == 40

    video, info2 = io.read_video(out)
    assert info2 == info
    assert video.shape == (40, 76, 102, 3) and video.dtype == np.uint8
    assert psnr(video[:, :75, :101], frames) > 35.0
    # padding repeats the edge: the extra column looks like the last real one
    assert np.abs(video[:, :75, 101].astype(int) - frames[:, :, 100]).mean() < 4


def test_fractional_fps_round_trip(tmp_path):
    out = io.write_video(tmp_path / "ntsc.mp4", index_frames(12), fps=30000 / 1001)
    info = io.probe(out)
    assert info.fps == pytest.approx(30000 / 1001) and info.num_frames == 12


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), list(range(30))),
    (dict(start=5, step=2), list(range(5, 30, 2))),
    (dict(start=5, step=2, max_frames=4), [5, 7, 9, 11]),
    (dict(step=3), list(range(0, 30, 3))),
    (dict(start=29), [29]),
    (dict(start=17, max_frames=1), [17]),
    (dict(start=40), []),
    (dict(max_frames=0), []),
])
def test_start_step_max_frames_select_the_right_indices(index_video, kwargs, expected):
    with io.VideoReader(index_video, **kwargs) as reader:
        assert reader.expected_frames == len(expected)
        got = [decode_index(f) for f in reader]
    assert got == expected


def test_reader_resize_streaming_and_writable_frames(index_video):
    frames = list(io.read_frames(index_video, start=3, max_frames=2, size=(32, 20)))
    assert [f.shape for f in frames] == [(20, 32, 3)] * 2
    assert [decode_index(f) for f in frames] == [3, 4]
    frames[0][0, 0] = 0  # frames are ordinary writable arrays


def test_reader_kills_ffmpeg_on_early_close(index_video):
    reader = io.VideoReader(index_video)
    next(reader)
    proc = reader._proc
    reader.close()
    assert proc.returncode is not None  # reaped
    assert list(reader) == []
    with pytest.raises(RuntimeError):
        with io.VideoReader(index_video) as reader:
            next(reader)
            proc = reader._proc
            raise RuntimeError("boom")
    assert proc.returncode is not None and reader._proc is None


def test_read_video_refuses_too_large(index_video):
    frame_bytes = 64 * 48 * 3
    with pytest.raises(MediaError, match=r"30 frames of 64x48 need .* GiB"):
        io.read_video(index_video, max_bytes=10 * frame_bytes)
    video, _ = io.read_video(index_video, max_frames=10, max_bytes=10 * frame_bytes)
    assert video.shape == (10, 48, 64, 3)


def test_audio_passthrough(tmp_path):
    src = tmp_path / "with_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-f", "lavfi",
           "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(src))
    assert io.probe(src).has_audio
    frames = smooth_frames(50, 48, 64)
    out = io.write_video(tmp_path / "dub.mp4", frames, fps=25, audio_from=src)
    info = io.probe(out, exact=True)
    assert info.has_audio and info.num_frames == 50
    # a source without audio is accepted and gives a silent video
    mute = io.write_video(tmp_path / "mute.mp4", frames[:5], fps=25)
    silent = io.write_video(tmp_path / "silent.mp4", frames[:5], fps=25, audio_from=mute)
    assert not io.probe(silent).has_audio
    # audio shorter than the video: every frame is kept
    short = tmp_path / "short.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(short))
    kept = io.probe(io.write_video(tmp_path / "kept.mp4", frames, fps=25, audio_from=short), exact=True)
    assert kept.has_audio and kept.num_frames == 50
    # audio longer than the video is cut to the video's duration
    long = tmp_path / "long.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=5", str(long))
    cut = io.probe(io.write_video(tmp_path / "cut.mp4", frames[:25], fps=25, audio_from=long))
    assert cut.has_audio and cut.duration < 1.2
    assert leftovers(tmp_path) == []


def test_variable_frame_rate_start_is_exact(tmp_path):
    src = io.write_video(tmp_path / "cfr.mp4", index_frames(30), fps=30)
    vfr = tmp_path / "vfr.mp4"  # drop every third frame but keep the timestamps of the others
    ffmpeg("-i", src, "-vf", "select='not(eq(mod(n,3),1))'", "-fps_mode", "vfr", "-c:v", "libx264", str(vfr))
    info = io.probe(vfr, exact=True)
    assert info.variable_fps and info.num_frames == 20 and info.fps == 20
    assert not io.probe(src).variable_fps
    kept = [i for i in range(30) if i % 3 != 1]
    assert [decode_index(f) for f in io.read_frames(vfr, start=5, step=2)] == kept[5::2]
    assert [decode_index(f) for f in io.read_frames(vfr, start=13, max_frames=1)] == [kept[13]]


def test_rotation_metadata_gives_displayed_size(tmp_path):
    src = tmp_path / "landscape.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x90:rate=25:duration=0.4", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(src))
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(src), "-c", "copy", str(rotated))  # 90 deg counter-clockwise
    info = io.probe(rotated)
    assert info.rotation == 270  # reported clockwise, like the legacy "rotate" tag
    assert (info.width, info.height) == (90, 160)
    frame = next(io.read_frames(rotated))
    assert frame.shape == (160, 90, 3)
    assert next(io.read_frames(rotated, step=2, size=(45, 80))).shape == (80, 45, 3)


# ----------------------------------------------------------------------------- real clips
def test_probe_real_h264_clip_with_audio():
    info = io.probe(media("videos/EDTalk_uncrop_Obama.mp4"))
    assert (info.width, info.height, info.fps) == (450, 450, 25.0)
    assert info.codec == "h264" and info.has_audio and info.rotation == 0
    assert abs(info.num_frames - 500) <= 1 and info.duration == pytest.approx(20.0, abs=0.05)


def test_real_clip_seek_matches_sequential_decode():
    path = media("videos/EDTalk_uncrop_Obama.mp4")
    seeked = next(io.read_frames(path, start=137, max_frames=1))
    sequential = list(io.read_frames(path, step=137, max_frames=2))[1]  # frames 0 and 137
    assert seeked.shape == (450, 450, 3)
    assert np.array_equal(seeked, sequential)


def test_hevc_portrait_clip():
    path = media("videos/LatentSync_demo1_video.mp4")
    info = io.probe(path)
    # stored as 1080x1920 with no rotation metadata; displayed size is the same
    assert (info.width, info.height) == (1080, 1920) and info.rotation == 0
    assert info.codec == "hevc" and info.fps == 25.0 and info.num_frames == 250 and info.has_audio
    start = time.time()
    with io.VideoReader(path, max_frames=3) as reader:
        frames = list(reader)
    assert [f.shape for f in frames] == [(1920, 1080, 3)] * 3
    assert frames[0].std() > 10  # real picture content, not a blank frame
    assert time.time() - start < 20  # streams: no need to decode the whole clip
    small = next(io.read_frames(path, size=(270, 480)))
    assert small.shape == (480, 270, 3)
    # ~600 frames of 1080x1920 (header estimate: 601) are 3.5 GiB: refused before decoding
    longer = media("videos/LatentSync_demo3_video.mp4")
    with pytest.raises(MediaError, match=r"60[01] frames of 1080x1920 need 3\.48 GiB"):
        io.read_video(longer)
    assert io.read_video(longer, max_frames=2)[0].shape == (2, 1920, 1080, 3)


def test_mpeg4_clip():
    info = io.probe(media("extra/DPE_d.mp4"))
    assert info.codec == "mpeg4" and (info.width, info.height) == (256, 256)
    assert not info.has_audio and info.num_frames == 334
    assert next(io.read_frames(info.path, start=100)).shape == (256, 256, 3)


@pytest.mark.parametrize("rel, frames", [("extra/video-retalking_2.mp4", 125),
                                         ("extra/video-retalking_1.mp4", 135)])
def test_exact_frame_count_matches_sources(rel, frames):
    info = io.probe(media(rel), exact=True)
    assert info.num_frames == frames
    assert abs(io.probe(info.path).num_frames - frames) <= 1  # the estimate is close


def test_real_variable_frame_rate_clip():
    path = media("extra/video-retalking_1.mp4")  # "22.13 fps, 30 tbr": 30 fps timing with gaps
    assert io.probe(path).variable_fps
    frames = list(io.read_frames(path, step=120))  # frames 0 and 120, counted while decoding
    assert len(frames) == 2
    assert np.array_equal(next(io.read_frames(path, start=120)), frames[1])


def test_read_real_still_image():
    img = io.read_image(media("stills/deepface_img11.jpg"))
    assert img.shape == (800, 600, 3) and img.dtype == np.uint8


# ----------------------------------------------------------------------------- bad inputs
def test_bad_video_inputs(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        io.probe(tmp_path / "missing.mp4")
    with pytest.raises(MediaError, match="directory"):
        io.VideoReader(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty \(0 bytes\).*empty.mp4"):
        io.probe(tmp_path / "empty.mp4")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    with pytest.raises(MediaError, match="noise.mp4: cannot be opened as a video"):
        io.read_video(tmp_path / "noise.mp4")
    (tmp_path / "notes.txt").write_text("hello, I am not a video\n" * 50)
    with pytest.raises(MediaError, match="notes.txt: is a text file"):  # not ffmpeg's ANSI-art "video"
        io.probe(tmp_path / "notes.txt")
    for bad in (123, None, b"/tmp/x.mp4"):
        with pytest.raises(MediaError, match="str or os.PathLike"):
            io.probe(bad)


def test_audio_only_and_still_images_are_not_videos(tmp_path):
    audio = tmp_path / "voice.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", str(audio))
    with pytest.raises(MediaError, match="no video stream.*Audio"):
        io.probe(audio)
    png = tmp_path / "still.png"
    io.write_image(png, smooth_frames(1, 48, 64)[0])
    with pytest.raises(MediaError, match="still image"):
        io.VideoReader(png)
    disguised = tmp_path / "still.mp4"  # a JPEG with a video extension
    io.write_image(tmp_path / "still.jpg", smooth_frames(1, 48, 64)[0])
    os.rename(tmp_path / "still.jpg", disguised)
    with pytest.raises(MediaError, match="still image"):
        io.probe(disguised)
    video, info = io.read_video(png, allow_still=True)
    assert video.shape == (1, 48, 64, 3) and info.num_frames == 1


def test_absurd_sizes():
    header = ", from 'x.mp4':\n  Duration: 00:00:01.00, start: 0.000000, bitrate: 1 kb/s\n" \
             "  Stream #0:0: Video: h264 (High), yuv420p, {}, 25 fps, 25 tbr, 12800 tbn\n"
    fields, still = io.video._parse_header("x.mp4", "mov,mp4", header.format("640x480"))
    assert (fields["width"], fields["height"], fields["num_frames"], still) == (640, 480, 25, False)
    for size in ("20000x480", "640x0"):
        with pytest.raises(MediaError, match="absurd frame size"):
            io.video._parse_header("x.mp4", "mov,mp4", header.format(size))


def test_bad_reader_arguments(index_video):
    for kwargs in (dict(start=-1), dict(step=0), dict(max_frames=1.5), dict(size=(0, 10)),
                   dict(size=(10,)), dict(start=True)):
        with pytest.raises(MediaError):
            io.VideoReader(index_video, **kwargs)


def test_truncated_files(tmp_path):
    # header (moov atom) at the end, as ffmpeg writes by default and as in most real clips:
    # a truncated copy has no header at all -> MediaError
    plain = tmp_path / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=128x96:rate=25:duration=2", "-c:v", "libx264", str(plain))
    data = plain.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut.mp4: cannot be opened.*moov atom not found"):
        io.probe(tmp_path / "cut.mp4")
    # header first ("faststart", as VideoWriter writes): the frames that are there decode,
    # without error and without hanging; the header still describes the whole clip
    full = io.write_video(tmp_path / "full.mp4", smooth_frames(60, 96, 128), fps=25)
    data = Path(full).read_bytes()
    (tmp_path / "cut2.mp4").write_bytes(data[: len(data) // 2])
    start = time.time()
    assert io.probe(tmp_path / "cut2.mp4").num_frames == 60
    frames = list(io.read_frames(tmp_path / "cut2.mp4"))
    assert 0 < len(frames) < 60
    assert time.time() - start < 10


def test_truncated_real_clips(tmp_path):
    data = media("extra/video-retalking_2.mp4").read_bytes()  # moov atom at the end
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="moov atom not found"):
        io.read_video(tmp_path / "cut.mp4")
    data = media("extra/TPSMM_driving.mp4").read_bytes()  # moov atom first
    (tmp_path / "cut2.mp4").write_bytes(data[: len(data) // 3])
    frames, info = io.read_video(tmp_path / "cut2.mp4")
    assert info.num_frames == 169 and 0 < len(frames) < 169


# ----------------------------------------------------------------------------- writer failures
def test_writer_exception_leaves_nothing(tmp_path):
    final = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with io.VideoWriter(final, fps=25) as writer:
            for frame in smooth_frames(5, 48, 64):
                writer.write(frame)
            raise RuntimeError("model crashed")
    assert os.listdir(tmp_path) == []
    # an existing file is left untouched by a failed write
    final.write_bytes(b"old")
    with pytest.raises(MediaError, match="is 32x32 but earlier frames are 64x48"):
        with io.VideoWriter(final, fps=25) as writer:
            writer.write(np.zeros((48, 64, 3), np.uint8))
            writer.write(np.zeros((32, 32, 3), np.uint8))
    assert final.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.mp4"]


def test_writer_validates_frames_and_arguments(tmp_path):
    with io.VideoWriter(tmp_path / "v.mp4", fps=25) as writer:
        for bad, msg in ((np.zeros((48, 64, 3), np.float32), "uint8"),
                         (np.zeros((48, 64), np.uint8), r"\(H, W, 3\)"),
                         (np.zeros((48, 64, 4), np.uint8), r"\(H, W, 3\)"),
                         ([[0]], "numpy array"),
                         (np.zeros((0, 64, 3), np.uint8), "absurd")):
            with pytest.raises(MediaError, match=msg):
                writer.write(bad)
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert io.probe(tmp_path / "v.mp4").num_frames == 1
    with pytest.raises(MediaError, match="no frames"):
        with io.VideoWriter(tmp_path / "none.mp4", fps=25):
            pass
    for kwargs in (dict(fps=0), dict(fps=float("nan")), dict(fps=25, crf=99), dict(fps=25, preset="quick")):
        with pytest.raises(MediaError):
            io.VideoWriter(tmp_path / "x.mp4", **kwargs)
    with pytest.raises(MediaError, match="directory"):
        io.VideoWriter(tmp_path, fps=25)
    with pytest.raises(MediaError, match="not found"):
        io.VideoWriter(tmp_path / "x.mp4", fps=25, audio_from=tmp_path / "nope.wav")
    with pytest.raises(MediaError, match=r"\(T, H, W, 3\)"):
        io.write_video(tmp_path / "x.mp4", np.zeros((48, 64, 3), np.uint8), fps=25)
    assert sorted(os.listdir(tmp_path)) == ["v.mp4"]


def test_ffmpeg_failure_leaves_nothing(tmp_path):
    with pytest.raises(MediaError, match="ffmpeg"):
        io.write_video(tmp_path / "clip.notaformat", smooth_frames(5, 48, 64), fps=25)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- images and atomic files
def test_image_round_trips(tmp_path):
    rgb = smooth_frames(1, 40, 50)[0]
    io.write_image(tmp_path / "rgb.png", rgb)
    assert np.array_equal(io.read_image(tmp_path / "rgb.png"), rgb)
    assert np.array_equal(cv2.imread(str(tmp_path / "rgb.png"))[..., ::-1], rgb)  # really RGB order

    gray = rgb[..., 0]
    io.write_image(tmp_path / "gray.png", gray)
    back = io.read_image(tmp_path / "gray.png")
    assert back.shape == (40, 50, 3) and all(np.array_equal(back[..., c], gray) for c in range(3))

    rgba = np.concatenate([rgb, np.full((40, 50, 1), 128, np.uint8)], -1)
    io.write_image(tmp_path / "rgba.png", rgba)
    assert cv2.imread(str(tmp_path / "rgba.png"), cv2.IMREAD_UNCHANGED).shape == (40, 50, 4)
    assert np.array_equal(io.read_image(tmp_path / "rgba.png"), rgb)  # alpha dropped

    io.write_image(tmp_path / "float.png", rgb / 255.0)
    assert np.array_equal(io.read_image(tmp_path / "float.png"), rgb)
    io.write_image(tmp_path / "photo.jpg", rgba)
    assert psnr(io.read_image(tmp_path / "photo.jpg"), rgb) > 35

    cv2.imwrite(str(tmp_path / "deep.png"), (rgb[..., ::-1].astype(np.uint16) * 257))  # 16-bit
    assert np.array_equal(io.read_image(tmp_path / "deep.png"), rgb)
    assert leftovers(tmp_path) == []


def test_bad_images(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        io.read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        io.read_image(tmp_path / "empty.png")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg" * 10)
    with pytest.raises(MediaError, match="junk.jpg: not a readable image"):
        io.read_image(tmp_path / "junk.jpg")
    with pytest.raises(MediaError, match="directory"):
        io.read_image(tmp_path)
    for bad, msg in ((np.full((4, 4, 3), 2.0), r"\[0, 1\]"), (np.zeros((4, 4, 2), np.uint8), "shape"),
                     (np.zeros((4, 4), np.int32), "dtype"), (np.full((4, 4), np.nan), "NaN"),
                     ("img", "numpy")):
        with pytest.raises(MediaError, match=msg):
            io.write_image(tmp_path / "bad.png", bad)
    with pytest.raises(MediaError, match="extension"):
        io.write_image(tmp_path / "bad.xyz", np.zeros((4, 4), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["empty.png", "junk.jpg"]


def test_atomic_path_and_save_npy(tmp_path):
    target = tmp_path / "sub" / "data.npy"
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert io.save_npy(target, arr) == str(target)
    assert np.array_equal(np.load(target), arr)
    with pytest.raises(ValueError):
        with io.atomic_path(target) as tmp:
            assert Path(tmp).parent == target.parent and tmp != str(target)
            Path(tmp).write_bytes(b"half written")
            raise ValueError("interrupted")
    assert np.array_equal(np.load(target), arr)  # old content kept
    with pytest.raises(MediaError):
        io.save_npy(target, np.array([object()]))
    with io.atomic_path(tmp_path / "note.txt") as tmp:
        Path(tmp).write_text("done")
    assert (tmp_path / "note.txt").read_text() == "done"
    assert sorted(os.listdir(target.parent)) == ["data.npy"] and leftovers(tmp_path) == []
