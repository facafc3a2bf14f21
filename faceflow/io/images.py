"""Images through OpenCV: :func:`read_image` returns RGB ``np.uint8 (H, W, 3)``, :func:`write_image`
writes atomically. Bad input raises :class:`~faceflow.errors.MediaError` naming the file."""
from __future__ import annotations

import os

import cv2
import numpy as np

from faceflow.errors import MediaError
from faceflow.io.files import PathLike, atomic_path, check_path, check_size


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as RGB ``np.uint8 (H, W, 3)``: grayscale is replicated, alpha dropped,
    16-bit scaled to 8 bits, EXIF orientation applied."""
    p = check_path(path, "image")
    img = cv2.imdecode(np.fromfile(p, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{p}: not a readable image (corrupt or unsupported format)")
    check_size(img.shape[1], img.shape[0], p)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _image_to_uint8(img, path: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise MediaError(f"{path}: image must be a numpy array, got {type(img).__name__}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise MediaError(f"{path}: image must have shape (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    check_size(img.shape[1], img.shape[0], path)
    if img.dtype == np.uint8:
        return img
    if img.dtype.kind != "f":
        raise MediaError(f"{path}: image must be uint8 or float in [0, 1], got dtype {img.dtype}")
    if not np.isfinite(img).all():
        raise MediaError(f"{path}: float image contains NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise MediaError(f"{path}: float image values must be in [0, 1], got [{lo:g}, {hi:g}] "
                         "(convert 0-255 data to uint8 first)")
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: PathLike, img: np.ndarray, jpeg_quality: int = 95) -> str:
    """Write an image atomically, format from the extension (.png, .jpg, ...); return the path.

    ``img``: uint8, or float in [0, 1], shaped ``(H, W)`` (gray), ``(H, W, 3)`` (RGB) or
    ``(H, W, 4)`` (RGBA; JPEG drops the alpha).
    """
    p = check_path(path, "output", output=True)
    ext = os.path.splitext(p)[1].lower()
    if not ext or not cv2.haveImageWriter(p):
        raise MediaError(f"{p}: unsupported image file extension {ext!r}")
    arr = _image_to_uint8(img, p)
    jpeg = ext in (".jpg", ".jpeg")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGR if jpeg else cv2.COLOR_RGBA2BGRA)
    elif arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(ext, arr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if jpeg else [])
    if not ok:
        raise MediaError(f"{p}: OpenCV could not encode the image as {ext}")
    with atomic_path(p) as tmp:
        data.tofile(tmp)
    return p
