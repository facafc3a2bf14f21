"""Per-frame conditioning of a reenactment model (Head2Head++, Koujan's thesis Sec. 7.2).

The generator sees, in the target's crop of size S, ``X = [NMFC | eye sketch]`` (6 channels):
the NMFC render of the face mesh (eq. (7.2)) and the eye sketch (eye outlines and pupils,
eq. (7.3) for the pupils, :mod:`faceflow.face.eyes`). :func:`render_conditioning` draws both from
morphable-model parameters exactly as ``python -m faceflow annotate`` stores them
(:func:`faceflow.render.pncc.face_nmfc_uint8`), so a model trained on an annotation's ``nmfc.npy`` /
``eyes.npy`` is driven by the same kind of image. :func:`mouth_boxes` gives the square mouth
regions the mouth discriminator looks at.

Conventions: cameras are the scaled orthographic ``p = f C R S + t`` of :mod:`faceflow.geometry.camera`
in crop pixels (as ``data/camera_*.npy``); points are (x, y) crop pixels with the centre of pixel
(row i, col j) at (j + 0.5, i + 0.5).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from faceflow.errors import FaceflowError
from faceflow.face.eyes import eye_sketch
from faceflow.geometry.camera import Camera
from faceflow.render.pncc import face_nmfc_uint8
from vid2vid import discriminators as dsc

MOUTH = slice(48, 68)  # iBUG mouth points (outer 48-59, inner 60-67)

__all__ = ["render_conditioning", "mouth_boxes"]


def _array(x, shape: tuple, name: str, dtype=np.float32) -> np.ndarray:
    """``x`` as a numpy array of ``shape`` (None = any length), else FaceflowError naming it."""
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise FaceflowError(f"{name} must be a numeric array of shape {shape}: {e}") from None
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("T" if s is None else str(s) for s in shape) + ")"
        raise FaceflowError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


def render_conditioning(model, identity, exp, R, t, f, lmk68=None, pupils=None, size: int = 256, eyes=None, *,
                        batch: int = 16, progress: bool | None = None) -> dict[str, np.ndarray]:
    """The conditioning images of T frames from model parameters.

    model: the :class:`~faceflow.geometry.morphable.MorphableModel` the parameters belong to (the
    annotation tool fits the ``skin`` model); identity (K_id,), exp (T, K_exp); cameras in crop
    pixels R (T, 3, 3), t (T, 3), f (T,); size S. Eye sketches come from ``eyes`` (T, S, S, 3)
    uint8 when given (e.g. an annotation's ``eyes.npy``), otherwise they are drawn with
    :func:`faceflow.face.eyes.eye_sketch` from lmk68 (T, 68, 2) crop pixels and pupils (T, 2, 2)
    (None, or a NaN row: that pupil is not drawn). numpy arrays or tensors; runs on the model's
    device in chunks of ``batch`` frames, without gradients; ``progress`` shows a bar (default:
    when T > 4 * batch).

    Returns numpy arrays: ``cond`` (T, S, S, 6) uint8 = [NMFC | eye sketch] (eq. (7.2) of
    Head2Head++, the NMFC identical to the annotation's for the same parameters),
    ``face_mask`` (T, S, S) bool (pixels of the NMFC), ``lmk68_model`` (T, 68, 2) float32 the
    model's 68 landmark vertices projected into the crop.
    """

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise FaceflowError(f"size must be a positive integer (crop pixels), got {size!r}")
    S = int(size)
    ident, exp, R, t, f = _parameters(model, identity, exp, R, t, f)
    T = exp.shape[0]
    eyes, lmk68, pupils = _eye_inputs(eyes, lmk68, pupils, T, S)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise FaceflowError(f"batch must be a positive integer, got {batch!r}")

    out = {"cond": np.zeros((T, S, S, 6), np.uint8), "face_mask": np.zeros((T, S, S), bool),
           "lmk68_model": np.zeros((T, 68, 2), np.float32)}
    show = T > 4 * batch if progress is None else bool(progress)
    bar = tqdm(total=T, unit="frame", desc="conditioning") if show else None
    try:
        with torch.no_grad():
            for a in range(0, T, batch):
                b = min(a + batch, T)
                _render_frames(model, ident, exp[a:b], R[a:b], t[a:b], f[a:b], S, out, a)
                for k in range(a, b):
                    out["cond"][k, ..., 3:] = eyes[k] if eyes is not None else eye_sketch(lmk68[k], pupils[k], (S, S))
                if bar is not None:
                    bar.update(b - a)
    finally:
        if bar is not None:
            bar.close()
    return out


def _parameters(model, identity, exp, R, t, f) -> tuple[np.ndarray, ...]:
    """The model parameters of :func:`render_conditioning` as checked float32 arrays: identity
    (K_id,), exp (T, K_exp), R (T, 3, 3), t (T, 3), f (T,), all finite."""
    ident = _array(identity, (model.num_id,), "identity")
    exp = _array(exp, (None, model.num_exp), "exp")
    T = exp.shape[0]
    R = _array(R, (T, 3, 3), "R (camera rotations)")
    t = _array(t, (T, 3), "t (camera translations)")
    f = _array(f, (T,), "f (camera scales)")
    for name, a in (("identity", ident), ("exp", exp), ("R", R), ("t", t), ("f", f)):
        if not np.isfinite(a).all():
            raise FaceflowError(f"{name} contains NaN or infinite values")
    return ident, exp, R, t, f


def _eye_inputs(eyes, lmk68, pupils, T: int, S: int):
    """What the eye sketches of :func:`render_conditioning` come from: (eyes (T, S, S, 3) uint8,
    None, ``pupils`` as given) when ``eyes`` is given, else (None, lmk68 (T, 68, 2) float64,
    pupils (T, 2, 2) float64, NaN where absent)."""
    if eyes is not None:
        if torch.is_tensor(eyes):
            eyes = eyes.detach().cpu().numpy()
        eyes = np.asarray(eyes)
        if eyes.shape != (T, S, S, 3) or eyes.dtype != np.uint8:
            raise FaceflowError(f"eyes must be uint8 (T, S, S, 3) = ({T}, {S}, {S}, 3), got {eyes.dtype} {eyes.shape}")
        return eyes, lmk68, pupils
    if lmk68 is None:
        raise FaceflowError("eye sketches need either eyes images or lmk68 (and pupils) to draw them from")
    lmk68 = _array(lmk68, (T, 68, 2), "lmk68", np.float64)
    pupils = np.full((T, 2, 2), np.nan) if pupils is None else _array(pupils, (T, 2, 2), "pupils", np.float64)
    return None, lmk68, pupils


def _render_frames(model, ident: np.ndarray, exp, R, t, f, S: int, out: dict, a: int) -> None:
    """The NMFC (eq. (7.2) of Head2Head++), its mask and the projected model landmarks of frames
    a..a+n-1 (exp (n, K_exp), R (n, 3, 3), t (n, 3), f (n,)) into ``out`` ('cond' channels 0-3,
    'face_mask', 'lmk68_model'), on the model's device."""
    dev = model.device
    n = exp.shape[0]
    e = torch.from_numpy(np.ascontiguousarray(exp)).to(dev)
    i = torch.from_numpy(ident)[None].expand(n, -1).to(dev)
    cam = Camera(*(torch.from_numpy(np.ascontiguousarray(x)).to(dev) for x in (R, t, f)))
    # same operations as VideoFit.image_vertices, which the annotation renders from
    verts = cam.project(model.shape(i, e, model.subset("face").indices))
    img, fm = face_nmfc_uint8(model, verts, S)
    out["cond"][a:a + n, ..., :3] = img.cpu().numpy()
    out["face_mask"][a:a + n] = fm.cpu().numpy()
    out["lmk68_model"][a:a + n] = cam.project(model.shape(i, e, model.lmk68))[..., :2].cpu().numpy()


def mouth_boxes(lmk68, size: int, box: int | None = None):
    """Square mouth boxes (x0, y0, x1, y1) of side ``box`` (default :func:`vid2vid.discriminators.mouth_size`), centred
    on the mean of the mouth points 48-67 and shifted (not shrunk) to lie inside the S x S image
    (placed by :func:`vid2vid.discriminators.mouth_boxes`).

    lmk68 (T, 68, 2) pixels (numpy or torch). Returns (T, 4) int64 of the same kind (torch on
    the input's device): the box holds pixel rows y0..y1-1 and columns x0..x1-1, i.e.
    ``image[y0:y1, x0:x1]``, continuous extent [x0, x1] x [y0, y1]; x1 - x0 = y1 - y0 = box.
    """
    is_t = torch.is_tensor(lmk68)
    pts = lmk68.detach().cpu().double().numpy() if is_t else np.asarray(lmk68, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"lmk68 must have shape (T, 68, 2), got {tuple(pts.shape)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    side = dsc.mouth_size(size) if box is None else box
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or not 1 <= side <= size:
        raise ValueError(f"mouth box side must be an integer in [1, {size}], got {side!r}")
    centre = pts[:, MOUTH].mean(1)  # (T, 2)
    if not np.isfinite(centre).all():
        raise ValueError("mouth landmarks contain NaN or infinite values")
    boxes = dsc.mouth_boxes(torch.from_numpy(centre), size, size, int(side))  # the one box geometry
    return boxes.to(lmk68.device) if is_t else boxes.numpy()
