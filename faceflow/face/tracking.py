"""Following one face through a video and smoothing its landmarks over time (Head2Head++
thesis, Sec. 3.2).

:func:`track_video` runs a detector (:mod:`faceflow.face.landmarks`) on every frame and follows
the face chosen in the first frame (largest by default): it rejects frames whose box centre jumps
by more than half the box width and ends a usable segment after K = 5 consecutive missing or
rejected frames. :func:`smooth_track` then fits a cubic smoothing spline over time to every
coordinate within each segment (lambda by generalised cross-validation, :func:`gcv_lambda`),
which also fills the gaps shorter than K.

Conventions as in :mod:`faceflow.face.landmarks`: points are ``(x, y)`` pixels with y down.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
from scipy.interpolate import make_smoothing_spline
from tqdm import tqdm

from faceflow.errors import FaceflowError, MediaError
from faceflow.face.landmarks import Face, MediapipeDetector, NoFaceError, check_image, landmark_box, pick_face

logger = logging.getLogger(__name__)

STATUSES = ("ok", "no_face", "jump", "filled", "lost")


@dataclass
class TrackConfig:
    """Rules for following one face through a video (thesis Sec. 3.2).

    lose_track: K, consecutive missing/rejected frames that end a segment; max_jump: reject a
    frame whose box centre moved more than ``max_jump`` * (last accepted box width) from the last
    accepted centre; choose: the face to follow in the first frame with faces, 'largest' or
    'centre' (nearest the image centre); min_segment: drop segments shorter than this (frames);
    smooth: the smoothing-spline parameter lambda, in frames^3 (the spline minimises
    sum (y - f)^2 + lambda * int f''(t)^2 dt over frame times t; its frequency response is about
    1 / (1 + lambda w^4), w in rad/frame), or None to choose it per segment by generalised
    cross-validation (GCV) on the 68 landmark tracks.
    """

    lose_track: int = 5
    max_jump: float = 0.5
    choose: str = "largest"
    min_segment: int = 5
    smooth: float | None = None

    def __post_init__(self):
        for name in ("lose_track", "min_segment"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FaceflowError(f"TrackConfig.{name} must be an integer >= 1, got {v!r}")
        if not (isinstance(self.max_jump, (int, float)) and self.max_jump > 0):
            raise FaceflowError(f"TrackConfig.max_jump must be > 0, got {self.max_jump!r}")
        if self.choose not in ("largest", "centre"):
            raise FaceflowError(f"TrackConfig.choose must be 'largest' or 'centre', got {self.choose!r}")
        if self.smooth is not None and not (isinstance(self.smooth, (int, float)) and self.smooth >= 0):
            raise FaceflowError(f"TrackConfig.smooth must be None or a number >= 0, got {self.smooth!r}")


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) runs of True in a 1-D bool array."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(d[::2], d[1::2])]


@dataclass
class Track:
    """The followed face over a video of T frames.

    lmk68 (T, 68, 2), dense (T, 478, 3) or None, boxes (T, 4): float32, NaN where the followed
    face was not accepted (after :func:`smooth_track`: NaN outside the segments); detected (T,)
    bool; num_faces (T,) int, faces seen by the detector; status (T,) one of 'ok', 'no_face',
    'jump', 'filled' (a gap shorter than K inside a segment, after smoothing), 'lost' (K or more
    consecutive missing/rejected frames, until the face is found again); segments: the usable
    half-open [start, end) frame ranges; dropped_segments: ranges shorter than
    ``min_segment`` (not usable); lam: the smoothing parameter used in each segment (empty
    before smoothing).
    """

    lmk68: np.ndarray
    dense: np.ndarray | None
    boxes: np.ndarray
    detected: np.ndarray
    num_faces: np.ndarray
    status: list[str]
    segments: list[tuple[int, int]]
    image_size: tuple[int, int]
    dropped_segments: list[tuple[int, int]] = field(default_factory=list)
    lam: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.status)

    def segment_ids(self) -> np.ndarray:
        """(T,) int32: the index of each frame's segment, -1 outside the segments."""
        ids = np.full(len(self.status), -1, np.int32)
        for k, (a, b) in enumerate(self.segments):
            ids[a:b] = k
        return ids

    def usable(self) -> np.ndarray:
        """(T,) bool mask of the frames inside the segments."""
        return self.segment_ids() >= 0

    def messages(self) -> list[str]:
        """Human-readable notes on what went wrong where (empty for a clean track)."""
        T, st = len(self.status), np.array(self.status, dtype=object)
        out = []
        if T and not self.detected.any():
            out.append(f"no face in any of the {T} frames")
        for a, b in true_runs(st == "lost"):
            out.append(f"face lost in frames {a}-{b - 1} ({b - a} frames): segment ended"
                       + (f", face found again at frame {b}" if b < T else ""))
        n_jump = int((st == "jump").sum())
        if n_jump:
            out.append(f"{n_jump} frame(s) rejected because the face box jumped (first at frame "
                       f"{int(np.flatnonzero(st == 'jump')[0])})")
        multi = self.num_faces > 1
        if multi.any():
            first = int(np.flatnonzero(self.detected)[0]) if self.detected.any() else 0
            out.append(f"{int(self.num_faces.max())} faces in {int(multi.sum())} frame(s) (first at frame "
                       f"{int(np.flatnonzero(multi)[0])}); following the face chosen at frame {first}")
        for a, b in self.dropped_segments:
            out.append(f"frames {a}-{b - 1} dropped: segment shorter than the minimum")
        if self.segments and (self.segments[0][0] > 0 or self.segments[-1][1] < T):
            out.append(f"usable: {int(self.usable().sum())} of {T} frames in {len(self.segments)} segment(s)")
        return out

    def to_dict(self) -> dict:
        """JSON-able summary for a manifest."""
        st = np.array(self.status, dtype=object)
        return {
            "frames": len(self.status),
            "image_size": [int(self.image_size[0]), int(self.image_size[1])],
            "segments": [[int(a), int(b)] for a, b in self.segments],
            "dropped_segments": [[int(a), int(b)] for a, b in self.dropped_segments],
            "usable_frames": int(self.usable().sum()),
            "status_counts": {s: int((st == s).sum()) for s in STATUSES},
            "frames_with_face": int((self.num_faces > 0).sum()),
            "frames_multiple_faces": int((self.num_faces > 1).sum()),
            "multiple_faces_ranges": [[a, b] for a, b in true_runs(self.num_faces > 1)],
            "max_faces": int(self.num_faces.max()) if len(self.num_faces) else 0,
            "smoothing_lambda": [float(v) for v in self.lam],
            "messages": self.messages(),
        }


def track_video(frames: Iterable[np.ndarray], detector=None, config: TrackConfig | None = None,
                progress: bool = False, total: int | None = None) -> Track:
    """Detect faces in every frame and follow one of them (no smoothing).

    The face followed is chosen by ``config.choose`` in the first frame with faces; afterwards
    each frame takes the detected face whose box centre is nearest the last accepted centre and
    rejects it ('jump') if that centre moved more than ``max_jump`` * (last accepted box width).
    K = ``lose_track`` consecutive frames without an accepted face end the segment at the last
    accepted frame (those frames become 'lost'); the face is then re-acquired in the next frame
    with faces as the one nearest the last accepted position (no jump limit), starting a new
    segment.  Segments shorter than ``min_segment`` are dropped.  ``detector`` defaults to a
    :class:`MediapipeDetector` in tracking mode (created and closed here); a detector passed in
    is :meth:`reset` first.

    Raises :class:`NoFaceError` when no usable segment remains (the message says how many frames
    were read and how many had a face) and :class:`~faceflow.errors.MediaError` for no frames or
    bad frames.
    """
    cfg = config if config is not None else TrackConfig()
    own = detector is None
    if own:
        detector = MediapipeDetector(static_image_mode=False)
    elif hasattr(detector, "reset"):
        detector.reset()
    try:
        return _follow(frames, detector, cfg, progress, total)
    finally:
        if own:
            detector.close()


# ----------------------------------------------------------------------------- following
@dataclass
class _Follower:
    """The tracking rules of :func:`track_video` applied frame by frame: which face is followed,
    the status of every frame so far and the segments closed so far."""

    cfg: TrackConfig
    size: tuple[int, int] | None = None  # (H, W) of the first frame
    last: Face | None = None  # the last accepted face
    last_t: int = -1  # its frame
    seg_start: int | None = None  # start of the open segment; None when not following
    gap: list[int] = field(default_factory=list)  # missing/rejected frames since the last accepted one
    segments: list[tuple[int, int]] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    accepted: list[Face | None] = field(default_factory=list)  # the accepted face of each frame
    num_faces: list[int] = field(default_factory=list)

    def check(self, t: int, frame) -> np.ndarray:
        """Frame t as a checked RGB uint8 (H, W, 3) image of the video's size."""
        frame = check_image(frame, f"frame {t}")
        if self.size is None:
            self.size = frame.shape[:2]
        elif frame.shape[:2] != self.size:
            raise MediaError(f"frame {t} is {frame.shape[1]}x{frame.shape[0]} but the video started "
                             f"at {self.size[1]}x{self.size[0]}")
        return frame

    def choose(self, faces: list[Face]) -> tuple[Face | None, str]:
        """The followed face among ``faces`` (None if there is none) and why not ('no_face', 'jump')."""
        if not faces:
            return None, "no_face"
        last = self.last
        if last is None:
            return pick_face(faces, self.cfg.choose, self.size), "no_face"
        near = min(faces, key=lambda f: float(np.linalg.norm(f.centre - last.centre)))
        moved = float(np.linalg.norm(near.centre - last.centre))
        if self.seg_start is None or moved <= self.cfg.max_jump * last.width:
            return near, "no_face"  # re-acquisition after a loss takes the nearest face at any distance
        return None, "jump"

    def step(self, t: int, faces: list[Face]) -> None:
        """Frame t with the detector's ``faces``: accept one or count a miss; K consecutive misses
        end the open segment at the last accepted frame (those frames become 'lost')."""
        self.num_faces.append(len(faces))
        chosen, why = self.choose(faces)
        if chosen is not None:
            if self.seg_start is None:
                self.seg_start = t
            self.last, self.last_t, self.gap = chosen, t, []
            self.status.append("ok")
        elif self.seg_start is None:
            self.status.append("lost" if self.last is not None else why)
        else:
            self.status.append(why)
            self.gap.append(t)
            if len(self.gap) >= self.cfg.lose_track:
                self.segments.append((self.seg_start, self.last_t + 1))
                for g in self.gap:
                    self.status[g] = "lost"
                self.seg_start, self.gap = None, []
        self.accepted.append(chosen)

    def track(self) -> Track:
        """The :class:`Track` of the frames seen (the open segment closed), before dropping short
        segments' frames: lmk68 / dense / boxes NaN where no face was accepted."""
        if self.size is None:
            raise MediaError("no frames to track: the video or frame iterator is empty")
        segments = self.segments + ([(self.seg_start, self.last_t + 1)] if self.seg_start is not None else [])
        T = len(self.status)
        lmk68 = np.full((T, 68, 2), np.nan, np.float32)
        boxes = np.full((T, 4), np.nan, np.float32)
        dense_n = next((f.dense.shape[0] for f in self.accepted if f is not None and f.dense is not None), None)
        dense = np.full((T, dense_n, 3), np.nan, np.float32) if dense_n else None
        for t, face in enumerate(self.accepted):
            if face is not None:
                lmk68[t], boxes[t] = face.lmk68, face.box
                if dense is not None and face.dense is not None:
                    dense[t] = face.dense
        kept = [s for s in segments if s[1] - s[0] >= self.cfg.min_segment]
        dropped = [s for s in segments if s[1] - s[0] < self.cfg.min_segment]
        return Track(lmk68, dense, boxes, np.array([f is not None for f in self.accepted], bool),
                     np.array(self.num_faces, int), self.status, kept, (int(self.size[0]), int(self.size[1])), dropped)


def _follow(frames, detector, cfg: TrackConfig, progress: bool, total: int | None) -> Track:
    """The tracking rules (:class:`_Follower`) over ``frames``; raises NoFaceError when no
    segment is long enough and logs :meth:`Track.messages`."""
    follower = _Follower(cfg)
    for t, frame in enumerate(tqdm(frames, total=total, disable=not progress, desc="landmarks", unit="frame")):
        follower.step(t, detector.detect(follower.check(t, frame)))
    track = follower.track()
    if not track.segments:
        with_face = int((track.num_faces > 0).sum())
        dropped = track.dropped_segments
        why = (f"all face segments were shorter than min_segment={cfg.min_segment} frames "
               f"({', '.join(f'{a}-{b - 1}' for a, b in dropped)})" if dropped else "no face was found")
        raise NoFaceError(f"no usable face track: {len(track)} frames read, {with_face} had a face; {why}")
    for note in track.messages():
        logger.warning(note)
    return track


# ----------------------------------------------------------------------------- smoothing
def _spline_penalty(t: np.ndarray) -> np.ndarray:
    """K (n, n) with g^T K g = int g''^2 for the natural cubic spline through (t, g) (Reinsch:
    K = Q R^-1 Q^T, Green & Silverman, Nonparametric Regression and GLMs, Sec. 2.1)."""
    n, h = len(t), np.diff(t)
    Q = np.zeros((n, n - 2))
    j = np.arange(n - 2)
    Q[j, j] = 1 / h[:-1]
    Q[j + 1, j] = -1 / h[:-1] - 1 / h[1:]
    Q[j + 2, j] = 1 / h[1:]
    R = np.diag((h[:-1] + h[1:]) / 3) + np.diag(h[1:-1] / 6, 1) + np.diag(h[1:-1] / 6, -1)
    return Q @ np.linalg.solve(R, Q.T)


def gcv_lambda(t: np.ndarray, y: np.ndarray, max_points: int = 400,
               grid: np.ndarray | None = None) -> float:
    """Smoothing-spline lambda minimising the generalised cross-validation score summed over
    columns: GCV(lam) = n * sum_c ||y_c - f_c||^2 / (n - tr A(lam))^2, with the hat matrix
    A = (I + lam K)^-1 = U diag(1 / (1 + lam d)) U^T from the eigen-decomposition K = U diag(d) U^T
    (Craven & Wahba 1979).  One lambda for all columns, so every coordinate is smoothed alike.

    t (n,) increasing times, y (n, C); n >= 5.  Long series use their central ``max_points``
    samples.  ``grid`` (default 10^-2 .. 10^6, 161 values) are the candidates.
    """
    t = np.asarray(t, np.float64)
    y = np.asarray(y, np.float64).reshape(len(t), -1)
    if len(t) > max_points:
        a = (len(t) - max_points) // 2
        t, y = t[a:a + max_points], y[a:a + max_points]
    grid = np.logspace(-2, 6, 161) if grid is None else np.asarray(grid, np.float64)
    d, U = np.linalg.eigh(_spline_penalty(t))
    d = np.clip(d, 0, None)
    energy = ((U.T @ y) ** 2).sum(1)  # (n,) data energy along each eigenvector, all columns
    shrink = 1 / (1 + grid[:, None] * d[None])  # (G, n) eigenvalues of A(lam)
    rss = ((1 - shrink) ** 2 * energy).sum(1)
    n = len(t)
    score = n * rss / np.maximum(n - shrink.sum(1), 1e-9) ** 2
    return float(grid[int(np.argmin(score))])


def smooth_track(track: Track, config: TrackConfig | None = None) -> Track:
    """Smooth every coordinate (68 landmarks and dense) over time with a cubic smoothing spline
    fitted, per segment, to the accepted frames, and evaluate it on every frame of the segment:
    gaps shorter than K are filled by the spline (status 'filled').  lambda is
    ``config.smooth`` or, if None, the GCV choice on the segment's 68-landmark tracks
    (:func:`gcv_lambda`).  Segments with fewer than 5 accepted frames are interpolated linearly.
    Frames outside the segments are NaN.  Boxes are recomputed from the smoothed landmarks.
    Returns a new :class:`Track`.
    """

    cfg = config if config is not None else TrackConfig()
    lmk = np.full_like(track.lmk68, np.nan)
    dense = np.full_like(track.dense, np.nan) if track.dense is not None else None
    status = list(track.status)
    lams = []
    for a, b in track.segments:
        times = np.arange(a, b)
        known = times[track.detected[a:b]]
        cols = [track.lmk68[known].reshape(len(known), -1)]
        if dense is not None:
            cols.append(track.dense[known].reshape(len(known), -1))
        y = np.concatenate(cols, 1).astype(np.float64)
        if len(known) >= 5:
            lam = float(cfg.smooth) if cfg.smooth is not None else gcv_lambda(known, cols[0])
            fitted = make_smoothing_spline(known.astype(np.float64), y, lam=lam)(times.astype(np.float64))
        else:
            lam = 0.0
            fitted = np.stack([np.interp(times, known, y[:, c]) for c in range(y.shape[1])], 1)
        lams.append(lam)
        lmk[a:b] = fitted[:, :136].reshape(-1, 68, 2)
        if dense is not None:
            dense[a:b] = fitted[:, 136:].reshape(b - a, -1, 3)
        for t in times:
            if not track.detected[t]:
                status[t] = "filled"
    boxes = landmark_box(lmk)
    return dataclasses.replace(track, lmk68=lmk, dense=dense, boxes=boxes, status=status, lam=lams)


__all__ = [
    "STATUSES", "TrackConfig", "Track", "track_video", "smooth_track", "gcv_lambda", "true_runs",
]
