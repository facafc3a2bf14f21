"""Facial landmarks: detection in one image (following a face through a video and smoothing
its landmarks: :mod:`faceflow.face.tracking`).

Backends share one interface (``detect(image) -> list[Face]``, largest face first):

- :class:`MediapipeDetector` (default): mediapipe 0.10.21 FaceMesh with its bundled weights,
  478 points including the irises (``refine=True``), static-image or tracking mode.  The
  68-point Multi-PIE/iBUG set is taken from the mesh through :data:`MP68`.
- :class:`FanDetector` (optional): face-alignment's 2D-FAN with the S3FD detector, used only
  when its weights are already in the torch hub cache; it never downloads anything.
- :class:`DlibDetector`: dlib's HOG detector + the iBUG 68-point shape predictor, Head2Head++'s
  tracker (weights inside the PyPI package face-recognition-models, :func:`dlib_model`); 68
  points, no dense ones.

:func:`make_detector` makes one by name; :func:`detect_image` finds the face in a photo.

Conventions: images are RGB ``uint8`` ``(H, W, 3)``; points are ``(x, y)`` pixels with y down
and pixel ``(i, j)`` centred at ``(j + 0.5, i + 0.5)``.  mediapipe's coordinates, normalised by
the image size, are multiplied back by W and H without any half-pixel shift (a possible offset
of mediapipe's own is far below its landmark noise).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from faceflow.errors import AssetNotFoundError, FaceflowError, MediaError

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


def check_image(image, what: str = "image") -> np.ndarray:
    """``image`` as a contiguous RGB uint8 (H, W, 3) array; MediaError naming ``what`` otherwise."""
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
        image = check_image(image)
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
        image = check_image(image)
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


# ----------------------------------------------------------------------------- dlib (Head2Head++'s detector)
# dlib's model files, inside the PyPI package face-recognition-models (see faceflow.face.dlib_face)
DLIB_MODEL_FILES = {"landmarks68": "shape_predictor_68_face_landmarks.dat",
                    "landmarks5": "shape_predictor_5_face_landmarks.dat",
                    "recognition": "dlib_face_recognition_resnet_model_v1.dat"}


def import_dlib():
    try:
        import dlib
    except ImportError as e:
        raise AssetNotFoundError("dlib is not installed: it comes with the locked environment (package dlib-bin; "
                                 "scripts/env.sh), or pip install dlib-bin face-recognition-models") from e
    return dlib


def dlib_model(name: str) -> Path:
    """The path of one of dlib's model files (:data:`DLIB_MODEL_FILES`): ``$FACEFLOW_DLIB_MODELS/<file>``
    when set, else the copy inside the ``face_recognition_models`` package."""
    if name not in DLIB_MODEL_FILES:
        raise FaceflowError(f"unknown dlib model {name!r}; one of {sorted(DLIB_MODEL_FILES)}")
    folder = os.environ.get("FACEFLOW_DLIB_MODELS")
    if folder:
        path = Path(folder) / DLIB_MODEL_FILES[name]
    else:
        import importlib.util

        # found, not imported: the package's __init__ needs setuptools' pkg_resources, which is not installed
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise AssetNotFoundError("dlib's model files come with the package face-recognition-models (in the "
                                     "locked environment), or set FACEFLOW_DLIB_MODELS to a folder holding "
                                     f"{', '.join(DLIB_MODEL_FILES.values())}")
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / DLIB_MODEL_FILES[name]
    if not path.is_file():
        raise AssetNotFoundError(f"dlib model file not found: {path}")
    return path


class DlibDetector:
    """Faces and their 68 landmarks by dlib (HOG detector + the iBUG 68-point predictor), as
    Head2Head++ tracked them. ``upsample``: how often the detector upsamples the image (1 finds
    faces down to about 40 px). Same interface as :class:`faceflow.face.landmarks.MediapipeDetector`:
    :meth:`detect` returns faces largest first; :meth:`reset` and :meth:`close` do nothing."""

    name = "dlib"

    def __init__(self, upsample: int = 1):
        dlib = import_dlib()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model("landmarks68")))
        self.upsample = int(upsample)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image, largest first: 68 landmarks (x, y pixels at
        pixel centres, as mediapipe's), no dense points."""
        image = np.ascontiguousarray(check_image(image))
        faces = []
        for rect in self._detector(image, self.upsample):
            shape = self._predictor(image, rect)
            # dlib's coordinates are integer pixel indices: +0.5 puts them at pixel centres
            lmk = np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], np.float32)
            faces.append(Face(lmk, None, landmark_box(lmk), 1.0))
        return sorted(faces, key=lambda f: -f.area)

    def reset(self) -> None:  # stateless between frames
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "DlibDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


BACKENDS = {"mediapipe": MediapipeDetector, "fan": FanDetector, "dlib": DlibDetector}


def make_detector(name: str = "mediapipe", **kw) -> MediapipeDetector | FanDetector | DlibDetector:
    """A landmark detector by backend name ('mediapipe', 'fan' or 'dlib'); ``kw`` go to its constructor."""
    if name not in BACKENDS:
        raise FaceflowError(f"unknown landmark backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name](**kw)


def pick_face(faces: list[Face], choose: str, image_size: tuple[int, int]) -> Face:
    """The largest of ``faces`` (``choose='largest'``) or the one nearest the centre of an image of
    ``image_size`` (H, W) (``'centre'``)."""
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
    image = check_image(image)
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
    return pick_face(faces, "largest", (h, w))


__all__ = [
    "MP68", "IRIS_CENTRES", "IBUG_FLIP", "Face", "MediapipeDetector", "FanDetector", "DlibDetector", "dlib_model",
    "DLIB_MODEL_FILES", "make_detector",
    "detect_image", "landmark_box", "NoFaceError", "MultipleFacesError",
]
