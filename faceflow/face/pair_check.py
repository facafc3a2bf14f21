"""Checking that two images show the same face in a comparable position before their flow is
estimated: :func:`landmark_shift` and :class:`PairMismatchError` (used by
:meth:`faceflow.estimate.FaceFlow.estimate` and the whole-video summary).

The measure is the mean distance between the 68 landmarks of the two faces, both registered with
image 1's similarity onto the 224x224 template, in units of the template's inter-ocular distance
(63.3 px, between the eye centres, the means of landmarks 36-41 and 42-47). Measured on the 30
annotated clips (every third frame): consecutive frames median 0.02, 99th percentile 0.17, max
0.41; two frames apart p99 0.30; ten apart median 0.11, p99 0.63; on the 20 ordered pairs of the
five shared stills (five different people) 0.61 to 4.58. :data:`MAX_SHIFT_IOD` = 0.5 refuses all of
those stranger pairs and passes 99 % of pairs up to five frames apart.
No torch at import (the option modules read the constant).
"""
from __future__ import annotations

import numpy as np

from faceflow.errors import FaceflowError

MAX_SHIFT_IOD = 0.5


class PairMismatchError(FaceflowError):
    """The two images of a pair do not show the same face in a comparable position."""


def landmark_shift(lmk1, lmk2, transform=None) -> float:
    """The mean distance between landmarks (68, 2) of image 1 and image 2, both mapped by image 1's
    registration ``transform`` (a :class:`~faceflow.geometry.similarity.Similarity` onto the
    224x224 template; default: computed from ``lmk1``), in template inter-ocular distances."""
    from faceflow.face.registration import TEMPLATE_SIZE, register_landmarks, template_landmarks

    T = transform if transform is not None else register_landmarks(lmk1, TEMPLATE_SIZE)
    tl = template_landmarks(TEMPLATE_SIZE)
    iod = float(np.linalg.norm(tl[36:42].mean(0) - tl[42:48].mean(0)))
    a = np.asarray(T.apply(np.asarray(lmk1, np.float64)), np.float64)
    b = np.asarray(T.apply(np.asarray(lmk2, np.float64)), np.float64)
    return float(np.nanmean(np.linalg.norm(a - b, axis=-1)) / iod)


def check_pair(shift: float, max_shift: float = MAX_SHIFT_IOD, what: str = "the two images") -> None:
    """Raise :class:`PairMismatchError` when ``shift`` (see :func:`landmark_shift`) exceeds ``max_shift``."""
    if shift > max_shift:
        raise PairMismatchError(
            f"{what} do not show the same face in a comparable position: image 2's landmarks lie on average "
            f"{shift:.2f} inter-ocular distances from image 1's after registration (at most {max_shift:g} "
            f"allowed); pass --force (check=False) to estimate the flow anyway")
