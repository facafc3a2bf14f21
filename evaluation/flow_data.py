"""The flow benchmark's test data (:mod:`evaluation.flow_benchmark`), pair-sample contract items at
the 224x224 registered template of frame 1: the synthetic test split (:func:`open_synthetic`) and
real pseudo-ground-truth pairs (:func:`open_real`): by default the identity split's test persons
(the published tables), or any annotated clips (a user's own footage: ``--clips DIR...``, or every
complete annotation under a root), whose consecutive and gap pairs are told apart
(:class:`KindTagged`, :func:`pair_kinds`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceflow.data import splits
from faceflow.data.pseudo import AnnotatedPairs, read_manifest, split_dirs
from faceflow.data.synthetic import SyntheticPairs
from faceflow.errors import FaceflowError
from faceflow.geometry.morphable import MorphableModel

__all__ = ["DATASETS", "KINDS", "open_synthetic", "KindTagged", "open_real", "open_real_test", "annotated_dirs",
           "pair_kinds"]

DATASETS = ("synthetic", "real")
KINDS = {0: "consecutive", 1: "gap"}


def open_synthetic(path: str | Path):
    """The synthetic test dataset in ``path`` (a directory with ``manifest.json``)."""
    p = Path(path)
    if not p.is_dir():
        raise FaceflowError(f"synthetic dataset directory {p} does not exist")
    if not (p / "manifest.json").is_file():
        raise FaceflowError(f"synthetic dataset {p} is incomplete: no manifest.json (still being written?)")
    return SyntheticPairs(p)


class KindTagged(torch.utils.data.Dataset):
    """Datasets of known pair kinds, concatenated; items gain ``"pair_kind"`` (int64 scalar:
    0 consecutive, 1 gap). ``parts``: [(dataset, kind), ...]."""

    def __init__(self, parts):
        self.parts = [(ds, int(k)) for ds, k in parts]
        self._offsets = np.concatenate([[0], np.cumsum([len(ds) for ds, _ in self.parts])]).astype(np.int64)
        self.pair_kind = np.concatenate([np.full(len(ds), k, np.int64) for ds, k in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        j = int(np.searchsorted(self._offsets, index, side="right") - 1)
        ds, kind = self.parts[j]
        item = dict(ds[index - int(self._offsets[j])])
        item["pair_kind"] = torch.tensor(kind, dtype=torch.int64)
        return item


def open_real_test(root: str | Path, say=print):
    """The real pseudo-GT test split under ``root``: the complete annotations of the test
    persons' clips (:func:`faceflow.data.pseudo.split_dirs`), consecutive pairs first, then gap
    pairs (:class:`KindTagged`). Returns (dataset, clip directories)."""
    return _tagged(_test_person_dirs(root, say))


def open_real(root: str | Path | None = None, clips=(), all_clips: bool = False, say=print):
    """Real pseudo-GT pairs (:class:`KindTagged`) and their clip directories, from one of:
    ``clips`` (annotation directories, anyone's footage), ``all_clips`` (every complete
    annotation directly under ``root``), or by default the identity split's test persons under
    ``root`` (:func:`open_real_test`)."""
    if clips:
        return _tagged(annotated_dirs(clips))
    if root is None:
        raise FaceflowError("real pairs need --real-root (or --clips)")
    if all_clips:
        r = _root(root)
        found = [d for d in sorted(p for p in r.iterdir() if p.is_dir()) if (d / "manifest.json").is_file()]
        if not found:
            raise FaceflowError(f"no complete annotation (a folder with manifest.json) under {r}; run "
                                "`faceflow annotate VIDEO DIR` on your clips first")
        return _tagged(annotated_dirs(found))
    return open_real_test(root, say)


def annotated_dirs(paths) -> list[Path]:
    """The annotation directories ``paths``, each checked: a folder holding a complete
    ``faceflow annotate`` output (its ``manifest.json`` with the array layout)."""
    dirs = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FaceflowError(f"annotated clip {p} is not a directory")
        if not (p / "manifest.json").is_file():
            raise FaceflowError(f"annotated clip {p} is incomplete: no manifest.json (annotate still running or "
                                "interrupted: rerun `faceflow annotate VIDEO DIR` to finish it)")
        if "layout" not in read_manifest(p):
            raise FaceflowError(f"{p} is not a `faceflow annotate` output (its manifest has no array layout)")
        dirs.append(p)
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise FaceflowError("the same annotated clip is given twice")
    return dirs


def _root(root: str | Path) -> Path:
    r = Path(root)
    if not r.is_dir():
        raise FaceflowError(f"annotated clips root {r} does not exist or is not a directory")
    return r


def _test_person_dirs(root: str | Path, say) -> list[Path]:
    r = _root(root)
    dirs = [Path(d) for d in split_dirs(r, "test")]
    expected = splits.annotation_clips("test")
    if not dirs:
        incomplete = [c for c in expected if (r / c).is_dir()]
        raise FaceflowError(f"no complete annotation of a test clip under {r} (expected {', '.join(expected)}"
                            + (f"; incomplete, without manifest.json: {', '.join(incomplete)}" if incomplete else "")
                            + "); run `python -m faceflow annotate` on the test clips first, or evaluate any "
                              "annotated clips with --clips DIR... (or --all-clips)")
    found = {d.name for d in dirs}
    missing = [c for c in expected if c not in found]
    if missing:
        say(f"note: test clip(s) without a complete annotation under {r}, left out: {', '.join(missing)}")
    return dirs


def _tagged(dirs: list[Path]):
    """(consecutive pairs then gap pairs of the clips ``dirs`` as one :class:`KindTagged`, dirs)."""
    model = MorphableModel.load("skin")
    parts = [(AnnotatedPairs(dirs, pair_kinds=kname, model=model), k) for k, kname in KINDS.items()]
    return KindTagged(parts), dirs


def pair_kinds(dataset, n: int) -> np.ndarray | None:
    """(n,) pair kinds (0 consecutive, 1 gap) when the dataset has a ``pair_kind`` array."""
    v = getattr(dataset, "pair_kind", None)
    if v is None:
        return None
    try:
        a = np.asarray(v).astype(np.int64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return a if len(a) == n else None

