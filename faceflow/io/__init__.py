"""Reading and writing: the one package through which faceflow reads and writes media and files.

- :mod:`faceflow.io.video`: videos through ffmpeg (:func:`probe`, :class:`VideoReader`, :func:`read_frames`,
  :func:`read_video`, :class:`VideoWriter`, :func:`write_video`); frames are RGB ``np.uint8 (H, W, 3)``.
- :mod:`faceflow.io.images`: :func:`read_image`, :func:`write_image` through OpenCV.
- :mod:`faceflow.io.files`: path checks and atomic files (:func:`atomic_path`, :func:`save_npy`,
  :func:`save_npz`, :func:`save_json`).
- :mod:`faceflow.io.mesh`: OBJ / PLY meshes; :mod:`faceflow.io.safeload`: tensors from user files;
  :mod:`faceflow.io.rundir`: :class:`~faceflow.io.rundir.RunState`, resumable output directories.

The names of the first three are re-exported here, so ``from faceflow import io; io.read_video(...)``
(the module ``faceflow/io.py`` before the package) keeps working.
"""
from faceflow.io.files import MAX_SIDE, PathLike, atomic_path, save_json, save_npy, save_npz
from faceflow.io.images import read_image, write_image
from faceflow.io.video import (
    DEFAULT_MAX_BYTES,
    VideoInfo,
    VideoReader,
    VideoWriter,
    probe,
    read_frames,
    read_video,
    write_video,
)

__all__ = ["DEFAULT_MAX_BYTES", "MAX_SIDE", "PathLike", "VideoInfo", "VideoReader", "VideoWriter", "atomic_path",
           "probe", "read_frames", "read_image", "read_video", "save_json", "save_npy", "save_npz", "write_image",
           "write_video"]
