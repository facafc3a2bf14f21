"""The flow benchmark's test data (:mod:`evaluation.flow_benchmark`), pair-sample contract items at
the 224x224 registered template of frame 1: the synthetic test split (:func:`open_synthetic`) and
the real pseudo-ground-truth test persons (:func:`open_real_test`), whose consecutive and gap pairs
are told apart (:class:`KindTagged`, :func:`pair_kinds`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faceflow.data import splits
from faceflow.data.pseudo import AnnotatedPairs, split_dirs
from faceflow.data.synthetic import SyntheticPairs
from faceflow.errors import FaceflowError
from faceflow.geometry.morphable import MorphableModel

__all__ = ["DATASETS", "KINDS", "open_synthetic", "KindTagged", "open_real_test", "pair_kinds"]

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
    r = Path(root)
    if not r.is_dir():
        raise FaceflowError(f"annotated clips root {r} does not exist or is not a directory")
    dirs = [Path(d) for d in split_dirs(r, "test")]
    expected = splits.annotation_clips("test")
    if not dirs:
        incomplete = [c for c in expected if (r / c).is_dir()]
        raise FaceflowError(f"no complete annotation of a test clip under {r} (expected {', '.join(expected)}"
                            + (f"; incomplete, without manifest.json: {', '.join(incomplete)}" if incomplete else "")
                            + "); run `python -m faceflow annotate` on the test clips first")
    found = {d.name for d in dirs}
    missing = [c for c in expected if c not in found]
    if missing:
        say(f"note: test clip(s) without a complete annotation under {r}, left out: {', '.join(missing)}")
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

