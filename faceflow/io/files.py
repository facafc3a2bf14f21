"""Paths and atomic files: the checks every reader and writer of :mod:`faceflow.io` applies to a
path, and writing through a hidden ``.NAME.<id>.partial.EXT`` next to the target that is renamed
into place only when complete (:func:`atomic_path`, :func:`save_npy`, :func:`save_npz`,
:func:`save_json`). Bad input raises :class:`~faceflow.errors.MediaError` naming the file."""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Iterator, Union

import numpy as np

from faceflow.errors import MediaError

PathLike = Union[str, "os.PathLike[str]"]
MAX_SIDE = 16384                   # largest accepted width or height, in pixels

def check_path(path, what: str, output: bool = False) -> str:
    """Check a path argument; return it absolute.  Inputs must be non-empty files;
    for outputs the parent directories are created."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise MediaError(f"{what} path must be a str or os.PathLike, got {type(path).__name__}")
    p = os.path.abspath(os.fspath(path))
    if os.path.isdir(p):
        raise MediaError(f"{what} path is a directory, not a file: {p}")
    if output:
        try:
            os.makedirs(os.path.dirname(p), exist_ok=True)
        except OSError as e:
            raise MediaError(f"cannot create the directory for {p}: {e}") from None
    elif not os.path.exists(p):
        raise MediaError(f"{what} file not found: {p}")
    elif os.path.getsize(p) == 0:
        raise MediaError(f"{what} file is empty (0 bytes): {p}")
    return p


def check_out_dir(path, what: str = "--out", create: bool = True) -> str:
    """An output directory argument: it may exist as a directory or not exist yet; an existing
    file (or a parent that is a file) is refused. Returns it absolute, created unless ``create`` is False."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise MediaError(f"{what} must be a directory path, got {type(path).__name__}")
    p = os.path.abspath(os.fspath(path))
    if os.path.exists(p) and not os.path.isdir(p):
        raise MediaError(f"{what} {p} is an existing file, not a directory: choose a directory for the outputs")
    if not create:
        return p
    try:
        os.makedirs(p, exist_ok=True)
    except OSError as e:
        raise MediaError(f"cannot create the output directory {p}: {e}") from None
    return p


def check_size(width: int, height: int, path: str) -> None:
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise MediaError(f"{path}: absurd frame size {width}x{height} "
                         f"(each side must be between 1 and {MAX_SIDE})")


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise MediaError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def partial_name(final: str) -> str:
    folder, name = os.path.split(final)
    stem, ext = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.{uuid.uuid4().hex[:8]}.partial{ext}")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path`` (same extension) to write to.

    On normal exit it replaces ``path`` (:func:`os.replace`); on an exception it is
    deleted and ``path`` keeps its previous content, if any.
    """
    final = check_path(path, "output", output=True)
    tmp = partial_name(final)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise MediaError(f"{final}: nothing was written to the temporary file {tmp}")
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def save_npy(path: PathLike, arr) -> str:
    """:func:`numpy.save` ``arr`` atomically, without pickles; return the absolute path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            try:
                np.save(f, np.asanyarray(arr), allow_pickle=False)
            except ValueError as e:
                raise MediaError(f"{path}: cannot save as .npy: {e}") from None
            f.flush()
            os.fsync(f.fileno())
    return os.path.abspath(os.fspath(path))


def save_npz(path: PathLike, **arrays) -> str:
    """:func:`numpy.savez` the named arrays atomically (no pickles); return the absolute path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asanyarray(v) for k, v in arrays.items()})
            f.flush()
            os.fsync(f.fileno())
    return os.path.abspath(os.fspath(path))


def save_json(path: PathLike, obj, indent: int = 1) -> str:
    """Write ``obj`` as JSON atomically (numpy scalars become floats); return the absolute path."""
    text = json.dumps(obj, indent=indent, default=float)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return os.path.abspath(os.fspath(path))
