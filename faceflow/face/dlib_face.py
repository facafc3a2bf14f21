"""dlib's face models, offline: Head2Head++'s 68-point landmark predictor and the face-recognition
ResNet behind the identity metric (CSIM, :mod:`faceflow.face.identity`).

The weights come inside PyPI packages, never downloaded at run time: ``dlib-bin`` (a prebuilt dlib
20.0, Boost Software License, 4 MB) and ``face-recognition-models`` 0.3.0 (MIT licence, 100 MB:
``shape_predictor_68_face_landmarks.dat``, ``shape_predictor_5_face_landmarks.dat``,
``dlib_face_recognition_resnet_model_v1.dat``, dlib's own model files; dlib's notes on them: the
recognition network and the 5-point predictor are free to use, while the 68-point predictor was
trained on the iBUG 300-W data, whose licence excludes commercial use). ``$FACEFLOW_DLIB_MODELS``
may name a folder holding the same three files instead.

- :class:`faceflow.face.landmarks.DlibDetector` (there, beside the other backends): dlib's HOG face
  detector + the 68-point shape predictor (``detect(image) -> list[Face]``, 68 points in the iBUG
  order, no dense points), and :func:`faceflow.face.landmarks.dlib_model`, the files' paths;
- :class:`FaceEmbedder` (here): 128-D face descriptors (dlib's ResNet on a 150x150 chip aligned by the
  5-point predictor), for a face found by dlib or given by its 68 landmarks.
"""
from __future__ import annotations

import numpy as np

from faceflow.errors import FaceflowError
from faceflow.face.landmarks import check_image, dlib_model, import_dlib, landmark_box

__all__ = ["FaceEmbedder", "optional_embedder"]


def _rect(dlib, box):
    """A ``dlib.rectangle`` of a box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, x1, y1)


class FaceEmbedder:
    """dlib's face-recognition network: a 128-D descriptor per face (faces of one person are
    within about 0.6 of each other in Euclidean distance, dlib's rule). ``jitters``: how many
    jittered copies of the chip are averaged (0 = the chip once)."""

    def __init__(self, jitters: int = 0):
        dlib = import_dlib()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._sp5 = dlib.shape_predictor(str(dlib_model("landmarks5")))
        self._net = dlib.face_recognition_model_v1(str(dlib_model("recognition")))
        self.jitters = int(jitters)

    def box_of(self, image: np.ndarray, landmarks68: np.ndarray | None = None) -> np.ndarray | None:
        """The face box (x0, y0, x1, y1): around the given 68 landmarks (grown like dlib's
        detector boxes), else the largest face dlib finds; None when there is none."""
        if landmarks68 is not None:
            x0, y0, x1, y1 = landmark_box(np.asarray(landmarks68, np.float32))
            w, h = x1 - x0, y1 - y0
            return np.array([x0 - 0.05 * w, y0 - 0.15 * h, x1 + 0.05 * w, y1 + 0.05 * h], np.float32)
        rects = sorted(self._detector(image, 1), key=lambda r: -r.area())
        if not rects:
            return None
        r = rects[0]
        return np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)

    def embed(self, image: np.ndarray, landmarks68: np.ndarray | None = None) -> np.ndarray | None:
        """The (128,) float32 descriptor of the face in an RGB uint8 image (the largest one dlib
        finds, or the one at ``landmarks68`` (68, 2)); None when no face is found."""
        image = np.ascontiguousarray(check_image(image))
        box = self.box_of(image, landmarks68)
        if box is None:
            return None
        shape = self._sp5(image, _rect(self._dlib, box))
        return np.asarray(self._net.compute_face_descriptor(image, shape, self.jitters), np.float32)


def optional_embedder(say=print) -> FaceEmbedder | None:
    """A :class:`FaceEmbedder`, or None (said: CSIM is then n/a) when dlib or its model files are
    missing."""
    try:
        return FaceEmbedder()
    except (ImportError, FaceflowError) as e:
        say(f"note: CSIM n/a: {e}")
        return None
