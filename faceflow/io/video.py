"""Videos through ffmpeg.

Frames are RGB ``np.uint8`` arrays of shape ``(H, W, 3)``.  Videos go through ffmpeg-python
driving imageio-ffmpeg's bundled ffmpeg (no system ffmpeg or ffprobe): :func:`probe`,
:class:`VideoReader` (streaming), :func:`read_frames`, :func:`read_video`,
:class:`VideoWriter` (H.264 yuv420p; odd sizes padded to even by repeating the last
column/row, so 101x75 is stored and read back as 102x76), :func:`write_video` (atomically,
through the partial names of :mod:`faceflow.io.files`).
Bad input of any kind raises :class:`~faceflow.errors.MediaError` naming the file.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Iterator, Optional, Tuple

import ffmpeg
import imageio_ffmpeg
import numpy as np

from faceflow.errors import MediaError
from faceflow.io.files import PathLike, check_int, check_path, check_size, partial_name

DEFAULT_MAX_BYTES = 2 * 1024 ** 3  # read_video refuses clips that decode to more than this
_IMAGE_CODECS = {"png", "mjpeg", "jpeg2000", "bmp", "webp", "tiff", "gif", "jpegxl", "qoi"}
_TEXT_CODECS = {"ansi", "bintext", "xbin", "idf"}  # ffmpeg renders text files as "video"
_X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium",
                 "slow", "slower", "veryslow", "placebo")


@functools.lru_cache(maxsize=1)
def _ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` found out about a video.

    ``width`` x ``height`` is the displayed size: decoded frames are ``(height, width, 3)``
    after ffmpeg's autorotation.  ``rotation`` is the clockwise display rotation stored in
    the file (0/90/180/270, like the legacy ``rotate`` tag; at 90/270 the stored frames
    are ``height`` x ``width``).  ``num_frames`` is ``round(duration * fps)`` unless
    probed with ``exact=True``.  ``variable_fps``: frame times are irregular (the average
    rate differs from the base rate); ``fps`` is then the average rate.
    """

    path: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    codec: str
    has_audio: bool
    rotation: int
    variable_fps: bool = False
    still: bool = False  # a still image, probed with allow_still=True (one frame)

    @property
    def size(self) -> Tuple[int, int]:
        """``(width, height)`` of decoded frames."""
        return self.width, self.height


# ----------------------------------------------------------------------------- helpers
def _tail(text, lines: int = 6) -> str:
    """The last lines of ffmpeg's error output (str, bytes or a log file), on one line."""
    if hasattr(text, "seek"):
        text.seek(0)
        text = text.read()
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "no error output"


def _popen(stream, **pipes) -> Tuple[subprocess.Popen, "tempfile._TemporaryFileWrapper"]:
    """Start ffmpeg for an ffmpeg-python graph; stderr goes to a temp file (no pipe deadlock)."""
    log = tempfile.TemporaryFile()
    args = ffmpeg.compile(stream, cmd=_ffmpeg_exe())
    return subprocess.Popen(args, stderr=log, **pipes), log


def _stop(proc: Optional[subprocess.Popen]) -> None:
    """Kill (if still running) and reap an ffmpeg process, closing its pipes."""
    if proc is not None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in filter(None, (proc.stdin, proc.stdout)):
            with contextlib.suppress(OSError):
                pipe.close()


# ----------------------------------------------------------------------------- probing
def _ffmpeg_header(path: str) -> Tuple[str, str]:
    """Run ``ffmpeg -i path``; return (demuxer names, the text after the Input line)."""
    try:
        res = subprocess.run([_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, timeout=120)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{path}: ffmpeg timed out reading the file header") from None
    text = res.stderr.decode("utf-8", "replace")
    m = re.search(r"^Input #0, (.+?), from '", text, re.M)
    if m is None:
        known = re.search(r"moov atom not found|Invalid data found[^\n]*", text)
        raise MediaError(f"{path}: cannot be opened as a video (corrupt, truncated or not a "
                         f"media file); ffmpeg: {known.group(0) if known else _tail(text, 2)}")
    return m.group(1), text[m.end():]


def _parse_header(path: str, demuxer: str, text: str, allow_still: bool = False) -> Tuple[dict, bool]:
    """Turn ``ffmpeg -i`` output into (VideoInfo fields, is_still); num_frames None = unknown."""
    blocks = re.split(r"\n(?=[ \t]*Stream #)", text)[1:]  # one block per stream
    kinds = [re.search(r": (Video|Audio|Subtitle|Data|Attachment):", b.split("\n")[0]) for b in blocks]
    kinds = [k.group(1) if k else "?" for k in kinds]
    videos = [b for b, k in zip(blocks, kinds) if k == "Video" and "(attached pic)" not in b.split("\n")[0]]
    if not videos:
        raise MediaError(f"{path}: has no video stream (streams found: {', '.join(kinds) or 'none'})")
    block, line = videos[0], videos[0].split("\n")[0]
    codec = re.search(r"Video: (\w+)", line).group(1)
    if demuxer == "tty" or codec in _TEXT_CODECS:
        raise MediaError(f"{path}: is a text file ({demuxer}, {codec}), not a video")
    size = re.search(r", (\d+)x(\d+)", line)
    rates = {}  # "fps": average frame rate, "tbr": base rate guessed by ffmpeg
    for m in re.finditer(r", ([\d.]+)(k?) (fps|tbr)", line):
        rates[m.group(3)] = float(m.group(1)) * (1000 if m.group(2) else 1)
    if size is None or not rates:
        raise MediaError(f"{path}: cannot read the frame size or rate from ffmpeg: {line.strip()}")
    width, height = int(size.group(1)), int(size.group(2))
    fps = rates.get("fps", rates.get("tbr"))
    variable_fps = abs(fps - rates.get("tbr", fps)) > 0.02  # e.g. "22.13 fps, 30 tbr"
    for r in (24, 30, 48, 60, 120):  # ffmpeg prints 30000/1001 as 29.97: restore it
        if abs(fps - r * 1000 / 1001) < 0.006:
            fps = r * 1000 / 1001
    if not 0 < fps <= 10000:
        raise MediaError(f"{path}: invalid frame rate {fps}")

    matrix = re.search(r"display ?matrix: rotation of (-?[\d.]+) degrees", block, re.I)
    tag = re.search(r"^\s*rotate\s*:\s*(-?\d+)", block, re.M)
    if matrix:  # the display matrix angle is counter-clockwise
        rotation = int(round(-float(matrix.group(1)))) % 360
    else:
        rotation = int(tag.group(1)) % 360 if tag else 0
    if rotation in (90, 270):  # ffmpeg autorotates when decoding
        width, height = height, width

    dur = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else None
    still = (demuxer in ("image2", "image2pipe") or demuxer.endswith("_pipe")
             or (codec in _IMAGE_CODECS and (duration is None or duration * fps < 1.5)))
    if still and not allow_still:
        raise MediaError(f"{path}: is a still image ({demuxer}, {codec}), not a video; "
                         "use read_image() or pass allow_still=True")
    check_size(width, height, path)
    if still:
        num_frames, duration = 1, duration or 1.0 / fps
    else:
        num_frames = int(round(duration * fps)) if duration else None
    return dict(path=path, width=width, height=height, fps=fps, num_frames=num_frames, duration=duration,
                codec=codec, has_audio="Audio" in kinds, rotation=rotation, variable_fps=variable_fps), still


def _count_frames(path: str) -> int:
    """Count the frames of the first video stream by decoding it (as VideoReader would)."""
    cmd = [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1",
           "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "null", "-"]
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    counts = re.findall(rb"^frame=(\d+)", res.stdout, re.M)
    if res.returncode != 0 or not counts:
        raise MediaError(f"{path}: could not count frames by decoding: {_tail(res.stderr)}")
    return int(counts[-1])


def probe(path: PathLike, exact: bool = False, allow_still: bool = False) -> VideoInfo:
    """Describe a video from its header (``exact=True`` also decodes it to count frames).

    Raises MediaError for a missing, empty or corrupt file, a directory, a file without
    a video stream, a still image (unless ``allow_still``: it is then one frame) and a
    width or height of 0 or above ``MAX_SIDE``.
    """
    p = check_path(path, "video")
    fields, still = _parse_header(p, *_ffmpeg_header(p), allow_still=allow_still)
    if fields["num_frames"] is None or (exact and not still):
        fields["num_frames"] = _count_frames(p)
        if fields["duration"] is None:
            fields["duration"] = fields["num_frames"] / fields["fps"]
    return VideoInfo(**fields, still=still)


# ----------------------------------------------------------------------------- reading
class VideoReader:
    """Iterate over a video's frames, RGB ``np.uint8 (H, W, 3)``, decoded by an ffmpeg pipe.

    Only one frame is held in memory at a time.  ``start``: index of the first frame
    (accurate seek to ``(start - 0.5) / fps``; with ``info.variable_fps`` the frames before
    ``start`` are decoded and counted instead, which is exact but slower); then every
    ``step``-th frame, at most ``max_frames`` of them.  ``size=(W, H)`` resizes inside
    ffmpeg.  ``info`` describes the source; ``width``/``height`` the yielded frames.
    ffmpeg is killed and reaped on :meth:`close`, at the end, on errors and on leaving
    ``with``.  A truncated file yields the frames that can be decoded, without error.
    """

    def __init__(self, path: PathLike, start: int = 0, max_frames: Optional[int] = None,
                 step: int = 1, size: Optional[Tuple[int, int]] = None, allow_still: bool = False):
        self.start = check_int(start, "start", 0)
        self.step = check_int(step, "step", 1)
        self.max_frames = None if max_frames is None else check_int(max_frames, "max_frames", 0)
        self.info = probe(path, allow_still=allow_still)
        self.width, self.height = self.info.size
        if size is not None:
            if not isinstance(size, (tuple, list)) or len(size) != 2:
                raise MediaError(f"size must be a (width, height) pair, got {size!r}")
            self.width, self.height = (check_int(s, "size", 1) for s in size)
            check_size(self.width, self.height, self.info.path)
        self.frames_read = 0
        self._proc, self._log, self._closed = None, None, False

    @property
    def expected_frames(self) -> int:
        """Number of frames iteration should yield, estimated from ``info.num_frames``."""
        n = max(0, math.ceil((self.info.num_frames - self.start) / self.step))
        return n if self.max_frames is None else min(n, self.max_frames)

    def _start(self) -> None:
        start, step, seek = self.start, self.step, {}
        if start and not self.info.variable_fps:  # seek by time, then count from there
            seek, start = {"ss": f"{(start - 0.5) / self.info.fps:.6f}"}, 0
        threads = os.environ.get("FACEFLOW_FFMPEG_THREADS")  # set for worker processes (runtime.threads)
        stream = ffmpeg.input(self.info.path, **seek, **({"threads": threads} if threads else {}))["v:0"]
        if start or step > 1:  # keep frames start, start + step, ... (n: index of a frame)
            stream = stream.filter("select", f"gte(n,{start})*not(mod(n-{start},{step}))")
        if (self.width, self.height) != self.info.size:
            stream = stream.filter("scale", self.width, self.height)
        out = {"format": "rawvideo", "pix_fmt": "rgb24", "fps_mode": "passthrough"}
        if self.max_frames is not None:
            out["frames:v"] = self.max_frames
        stream = stream.output("pipe:", **out).global_args("-hide_banner", "-nostdin", "-loglevel", "error",
                                                          *(("-filter_threads", threads) if threads else ()))
        self._proc, self._log = _popen(stream, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)

    def __iter__(self) -> "VideoReader":
        return self

    def __next__(self) -> np.ndarray:
        if self._closed or (self.max_frames is not None and self.frames_read >= self.max_frames):
            self.close()
            raise StopIteration
        if self._proc is None:
            self._start()
        buf = bytearray(self.width * self.height * 3)
        got = self._proc.stdout.readinto(buf)  # a buffered pipe fills buf unless at the end
        if got < len(buf):  # end of the stream
            rc, err = self._proc.wait(), _tail(self._log)
            self.close()
            if rc != 0 or got:
                raise MediaError(f"{self.info.path}: ffmpeg failed after {self.frames_read} frames "
                                 f"(exit code {rc}): {err}")
            raise StopIteration
        self.frames_read += 1
        return np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)

    def close(self) -> None:
        """Stop decoding; kill and reap ffmpeg.  Safe to call more than once."""
        self._closed = True
        _stop(self._proc)
        if self._log is not None:
            self._log.close()
        self._proc = self._log = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def read_frames(path: PathLike, start: int = 0, max_frames: Optional[int] = None, step: int = 1,
                size: Optional[Tuple[int, int]] = None, allow_still: bool = False) -> Iterator[np.ndarray]:
    """Yield RGB frames ``np.uint8 (H, W, 3)`` one at a time; see :class:`VideoReader`."""
    with VideoReader(path, start, max_frames, step, size, allow_still) as reader:
        yield from reader


def read_video(path: PathLike, start: int = 0, max_frames: Optional[int] = None, step: int = 1,
               size: Optional[Tuple[int, int]] = None, max_bytes: int = DEFAULT_MAX_BYTES,
               allow_still: bool = False) -> Tuple[np.ndarray, VideoInfo]:
    """Decode a clip (or the selected frames) into RGB ``np.uint8 (T, H, W, 3)``.

    Returns ``(frames, info)``.  Refuses with MediaError, before decoding, when the frames
    would need more than ``max_bytes``: select fewer with ``max_frames``/``step``/``size``,
    or stream with :class:`VideoReader`.
    """
    with VideoReader(path, start, max_frames, step, size, allow_still) as reader:
        frame_bytes = reader.width * reader.height * 3

        def too_big(n: int) -> MediaError:
            return MediaError(f"{reader.info.path}: {n} frames of {reader.width}x{reader.height} need "
                              f"{n * frame_bytes / 2 ** 30:.2f} GiB, more than max_bytes="
                              f"{max_bytes / 2 ** 30:.2f} GiB; pass max_frames, step or size, "
                              "or stream with VideoReader")

        n = reader.expected_frames
        if n * frame_bytes > max_bytes:
            raise too_big(n)
        frames = np.empty((n, reader.height, reader.width, 3), np.uint8)
        extra = []  # frames beyond the estimate from the header
        for i, frame in enumerate(reader):
            if i < n:
                frames[i] = frame
            elif (i + 1) * frame_bytes > max_bytes:
                raise too_big(i + 1)
            else:
                extra.append(frame)
        frames = frames[:min(reader.frames_read, n)]
        if extra:
            frames = np.concatenate([frames, np.stack(extra)])
        return frames, reader.info


# ----------------------------------------------------------------------------- writing
class VideoWriter:
    """Encode RGB frames ``np.uint8 (H, W, 3)`` as H.264 yuv420p (mp4 by default).

    ffmpeg writes a hidden partial file next to ``path``; :meth:`close` (or leaving the
    ``with`` block normally) renames it to ``path``.  After an exception in the ``with``
    block, :meth:`abort` or an ffmpeg failure the partial file is deleted and ``path`` is
    untouched.  Odd sizes are padded to even by repeating the last column/row.
    ``audio_from``: a media file whose first audio track, if any, is muxed in after the
    video is encoded (AAC is copied, other codecs re-encoded to AAC), cut to the video's
    duration; every written frame is kept even when the audio is shorter. ``audio_start``: the
    second of ``audio_from`` the audio starts at (the first written frame's time in the source).
    """

    def __init__(self, path: PathLike, fps: float, audio_from: Optional[PathLike] = None,
                 crf: int = 18, preset: str = "medium", audio_start: float = 0.0):
        self.path = check_path(path, "output", output=True)
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) \
                or not math.isfinite(fps) or not 0 < fps <= 1000:
            raise MediaError(f"fps must be a number in (0, 1000], got {fps!r}")
        self.fps = float(fps)
        self.crf = check_int(crf, "crf", 0)
        if self.crf > 51:
            raise MediaError(f"crf must be at most 51, got {crf}")
        if preset not in _X264_PRESETS:
            raise MediaError(f"preset must be one of {', '.join(_X264_PRESETS)}; got {preset!r}")
        self.preset = preset
        self._audio = None  # (path, codec) of the audio track to mux in
        if isinstance(audio_start, bool) or not isinstance(audio_start, (int, float)) or not audio_start >= 0:
            raise MediaError(f"audio_start must be a number of seconds >= 0, got {audio_start!r}")
        self.audio_start = float(audio_start)
        if audio_from is not None:
            src = check_path(audio_from, "audio source")
            audio = re.search(r"Stream #\S+: Audio: (\w+)", _ffmpeg_header(src)[1])
            self._audio = (src, audio.group(1)) if audio else None
        self._tmp = partial_name(self.path)
        self.width = self.height = None
        self.frames_written = 0
        self._proc, self._log, self._closed = None, None, False

    def _start(self, width: int, height: int) -> None:
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24",
                             s=f"{width + width % 2}x{height + height % 2}",
                             framerate=str(Fraction(self.fps).limit_denominator(10000)))
        streams = [video]
        opts = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": self.crf, "preset": self.preset,
                **self._container_opts()}
        out = ffmpeg.output(*streams, self._tmp, **opts).global_args("-hide_banner", "-loglevel", "error")
        self._proc, self._log = _popen(out.overwrite_output(), stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL)
        self.width, self.height = width, height

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame ``np.uint8 (H, W, 3)``; all frames must have the same size."""
        if self._closed:
            raise MediaError(f"{self.path}: write() on a closed VideoWriter")
        if not isinstance(frame, np.ndarray):
            raise MediaError(f"{self.path}: frame must be a numpy array, got {type(frame).__name__}")
        if frame.dtype != np.uint8:
            raise MediaError(f"{self.path}: frame must be uint8 RGB, got dtype {frame.dtype}")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise MediaError(f"{self.path}: frame must have shape (H, W, 3), got {frame.shape}")
        h, w = frame.shape[:2]
        if self._proc is None:
            check_size(w, h, self.path)
            self._start(w, h)
        elif (w, h) != (self.width, self.height):
            raise MediaError(f"{self.path}: frame {self.frames_written} is {w}x{h} but earlier "
                             f"frames are {self.width}x{self.height}")
        if w % 2 or h % 2:  # repeating the edge avoids colour bleeding from a black border
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except OSError:  # BrokenPipeError: ffmpeg has exited
            err = _tail(self._log)
            self.abort()
            raise MediaError(f"{self.path}: ffmpeg stopped while encoding: {err}") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and move the result to ``path``; MediaError on failure."""
        if self._closed:
            return
        if self._proc is None:
            self.abort()
            raise MediaError(f"{self.path}: no frames were written; nothing saved")
        self._closed = True
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        rc, err = self._proc.wait(), _tail(self._log)
        self._log.close()
        if rc != 0 or not os.path.isfile(self._tmp):
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._tmp)
            raise MediaError(f"{self.path}: ffmpeg failed (exit code {rc}): {err}")
        if self._audio:
            self._mux_audio()
        os.replace(self._tmp, self.path)

    def _container_opts(self) -> dict:
        """Output options from the file extension: mp4-family files get their header first
        (playable while truncated or streamed); a name without extension is written as mp4."""
        ext = os.path.splitext(self.path)[1].lower()
        if ext in (".mp4", ".mov", ".m4v"):
            return {"movflags": "+faststart"}
        return {} if ext else {"format": "mp4"}

    def _mux_audio(self) -> None:
        """Second pass: copy the encoded video and add the audio track, cut to the video."""
        src, codec = self._audio
        muxed = partial_name(self.path)
        opts = {"c:v": "copy", "c:a": "copy" if codec == "aac" else "aac",
                "t": f"{self.frames_written / self.fps:.6f}", **self._container_opts()}
        audio_in = ffmpeg.input(src, ss=f"{self.audio_start:.6f}") if self.audio_start > 0 else ffmpeg.input(src)
        graph = ffmpeg.output(ffmpeg.input(self._tmp)["v:0"], audio_in["a:0"], muxed, **opts)
        res = subprocess.run(ffmpeg.compile(graph.global_args("-hide_banner", "-nostdin", "-loglevel", "error")
                                            .overwrite_output(), cmd=_ffmpeg_exe()),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.remove(self._tmp)
        if res.returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                os.remove(muxed)
            raise MediaError(f"{self.path}: adding the audio of {src} failed: {_tail(res.stderr)}")
        self._tmp = muxed

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file; ``path`` is left untouched."""
        self._closed = True
        _stop(self._proc)
        if self._log is not None:
            self._log.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        if not getattr(self, "_closed", True):  # never finished: do not publish anything
            with contextlib.suppress(Exception):
                self.abort()


def write_video(path: PathLike, frames: Iterable[np.ndarray], fps: float,
                audio_from: Optional[PathLike] = None, crf: int = 18, preset: str = "medium") -> str:
    """Write frames (uint8 ``(T, H, W, 3)`` array or iterable of ``(H, W, 3)``) with
    :class:`VideoWriter`; return the absolute output path."""
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise MediaError(f"{path}: frames must be a (T, H, W, 3) array, got shape {frames.shape}")
    with VideoWriter(path, fps, audio_from=audio_from, crf=crf, preset=preset) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path
