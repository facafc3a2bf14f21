"""The annotated clips a synthetic set draws from (:mod:`faceflow.data.synthetic`): loading an
annotate output directory and finding the complete clips of one identity split (a clip of
another split is refused, so nothing leaks across the split).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceflow.annotate.store import Annotation
from faceflow.data.splits import clips as split_clips
from faceflow.data.splits import split_of
from faceflow.errors import FaceflowError


@dataclass
class Clip:
    """One annotated clip (output of ``python -m faceflow annotate``): the arrays the generator
    reads. crops (N, S, S, 3) uint8 memmap; id (100,); exp (N, 53); rotation (N, 3, 3),
    translation (N, 3), scale (N,): the fitted cameras in crop pixels; segment (N,); face_mask
    (N, S, S) bool memmap of the fitted inner face, when the annotation has it."""

    stem: str
    path: Path
    split: str
    crops: np.ndarray
    id: np.ndarray
    exp: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    segment: np.ndarray
    face_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.exp)


def _clip_stem(path: Path, manifest: dict | None = None) -> str:
    from faceflow.data.pseudo import clip_stem, read_manifest

    return clip_stem(path, manifest if manifest is not None else read_manifest(path))


def load_clip(path: str | Path, split: str) -> Clip:
    """Open an annotated clip directory (it must hold ``manifest.json``, i.e. be complete)."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise FaceflowError(f"{path} is not a complete annotated clip (no manifest.json); finish it with "
                            f"python -m faceflow annotate VIDEO {path}")
    ann = Annotation(path)  # either storage form: the compact one decodes crops, draws masks on access
    crops = ann.view("crops")
    ld = lambda n: np.asarray(ann.small[n])
    exp = ld("exp").astype(np.float32)
    n = len(exp)
    seg = ld("segment").astype(np.int64) if "segment" in ann.small else np.zeros(n, np.int64)
    clip = Clip(_clip_stem(path, ann.manifest), path, split, crops, ld("id").astype(np.float32).reshape(-1), exp,
                ld("camera_rotation").astype(np.float32), ld("camera_translation").astype(np.float32),
                ld("camera_scale").astype(np.float32).reshape(-1), seg)
    # the face mask is optional: a compact annotation would draw it with the model, so it goes without
    if ann.storage == "full" and (path / "data" / "face_mask.npy").is_file():
        fm = ann.view("face_mask")
        if fm.shape == crops.shape[:3]:
            clip.face_mask = fm
    shapes = {"crops": crops.shape[0], "camera_rotation": len(clip.rotation),
              "camera_translation": len(clip.translation), "camera_scale": len(clip.scale), "segment": len(seg)}
    bad = {k: v for k, v in shapes.items() if v != n}
    if n == 0 or bad or crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[3] != 3:
        raise FaceflowError(f"annotated clip {path} is inconsistent: {n} expressions, crops {crops.shape}, "
                            f"other lengths {shapes}")
    return clip


def find_clips(sources, split: str) -> list[Clip]:
    """The annotated clips of ``split`` among ``sources``: a directory holding annotated clips
    (its complete sub-directories of that split are used; others are skipped), one clip directory,
    or a list of either. An explicitly named clip of another split is an error (it would leak
    across the identity split). Sorted by stem."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(s) for s in sources]
    if not sources:
        raise FaceflowError("no annotated clips given (pass --annotated DIR)")
    found: dict[str, Clip] = {}
    for src in sources:
        if not src.is_dir():
            raise FaceflowError(f"annotated clips: {src} is not a directory")
        if (src / "manifest.json").is_file():
            stem = _clip_stem(src)
            s = _split_of(stem, src)
            if s != split:
                raise FaceflowError(f"{src} is clip {stem!r} of the {s} split, not of {split}: using it would "
                                    "leak across the identity split")
            found.setdefault(stem, load_clip(src, split))
            continue
        if (src / "data").is_dir() or (src / "state.json").is_file():
            raise FaceflowError(f"{src} is an incomplete annotated clip (no manifest.json); finish it with "
                                f"python -m faceflow annotate VIDEO {src}")
        for sub in sorted(p for p in src.iterdir() if p.is_dir()):
            if not (sub / "manifest.json").is_file():
                continue  # not an annotated clip, or still being written
            stem = _clip_stem(sub)
            try:
                s = split_of(stem)
            except FaceflowError:
                continue  # not in the split table: never used
            if s == split and stem not in found:
                found[stem] = load_clip(sub, split)
    if not found:
        where = ", ".join(str(s) for s in sources)
        try:
            wanted = ", ".join(split_clips(split))
        except Exception:
            wanted = "?"
        raise FaceflowError(f"no complete annotated clip of the {split!r} split in {where} (clips of that split: "
                            f"{wanted}); make them with: python -m faceflow annotate VIDEO "
                            f"{sources[0]}/<clip_stem> --max-frames 300 --gap-stride 4")
    return [found[k] for k in sorted(found)]


def _split_of(stem: str, path: Path) -> str:
    """The split of an explicitly named clip; a clip outside the split table is an error naming it."""
    try:
        return split_of(stem)
    except FaceflowError as e:  # faceflow.data.splits raises it for a stem outside its table
        raise FaceflowError(f"{path}: clip {stem!r} is not in the identity split table ({e})") from e

