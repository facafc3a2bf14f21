"""A prepared target (``python -m reenact preprocess``) as tensors for the sequential generator.

:class:`TargetData` opens a data directory (memory-mapped); :class:`SequenceDataset` serves
windows of T consecutive kept frames of one split part that never cross a segment:

- ``cond`` (T, 6, S, S) float32 in [-1, 1]: NMFC (3) + eye sketch (3), the conditioning X_t
- ``real`` (T, 3, S, S) float32 in [-1, 1]: the real crops Y_t
- ``flow`` (T, C, S, S) float32: ``flow[t] = F_{t->t-1}`` between REAL frames (pixels; C = 3, 2
  or 0 by provider; ``flow[0]`` points before the window and is not used)
- ``conf`` (T, 1, S, S) float32 in [0, 1]: flow confidence; ``mask`` (T, 1, S, S) face mask
- ``mouth`` (T, 4) int64 mouth boxes (x0, y0, x1, y1); ``start`` () int64 first kept frame
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from faceflow.errors import FaceflowError
from faceflow.runtime.provenance import resolve_recorded
from reenact.preprocess import MANIFEST_FORMAT

__all__ = ["TargetData", "SequenceDataset", "window_starts", "to_signed", "to_uint8"]


def to_signed(x: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, C) -> float32 (..., C, H, W) in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div(127.5).sub(1.0)
    return t.movedim(-1, -3)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3) (rounded, clamped)."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5 + 0.5).to(torch.uint8)
    return y.movedim(-3, -1).cpu().numpy()


def window_starts(segment: np.ndarray, lo: int, hi: int, length: int, stride: int = 1) -> np.ndarray:
    """Starts s (every ``stride``-th) with frames [s, s + length) inside [lo, hi) and one segment."""
    seg = np.asarray(segment)
    starts = []
    for s in range(lo, hi - length + 1, max(1, int(stride))):
        if seg[s] == seg[s + length - 1]:  # segments are contiguous runs
            starts.append(s)
    return np.asarray(starts, np.int64)


class TargetData:
    """A prepared target directory (memory-mapped arrays). ``flow`` picks the provider whose
    cached flows are served (must have been computed by preprocess)."""

    def __init__(self, root: str | Path, flow: str = "faceflow3d"):
        self.root = Path(root)
        mf = self.root / "manifest.json"
        if not mf.is_file():
            hint = (" (preprocessing did not finish: rerun the same preprocess command to resume)"
                    if (self.root / "annotation").is_dir() else "")
            raise FaceflowError(f"{self.root} is not a prepared target: no manifest.json{hint}; make one with "
                                f"python -m reenact preprocess VIDEO {self.root}")
        self.manifest = json.loads(mf.read_text())
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise FaceflowError(f"{mf}: unknown format {self.manifest.get('format')!r} (expected {MANIFEST_FORMAT})")
        if flow not in self.manifest["flows"]:

            # the source is recorded relative to the data directory (absolute in older manifests)
            src = os.path.normpath(resolve_recorded(self.manifest.get("source", "VIDEO"), self.root))
            raise FaceflowError(f"{self.root} has no cached {flow!r} flow (it has: "
                                f"{', '.join(sorted(self.manifest['flows'])) or 'none'}); add it with "
                                f"python -m reenact preprocess {src} {self.root} --flow {flow}")
        d = self.root / "annotation" / "data"
        load = lambda name: np.load(d / f"{name}.npy", mmap_mode="r")
        self.crops, self.nmfc, self.eyes = load("crops"), load("nmfc"), load("eyes")
        self.face_mask = load("face_mask")
        self.segment = np.load(d / "segment.npy")
        self.mouth = np.load(self.root / "mouth.npy")
        self.flow_name = flow
        self.flow = np.load(self.root / "flows" / f"{flow}.npy", mmap_mode="r")
        self.conf = np.load(self.root / "flows" / f"{flow}_conf.npy", mmap_mode="r")
        self.size = int(self.manifest["size"])
        self.fps = float(self.manifest["fps"])
        self.split = self.manifest["split"]
        self.flow_channels = int(self.flow.shape[-1])
        if len(self.crops) != int(self.manifest["frames"]):
            raise FaceflowError(f"{self.root}: {len(self.crops)} frames on disk but the manifest says "
                                f"{self.manifest['frames']}; rerun preprocess with --overwrite")

    def __len__(self) -> int:
        return len(self.crops)

    def part(self, name: str) -> tuple[int, int]:
        if name not in ("train", "test", "all"):
            raise FaceflowError(f"unknown part {name!r}; use train, test or all")
        if name == "all":
            return 0, len(self)
        lo, hi = self.split[name]
        return int(lo), int(hi)

    def frames(self, idx) -> dict[str, torch.Tensor]:
        """The tensors of kept frames ``idx`` (see the module docstring), without the T axis
        semantics: every array is indexed by ``idx``."""
        idx = np.asarray(idx, np.int64)
        cond = np.concatenate([self.nmfc[idx], self.eyes[idx]], -1)
        flow = torch.from_numpy(np.asarray(self.flow[idx], np.float32)).movedim(-1, -3)
        return {"cond": to_signed(cond), "real": to_signed(self.crops[idx]),
                "flow": flow.contiguous(),
                "conf": torch.from_numpy(np.asarray(self.conf[idx], np.float32)).unsqueeze(-3),
                "mask": torch.from_numpy(np.asarray(self.face_mask[idx], np.float32)).unsqueeze(-3),
                "mouth": torch.from_numpy(self.mouth[idx].astype(np.int64))}


class SequenceDataset(torch.utils.data.Dataset):
    """Windows of ``length`` consecutive frames of ``part`` ('train' / 'test' / 'all'),
    starting every ``stride`` frames."""

    def __init__(self, data: TargetData, part: str, length: int, stride: int = 1):
        if length < 1:
            raise FaceflowError(f"sequence length must be >= 1, got {length}")
        self.data, self.length = data, int(length)
        lo, hi = data.part(part)
        self.starts = window_starts(data.segment, lo, hi, self.length, stride)
        if len(self.starts) == 0:
            raise FaceflowError(f"{data.root}: the {part} part ({hi - lo} frames) has no run of {length} "
                                f"consecutive frames; use a longer video or a shorter sequence length")

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[i])
        item = self.data.frames(np.arange(s, s + self.length))
        item["start"] = torch.tensor(s, dtype=torch.int64)
        return item
