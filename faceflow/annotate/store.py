"""Reading an annotation in either of its two storage forms, and converting between them.

- ``full`` (:data:`faceflow.annotate.layout.LAYOUT`): every array memory-mapped, PNCC, NMFC,
  eye sketches, masks and the 3D flow of every pair included; about 2.5 GB per minute of 25-fps
  video at 256 px.
- ``compact`` (:data:`COMPACT_LAYOUT`): the source of truth only (the fixed-crop frames as JPEG
  or PNG files end to end, landmarks, fits, pupils, pairs), under 50 MB per minute at JPEG
  quality 95. Everything else is drawn when a row is read, by the same code that wrote the full
  form (:class:`faceflow.annotate.conditioning.FitRenderer`).

:class:`Annotation` serves a row of any full-layout array from either form (``ann.row("pncc", i)``)
plus the pair-level reads training uses; :func:`convert_annotation` writes one form from the other.
"""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from faceflow import io as vio
from faceflow.annotate.layout import LAYOUT, TEMPLATE, open_array
from faceflow.errors import FaceflowError

__all__ = ["COMPACT_LAYOUT", "SMALL", "STORAGES", "FRAME_CODECS", "Annotation", "encode_frame", "decode_frame",
           "frames_record", "read_manifest", "convert_annotation", "layout_of", "directory_bytes"]

STORAGES = ("full", "compact")
FRAME_CODECS = ("jpeg", "png")
# arrays both forms store as they are (the source of truth); dense.npy only when the fit used mediapipe's points
SMALL = ("frame_index", "segment", "lmk68", "dense", "pupils", "exp", "id", "camera_rotation", "camera_translation",
         "camera_scale", "aligned_transform", "pairs", "pair_kind")
COMPACT_LAYOUT = {
    **{f"{n}.npy": LAYOUT[f"{n}.npy"] for n in SMALL},
    "crops_encoded.npy": "(B,) uint8 the N crops (S, S, 3) as JPEG or PNG files end to end (manifest 'frames')",
    "crops_offsets.npy": "(N + 1,) int64 crop i is bytes [off[i], off[i + 1]) of crops_encoded.npy",
}


def layout_of(storage: str) -> dict:
    """The arrays of a storage form: :data:`LAYOUT` (full) or :data:`COMPACT_LAYOUT`."""
    if storage not in STORAGES:
        raise FaceflowError(f"unknown storage {storage!r}; use one of {', '.join(STORAGES)}")
    return dict(LAYOUT) if storage == "full" else dict(COMPACT_LAYOUT)


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a complete annotation directory; :class:`FaceflowError` when the
    directory is missing, incomplete (no ``manifest.json``: annotate still running or
    interrupted) or unreadable."""
    d = Path(directory)
    if not d.is_dir():
        raise FaceflowError(f"{d}: not an annotation directory (does not exist or is not a directory)")
    path = d / "manifest.json"
    if not path.is_file():
        raise FaceflowError(f"{d}: incomplete annotation (no manifest.json; annotate is still running or was "
                            "interrupted: rerun `python -m faceflow annotate VIDEO DIR` or "
                            "`python -m faceflow data real` to finish it)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FaceflowError(f"{path}: unreadable manifest: {e}") from e


# ---------------------------------------------------------------------- frame files

def encode_frame(img: np.ndarray, codec: str = "jpeg", quality: int = 95) -> np.ndarray:
    """An RGB image (H, W, 3) uint8 as a JPEG (``quality`` 1-100, 4:2:0) or PNG file: (B,) uint8."""
    if codec not in FRAME_CODECS:
        raise FaceflowError(f"unknown frame codec {codec!r}; use one of {', '.join(FRAME_CODECS)}")
    bgr = np.ascontiguousarray(img[..., ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if codec == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(".jpg" if codec == "jpeg" else ".png", bgr, params)
    if not ok:
        raise FaceflowError(f"OpenCV could not encode a {img.shape} frame as {codec}")
    return buf.reshape(-1)


def decode_frame(buf: np.ndarray) -> np.ndarray:
    """A JPEG or PNG file (B,) uint8 -> RGB (H, W, 3) uint8."""
    img = cv2.imdecode(np.asarray(buf), cv2.IMREAD_COLOR)
    if img is None:
        raise FaceflowError("a stored crop could not be decoded (corrupt crops_encoded.npy?)")
    return np.ascontiguousarray(img[..., ::-1])


def frames_record(codec: str, quality: int) -> dict:
    """The manifest's ``frames`` of a compact annotation: the crops' codec and JPEG quality."""
    return {"codec": codec, "quality": quality if codec == "jpeg" else None}


def join_encoded(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded frames -> (bytes end to end (B,) uint8, offsets (N + 1,) int64)."""
    sizes = np.array([len(p) for p in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    return data.astype(np.uint8, copy=False), offsets


# ---------------------------------------------------------------------- reader

class Annotation:
    """One complete annotation directory, full or compact, read row by row.

    directory: an annotate output (``manifest.json`` present); model: the loaded 'skin'
    :class:`~faceflow.geometry.morphable.MorphableModel` (compact form only; loaded on first use
    when not given); cache: how many drawn rows of each array to keep in memory (compact form;
    0: none); manifest: its ``storage`` and ``crop_size`` when ``manifest.json`` is not written yet
    (annotate's previews). Big arrays are opened on first use in each process (safe to pickle to
    DataLoader workers).
    """

    # what every reader needs: the frames and the fit (the other arrays are checked by require())
    ESSENTIAL = {"full": ("crops", "exp", "id", "camera_rotation", "camera_translation", "camera_scale"),
                 "compact": ("crops_encoded", "crops_offsets", "frame_index", "exp", "id", "camera_rotation",
                             "camera_translation", "camera_scale", "aligned_transform", "lmk68", "pupils", "pairs")}

    def __init__(self, directory: str | Path, model=None, cache: int = 0, manifest: dict | None = None,
                 exp_basis=None):
        self.dir = Path(directory)
        self.manifest = read_manifest(self.dir) if manifest is None else manifest
        self.storage = self.manifest.get("storage", "full")
        if self.storage not in STORAGES:
            raise FaceflowError(f"{self.dir}: unknown storage {self.storage!r} in manifest.json")
        self.size = int(self.manifest.get("crop_size", 0))
        self.require(self.ESSENTIAL[self.storage])
        # small arrays memory-mapped: a dataset of thousands of videos keeps no per-frame array in memory
        self.small = {n: np.load(p, mmap_mode="r", allow_pickle=False) for n in SMALL
                      if (p := self.dir / "data" / f"{n}.npy").is_file()}
        self.N = len(self.small["exp"])
        self.cache = int(cache)
        self._model, self._exp_basis = model, exp_basis
        self._renderer = None
        self._open: dict[str, np.ndarray] = {}
        self._cached: dict[str, OrderedDict] = {}

    def require(self, names) -> None:
        """:class:`FaceflowError` naming the arrays (names without ``.npy``) this annotation lacks."""
        missing = [f"{n}.npy" for n in names if not (self.dir / "data" / f"{n}.npy").is_file()]
        if missing:
            raise FaceflowError(f"{self.dir}: {self.storage} annotation lacks {', '.join(missing)} (made by another "
                                "version of annotate? rerun it with --overwrite)")

    def __len__(self) -> int:
        return self.N

    def __getstate__(self):  # memmaps and the renderer are reopened in each worker process
        state = self.__dict__.copy()
        state.update(_open={}, _cached={}, _renderer=None, small=sorted(self.small))
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.small = {n: np.load(self.dir / "data" / f"{n}.npy", mmap_mode="r", allow_pickle=False)
                      for n in state["small"]}

    @property
    def pairs(self) -> np.ndarray:
        return self.small["pairs"]

    # -- the arrays each form stores
    def _array(self, name: str) -> np.ndarray:
        if name not in self._open:
            self._open[name] = np.load(self.dir / "data" / f"{name}.npy", mmap_mode="r")
        return self._open[name]

    @property
    def renderer(self):
        """The :class:`~faceflow.annotate.conditioning.FitRenderer` of this annotation."""
        if self._renderer is None:
            from faceflow.annotate.conditioning import FitRenderer
            from faceflow.geometry.morphable import MorphableModel

            if self._model is None:
                self._model = MorphableModel.load("skin")
            self._renderer = FitRenderer.from_arrays(self._model, self.small, self.size, exp_basis=self._exp_basis)
        return self._renderer

    def _remember(self, name: str, key, make):
        """``make()``, or a copy of the value kept from an earlier call (``cache`` rows per name)."""
        if self.cache <= 0:
            return make()
        store = self._cached.setdefault(name, OrderedDict())
        if key not in store:
            store[key] = make()
            if len(store) > self.cache:
                store.popitem(last=False)
        store.move_to_end(key)
        return _copied(store[key])  # callers may write into what they get

    # -- rows
    def crop(self, i: int) -> np.ndarray:
        """Kept frame ``i`` cropped with the fixed box: (S, S, 3) uint8."""
        if self.storage == "full":
            return np.array(self._array("crops")[i])  # a writable copy
        off = self._array("crops_offsets")
        return self._remember("crops", i, lambda: decode_frame(self._array("crops_encoded")[off[i]:off[i + 1]]))

    def aligned(self, i: int) -> np.ndarray:
        """Frame ``i`` registered to the 224 template: (224, 224, 3) uint8."""
        if self.storage == "full":
            return np.array(self._array("aligned")[i])
        return self._remember("aligned", i, lambda: self.renderer.aligned(self.crop(i), i))

    def _image_and_mask(self, i: int, image: str, mask: str, draw) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i`` of the arrays ``image`` and ``mask``: stored (full form) or ``draw()`` (compact)."""
        if self.storage == "full":
            return np.asarray(self._array(image)[i]), np.asarray(self._array(mask)[i])
        return self._remember(image, i, draw)

    def pncc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """PNCC of frame ``i`` in its template: (224, 224, 3) float16 and mask (224, 224) bool."""
        return self._image_and_mask(i, "pncc", "pncc_mask", lambda: tuple(x[0] for x in self.renderer.pncc([i])))

    def nmfc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """NMFC of frame ``i`` in the crop: (S, S, 3) uint8 and face mask (S, S) bool."""
        return self._image_and_mask(i, "nmfc", "face_mask", lambda: tuple(x[0] for x in self.renderer.nmfc([i])))

    def eyes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Eye sketch (S, S, 3) uint8 and eye mask (S, S) bool of frame ``i``."""
        return self._image_and_mask(i, "eyes", "eye_mask", lambda: self.renderer.eyes(i, self.small["pupils"][i]))

    def flow(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """3D flow of pair ``row`` (a -> b, eq. (2) of DeepFaceFlow) in frame a's template:
        (224, 224, 3) float32 (0 off the mask) and mask (224, 224) bool (frame a's PNCC mask)."""
        p = self.pair(row)
        return p["flow"], p["pncc_mask"]

    def pair(self, row: int) -> dict[str, np.ndarray]:
        """What training reads of pair ``row`` (a, b): frame a's ``pncc`` (224, 224, 3) and
        ``pncc_mask`` (224, 224) bool, and the 3D ``flow`` a -> b (224, 224, 3) float32 (0 off the
        mask). The full form stores pncc and flow as float16; the compact form draws all three,
        in float32, from one rasterisation."""
        a, b = (int(v) for v in self.pairs[row])
        if self.storage == "full":
            code, mask = self.pncc(a)
            fl = np.asarray(self._array("flow")[row], np.float32)
            return {"pncc": code, "pncc_mask": mask, "flow": np.where(mask[..., None], fl, 0).astype(np.float32)}

        def draw():  # float32 (the full form rounds pncc and flow to float16)
            code, mask, fl = self.renderer.pair(a, b)
            return {"pncc": code.numpy(), "pncc_mask": mask.numpy(), "flow": fl.numpy()}
        return self._remember("pair", row, draw)

    def view(self, name: str):
        """The full layout's array ``name`` (without ``.npy``) as rows: the memmap itself (full
        form) or a :class:`RowView` drawing each row when indexed (compact form)."""
        if f"{name}.npy" not in LAYOUT:
            raise FaceflowError(f"no array {name!r} in an annotation; known: {', '.join(sorted(LAYOUT))}")
        if name in self.small:
            return self.small[name]
        if self.storage == "full":
            self.require([name])
            return self._array(name)
        shape, dtype = full_shapes(self.N, len(self.pairs), self.size)[name]
        return RowView(self, name, shape, dtype)

    def row(self, name: str, i: int) -> np.ndarray:
        """Row ``i`` of the full layout's array ``name`` (without ``.npy``), from either form."""
        if name in self.small:
            return self.small[name][i]
        readers = {"crops": lambda: self.crop(i), "aligned": lambda: self.aligned(i),
                   "pncc": lambda: self.pncc(i)[0], "pncc_mask": lambda: self.pncc(i)[1],
                   "nmfc": lambda: self.nmfc(i)[0], "face_mask": lambda: self.nmfc(i)[1],
                   "eyes": lambda: self.eyes(i)[0], "eye_mask": lambda: self.eyes(i)[1],
                   "flow": lambda: self.flow(i)[0].astype(np.float16)}
        if name not in readers:
            raise FaceflowError(f"no array {name!r} in an annotation; known: {', '.join(sorted(LAYOUT))}")
        return readers[name]()


class RowView:
    """Array-like rows of one full-layout array of an :class:`Annotation` (``view[i]``, ``len``,
    ``shape``, ``ndim``), each drawn or decoded when it is indexed; integer indices only."""

    def __init__(self, ann: Annotation, name: str, shape: tuple, dtype):
        self.ann, self.name, self.shape, self.dtype = ann, name, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i) -> np.ndarray:
        return self.ann.row(self.name, int(i))


def _copied(value):
    """A copy of a drawn value (an array, or a tuple / dict of arrays)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------- conversion

def full_shapes(N: int, M: int, S: int) -> dict:
    """{name: (shape, dtype)} of the full layout's big arrays for N kept frames, M pairs, crop size S."""
    T = TEMPLATE
    return {"crops": ((N, S, S, 3), np.uint8), "aligned": ((N, T, T, 3), np.uint8),
            "pncc": ((N, T, T, 3), np.float16), "pncc_mask": ((N, T, T), np.bool_),
            "nmfc": ((N, S, S, 3), np.uint8), "face_mask": ((N, S, S), np.bool_),
            "eyes": ((N, S, S, 3), np.uint8), "eye_mask": ((N, S, S), np.bool_),
            "flow": ((M, T, T, 3), np.float16)}


def convert_annotation(src: str | Path, dst: str | Path, to: str, *, frames: str = "jpeg", quality: int = 95,
                       model=None, progress: bool = True) -> dict:
    """Write the annotation ``src`` (either form) into the new directory ``dst`` in form ``to``
    ('full' or 'compact', with ``frames`` codec and JPEG ``quality``); the work happens in
    ``dst.partial`` which is renamed last, so ``dst`` is complete or absent. Returns the new manifest."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    layout_of(to)
    ann = Annotation(src, model=model)
    if dst.exists():
        raise FaceflowError(f"{dst} exists; choose a new output directory")
    work = dst.with_name(dst.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    for name, arr in ann.small.items():
        vio.save_npy(work / "data" / f"{name}.npy", arr)
    if to == "compact":
        parts = [encode_frame(ann.crop(i), frames, quality) for i in tqdm(range(ann.N), desc="encode", unit="frame",
                                                                          disable=not progress)]
        data, offsets = join_encoded(parts)
        vio.save_npy(work / "data" / "crops_encoded.npy", data)
        vio.save_npy(work / "data" / "crops_offsets.npy", offsets)
        extra = {"frames": frames_record(frames, quality)}
    else:
        shapes = full_shapes(ann.N, len(ann.pairs), ann.size)
        arrays = {n: open_array(work / "data" / f"{n}.npy", *shapes[n]) for n in shapes}
        for i in tqdm(range(ann.N), desc="draw frames", unit="frame", disable=not progress):
            arrays["crops"][i], arrays["aligned"][i] = ann.crop(i), ann.aligned(i)
            arrays["pncc"][i], arrays["pncc_mask"][i] = ann.pncc(i)
            arrays["nmfc"][i], arrays["face_mask"][i] = ann.nmfc(i)
            arrays["eyes"][i], arrays["eye_mask"][i] = ann.eyes(i)
        for m in tqdm(range(len(ann.pairs)), desc="3D flow", unit="pair", disable=not progress):
            arrays["flow"][m] = ann.row("flow", m)
        for arr in arrays.values():
            arr.flush()
        extra = {"frames": None}
    if (src / "previews").is_dir():
        shutil.copytree(src / "previews", work / "previews")
    for name in ("track.npz", "fit.npz"):  # the tracking and fit records stay with the annotation
        if (src / name).is_file():
            shutil.copy2(src / name, work / name)
    options = {**ann.manifest.get("options", {}), "storage": to}
    if to == "compact":
        options.update(frames=frames, quality=quality)
    manifest = {**ann.manifest, "options": options, "storage": to, "layout": layout_of(to), **extra,
                "converted_from": {"storage": ann.storage, "source": str(src)}}
    vio.save_json(work / "manifest.json", manifest)
    work.rename(dst)
    return manifest


def directory_bytes(directory: str | Path, pattern: str = "data/*") -> int:
    """Bytes of the files matching ``pattern`` under ``directory`` (files that vanish while
    counting are left out)."""
    total = 0
    for p in Path(directory).glob(pattern):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except OSError:
            pass
    return int(total)


def frames_psnr(ann: Annotation, reference: Annotation, count: int = 16) -> float:
    """Mean PSNR (dB) of ``count`` evenly spaced crops of ``ann`` against ``reference``."""
    if ann.N == 0 or reference.N != ann.N:
        raise FaceflowError(f"cannot compare crops: {ann.N} frames against {reference.N}")
    idx = np.unique(np.linspace(0, ann.N - 1, min(count, ann.N)).round().astype(int))
    mse = [np.mean((ann.crop(i).astype(np.float64) - reference.crop(i).astype(np.float64)) ** 2) for i in idx]
    return float(np.mean([10 * np.log10(255.0 ** 2 / max(m, 1e-12)) for m in mse]))

