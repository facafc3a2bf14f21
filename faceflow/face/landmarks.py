"""Facial landmarks: per-image detection, following one face through a video, temporal smoothing.

Backends share one interface (``detect(image) -> list[Face]``, largest face first):

- :class:`MediapipeDetector` (default): mediapipe 0.10.21 FaceMesh with its bundled weights,
  478 points including the irises (``refine=True``), static-image or tracking mode.  The
  68-point Multi-PIE/iBUG set is taken from the mesh through :data:`MP68`.
- :class:`FanDetector` (optional): face-alignment's 2D-FAN with the S3FD detector, used only
  when its weights are already in the torch hub cache; it never downloads anything.

Videos (:func:`track_video`) follow the face chosen in the first frame (largest by default),
reject frames whose box centre jumps by more than half the box width and end a usable segment
after K = 5 consecutive missing or rejected frames (Head2Head++ thesis, Sec. 3.2).
:func:`smooth_track` then fits a cubic smoothing spline over time to every coordinate within
each segment, which also fills the gaps shorter than K.

Conventions: images are RGB ``uint8`` ``(H, W, 3)``; points are ``(x, y)`` pixels with y down
and pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``.  mediapipe's coordinates, normalised by
the image size, are multiplied back by W and H without any half-pixel shift (a possible offset
of mediapipe's own is far below its landmark noise).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
import torch
from scipy.interpolate import make_smoothing_spline
from tqdm import tqdm

from faceflow.errors import AssetNotFoundError, FaceflowError, MediaError

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- the 68-point map
# MP68[k] is the mediapipe FaceMesh vertex used as iBUG/Multi-PIE landmark k.
#
#   group                 iBUG    mediapipe vertices
#   jaw (image left->chin) 0-8    127, 234, 93, 132, 58, 136, 149, 148, 152
#   jaw (chin->image right) 9-16  377, 378, 365, 288, 361, 323, 454, 356
#   brow, image left     17-21    70, 63, 105, 66, 107          (upper brow edge, outer -> inner)
#   brow, image right    22-26    336, 296, 334, 293, 300       (upper brow edge, inner -> outer)
#   nose bridge          27-30    168, 197, 5, 4                (27 between the eyes, 30 the tip)
#   nostrils             31-35    75, 97, 2, 326, 305           (33 = subnasale)
#   eye, image left      36-41    33, 160, 158, 133, 153, 144   (outer corner, upper lid, inner corner, lower lid)
#   eye, image right     42-47    362, 385, 387, 263, 373, 380
#   outer lips           48-59    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181
#   inner lips           60-67    78, 82, 13, 312, 308, 317, 14, 87
#
# How it was chosen: we started from the commonly quoted table and checked it on the five
# stills in shared/media/stills and on 120 frames of six talking-head clips, (a) by drawing the
# indexed points on every still (visual check) and (b) by measuring, for every iBUG point, where
# each candidate vertex falls along its contour (jaw: arc length along mediapipe's face oval from
# vertex 127 to the chin 152; lips, eyes, brows, nostrils: position between the two corners;
# nose: height between the eye line and the subnasale) and comparing with the same quantity on
# the mean iBUG-68 shape (300-W annotations: jaw points evenly spaced along the contour).
# Everything but the jaw matched within mediapipe's vertex spacing and was kept.  The quoted jaw
# (..., 172, 136, 150, 152, 379, 365, 397, ...) put points 5-7 and 9-11 far up the cheek, leaving
# a gap of 30% of the contour between points 7/9 and the chin: points 5/6/7 and 11/10/9 were
# moved towards the chin (136/149/148 and 365/378/377), giving contour positions 0, .10, .20,
# .31, .43, .61, .76, .91, 1.0 for points 0-8 (even spacing: k/8) on both sides.  The map is
# left-right symmetric: mirroring the image maps MP68 onto itself under the iBUG flip (tested).
MP68: tuple[int, ...] = (
    127, 234, 93, 132, 58, 136, 149, 148, 152, 377, 378, 365, 288, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107,  # brow 17-21
    336, 296, 334, 293, 300,  # brow 22-26
    168, 197, 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # nostrils 31-35
    33, 160, 158, 133, 153, 144,  # eye 36-41 (image left, subject's right)
    362, 385, 387, 263, 373, 380,  # eye 42-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)

# Iris centres (refine_landmarks=True): 468 is the centre of the iris ringed by 469-472, in the
# eye of vertices 33/133 (image left, subject's right); 473 (ring 474-477) is in the other eye.
# Checked on the stills.
IRIS_CENTRES: tuple[int, int] = (468, 473)

# iBUG index of each point's mirror image (left-right flip of a face).
IBUG_FLIP: tuple[int, ...] = (
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
)

STATUSES = ("ok", "no_face", "jump", "filled", "lost")


class NoFaceError(FaceflowError):
    """No (usable) face in an image or video."""


class MultipleFacesError(FaceflowError):
    """Several faces where exactly one was required."""


@dataclass
class Face:
    """One detected face in one image.

    lmk68 (68, 2) float32 pixels (x, y); dense (478, 3) float32 (468 without iris refinement):
    x, y pixels and z = mediapipe's relative depth * image width (smaller = nearer the camera),
    None for FAN; box (4,) float32 x0, y0, x1, y1, the tight box of the 68 landmarks; score:
    the detector's confidence (mediapipe's legacy FaceMesh reports none: 1.0).
    """

    lmk68: np.ndarray
    dense: np.ndarray | None
    box: np.ndarray
    score: float = 1.0

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2], np.float64)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight box (..., 4) float32 x0, y0, x1, y1 of points (..., N, 2) (NaN stays NaN)."""
    points = np.asarray(points, np.float32)
    return np.concatenate([points.min(-2), points.max(-2)], -1).astype(np.float32)


def _check_image(image, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise MediaError(f"{what} must be a numpy array (RGB uint8 (H, W, 3)), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"{what} must be RGB of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise MediaError(f"{what} must be uint8, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise MediaError(f"{what} is empty: shape {image.shape}")
    return np.ascontiguousarray(image)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send the process' stderr (file descriptor 2, where mediapipe's C++ logging writes) to
    /dev/null for the duration; C stdio buffers are flushed before it is restored."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2: nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None).fflush(None)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


# ----------------------------------------------------------------------------- backends
class MediapipeDetector:
    """mediapipe FaceMesh (bundled weights, runs offline on the CPU).

    ``static_image_mode=True`` detects afresh in every image (photos);
    ``False`` tracks faces from frame to frame (videos: faster and steadier; call
    :meth:`reset` between videos).  ``refine=True`` adds the 10 iris points (478 in all).
    Faces below ``min_confidence`` (detection and tracking) are dropped.
    """

    def __init__(self, static_image_mode: bool = False, max_faces: int = 3, refine: bool = True,
                 min_confidence: float = 0.5):
        if isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 1:
            raise FaceflowError(f"max_faces must be an integer >= 1, got {max_faces!r}")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise FaceflowError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.static_image_mode = bool(static_image_mode)
        self.max_faces = int(max_faces)
        self.refine = bool(refine)
        self.min_confidence = float(min_confidence)
        with _quiet_stderr():
            try:
                from mediapipe.python.solutions import face_mesh
            except ImportError as e:
                raise FaceflowError(f"the mediapipe landmark backend needs mediapipe 0.10.21 ({e})") from None
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=self.static_image_mode, max_num_faces=self.max_faces,
                refine_landmarks=self.refine, min_detection_confidence=self.min_confidence,
                min_tracking_confidence=self.min_confidence)
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # start the graph (and its log noise) now
        self._noisy = True  # mediapipe logs once more on the first face found

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, largest first."""
        if self._mesh is None:
            raise FaceflowError("this MediapipeDetector has been closed")
        image = _check_image(image)
        h, w = image.shape[:2]
        if self._noisy:
            with _quiet_stderr():
                result = self._mesh.process(image)
        else:
            result = self._mesh.process(image)
        faces = []
        for lm in result.multi_face_landmarks or ():
            pts = np.array([(p.x, p.y, p.z) for p in lm.landmark], np.float64) * (w, h, w)
            dense = pts.astype(np.float32)
            lmk = dense[list(MP68), :2].copy()
            faces.append(Face(lmk, dense, landmark_box(lmk), 1.0))
        if faces:
            self._noisy = False
        faces.sort(key=lambda f: -f.area)
        return faces

    def reset(self) -> None:
        """Forget the tracking state (start of a new video)."""
        if self._mesh is not None:
            with _quiet_stderr():  # the graph restarts: wait for it (and its log noise) here
                self._mesh.reset()
                self._mesh.process(np.zeros((64, 64, 3), np.uint8))

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "MediapipeDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fan_weight_files() -> list[str]:
    """File names face-alignment expects in <torch hub>/checkpoints for 2D-FAN and S3FD."""
    names = []
    try:
        from face_alignment import api
        names.append(os.path.basename(api.models_urls["2DFAN-4"]))
    except Exception:  # another face-alignment version: the 1.4/1.5 name
        names.append("2DFAN4-11f355bf06.pth.tar")
    try:
        from face_alignment.detection.sfd import sfd_detector
        names.append(os.path.basename(sfd_detector.models_urls["s3fd"]))
    except Exception:
        names.append("s3fd-619a316812.pth")
    return names


class FanDetector:
    """face-alignment's 2D-FAN landmarks (68 points, iBUG order) on S3FD face boxes.

    Requires its weights in ``torch.hub.get_dir()/checkpoints``; raises
    :class:`~faceflow.errors.AssetNotFoundError` otherwise (never downloads).
    """

    def __init__(self, device: str = "cpu"):

        folder = os.path.join(torch.hub.get_dir(), "checkpoints")
        names = _fan_weight_files()
        missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
        if missing:
            raise AssetNotFoundError(
                f"face-alignment (FAN) weights not found: expected {', '.join(names)} in {folder} "
                f"(missing: {', '.join(missing)}). faceflow never downloads them; copy the files there "
                f"or use the default mediapipe backend (make_detector('mediapipe')).")
        try:
            import face_alignment
        except ImportError as e:
            raise FaceflowError(f"the FAN landmark backend needs the face-alignment package ({e})") from None
        kw = dict(device=device, face_detector="sfd")
        try:
            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, compile=False, **kw)
        except TypeError:  # versions without the compile option
            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **kw)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, largest first (``dense`` is None)."""
        image = _check_image(image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No faces were detected."
            lmks, _, boxes = self._fa.get_landmarks_from_image(image, return_bboxes=True,
                                                               return_landmark_score=True)
        faces = []
        for i, pts in enumerate(lmks or ()):
            lmk = np.asarray(pts, np.float32)[:, :2]
            score = float(boxes[i][4]) if boxes is not None and len(boxes[i]) > 4 else 1.0
            faces.append(Face(lmk, None, landmark_box(lmk), score))
        faces.sort(key=lambda f: -f.area)
        return faces

    def reset(self) -> None:
        """FAN detects every frame afresh: nothing to forget."""

    def close(self) -> None:
        self._fa = None

    def __enter__(self) -> "FanDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


BACKENDS = {"mediapipe": MediapipeDetector, "fan": FanDetector}


def make_detector(name: str = "mediapipe", **kw) -> MediapipeDetector | FanDetector:
    """A landmark detector by backend name ('mediapipe' or 'fan'); ``kw`` go to its constructor."""
    if name not in BACKENDS:
        raise FaceflowError(f"unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](**kw)


def _pick(faces: list[Face], choose: str, image_size: tuple[int, int]) -> Face:
    if choose == "largest":
        return max(faces, key=lambda f: f.area)
    centre = np.array([image_size[1] / 2, image_size[0] / 2])
    return min(faces, key=lambda f: float(np.linalg.norm(f.centre - centre)))


def detect_image(image: np.ndarray, detector=None, choose: str = "largest") -> Face:
    """The face in a single photo (mediapipe in static mode unless ``detector`` is given).

    ``choose='largest'`` returns the largest of several faces; ``'only'`` raises
    :class:`MultipleFacesError` when there are several.  Raises :class:`NoFaceError` if none.
    """
    if choose not in ("largest", "only"):
        raise FaceflowError(f"choose must be 'largest' or 'only', got {choose!r}")
    image = _check_image(image)
    if detector is None:
        with MediapipeDetector(static_image_mode=True) as det:
            faces = det.detect(image)
    else:
        faces = detector.detect(image)
    h, w = image.shape[:2]
    if not faces:
        raise NoFaceError(f"no face found in the {w}x{h} image")
    if len(faces) > 1 and choose == "only":
        sizes = ", ".join(f"{f.width:.0f}px" for f in faces)
        raise MultipleFacesError(f"{len(faces)} faces found in the {w}x{h} image (box widths {sizes}); "
                                 f"expected exactly one (use choose='largest' to take the largest)")
    return _pick(faces, "largest", (h, w))


# ----------------------------------------------------------------------------- tracking
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


# complexity: one pass of the tracking rules over the frames, kept in their order
def _follow(frames, detector, cfg: TrackConfig, progress: bool, total: int | None) -> Track:  # noqa: C901

    K = cfg.lose_track
    lmks, denses, boxes, nfaces, status, detected = [], [], [], [], [], []
    size = None
    last: Face | None = None  # last accepted face
    last_t = -1
    seg_start: int | None = None  # start of the open segment; None when not following
    gap: list[int] = []  # missing/rejected frames since the last accepted one
    segments: list[tuple[int, int]] = []
    for t, frame in enumerate(tqdm(frames, total=total, disable=not progress, desc="landmarks", unit="frame")):
        frame = _check_image(frame, f"frame {t}")
        if size is None:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            raise MediaError(f"frame {t} is {frame.shape[1]}x{frame.shape[0]} but the video started "
                             f"at {size[1]}x{size[0]}")
        faces = detector.detect(frame)
        nfaces.append(len(faces))
        chosen, why = None, "no_face"
        if faces:
            if last is None:
                chosen = _pick(faces, cfg.choose, size)
            else:
                near = min(faces, key=lambda f: float(np.linalg.norm(f.centre - last.centre)))
                moved = float(np.linalg.norm(near.centre - last.centre))
                if seg_start is None or moved <= cfg.max_jump * last.width:
                    chosen = near  # re-acquisition after a loss takes the nearest face at any distance
                else:
                    why = "jump"
        if chosen is not None:
            if seg_start is None:
                seg_start = t
            last, last_t, gap = chosen, t, []
            status.append("ok")
        elif seg_start is None:
            status.append("lost" if last is not None else why)
        else:
            status.append(why)
            gap.append(t)
            if len(gap) >= K:  # K consecutive misses end the segment
                segments.append((seg_start, last_t + 1))
                for g in gap:
                    status[g] = "lost"
                seg_start, gap = None, []
        detected.append(chosen is not None)
        lmks.append(chosen.lmk68 if chosen is not None else None)
        denses.append(chosen.dense if chosen is not None else None)
        boxes.append(chosen.box if chosen is not None else None)
    if size is None:
        raise MediaError("no frames to track: the video or frame iterator is empty")
    if seg_start is not None:
        segments.append((seg_start, last_t + 1))

    T = len(status)
    lmk68 = np.full((T, 68, 2), np.nan, np.float32)
    box_arr = np.full((T, 4), np.nan, np.float32)
    dense_n = next((d.shape[0] for d in denses if d is not None), None)
    dense = np.full((T, dense_n, 3), np.nan, np.float32) if dense_n else None
    for t in range(T):
        if detected[t]:
            lmk68[t], box_arr[t] = lmks[t], boxes[t]
            if dense is not None and denses[t] is not None:
                dense[t] = denses[t]
    kept = [s for s in segments if s[1] - s[0] >= cfg.min_segment]
    dropped = [s for s in segments if s[1] - s[0] < cfg.min_segment]
    track = Track(lmk68, dense, box_arr, np.array(detected, bool), np.array(nfaces, int), status, kept,
                  (int(size[0]), int(size[1])), dropped)
    notes = track.messages()
    if not kept:
        with_face = int((track.num_faces > 0).sum())
        why = (f"all face segments were shorter than min_segment={cfg.min_segment} frames "
               f"({', '.join(f'{a}-{b - 1}' for a, b in dropped)})" if dropped else "no face was found")
        raise NoFaceError(f"no usable face track: {T} frames read, {with_face} had a face; {why}")
    for note in notes:
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
    "MP68", "IRIS_CENTRES", "IBUG_FLIP", "Face", "MediapipeDetector", "FanDetector", "make_detector",
    "detect_image", "TrackConfig", "Track", "track_video", "smooth_track", "gcv_lambda", "landmark_box",
    "NoFaceError", "MultipleFacesError",
]
