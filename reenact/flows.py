"""Flow providers: the motion between consecutive REAL frames that the dynamics discriminator
and the temporal loss consume (Head2Head++ eq. (7.9); DeepFaceFlow Sec. 5.5 replaces FlowNet2
by the 3D facial flow).

One interface, three providers (``make_provider(name)``):

- ``faceflow3d`` (default): DeepFaceFlow (:class:`faceflow.FaceFlow`, the shipped weights or a
  given directory) on the crop frames; 3 channels: x, y as image-space flow in crop pixels plus
  the z (depth) channel. The network sees the face only, so the flow is 0 off the face mask
  (the background of a talking head is taken as static; the confidence below catches where
  that is wrong).
- ``dis2d``: OpenCV's DIS optical flow (medium preset) on grey frames, 2 channels: the 2D-flow
  baseline standing in for FlowNet2, whose weights are not available offline.
- ``none``: no flow (0 channels); the dynamics discriminator then sees frames only and the
  temporal loss is off.

Convention (as :mod:`vid2vid.warp`): ``flows[t] = F_{t->t-1}`` lives on frame t's grid and says
where frame t's pixel is found in frame t-1, so ``warp(frame[t-1], flows[t])`` ~ ``frame[t]``.
``flows[t]`` is 0 and ``conf[t]`` is 0 at the first frame of every segment (no previous frame).

Confidence (the temporal loss's mask): a pixel is trusted when the real previous frame warped by
the flow matches the real current frame there, ``||I_t - W(I_{t-1}, F_{t->t-1})||_2 < tau``
on RGB in [0, 1] (tau = 0.1 by default). The same photometric rule for every provider keeps the
comparison between providers fair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from faceflow.errors import FaceflowError
from faceflow.estimate import FaceFlow
from faceflow.ops.opticalflow import DISFlow, grey
from vid2vid.warp import warp

__all__ = ["PROVIDERS", "FlowProvider", "make_provider", "flow_confidence", "segment_starts", "flow_channels"]

PROVIDERS = ("faceflow3d", "dis2d", "none")


def flow_channels(name: str) -> int:
    """Channels of a provider's flow: 3 (faceflow3d), 2 (dis2d), 0 (none)."""
    try:
        return {"faceflow3d": 3, "dis2d": 2, "none": 0}[name]
    except KeyError:
        raise FaceflowError(f"unknown flow provider {name!r}; choose one of {', '.join(PROVIDERS)}") from None


def segment_starts(segment: np.ndarray) -> np.ndarray:
    """(N,) bool: frames with no previous frame in the same segment (``segment`` (N,) ids)."""
    seg = np.asarray(segment)
    start = np.ones(len(seg), bool)
    start[1:] = seg[1:] != seg[:-1]
    return start


@torch.no_grad()
def flow_confidence(frames: torch.Tensor, prev: torch.Tensor, flow: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Photometric confidence of a flow between real frames.

    frames, prev: (B, 3, H, W) in [0, 1] (frames t and t-1); flow: (B, C>=2, H, W) F_{t->t-1}.
    Returns (B, H, W) float: 1 where ``||I_t - W(I_{t-1}, F)||_2 < tau``, else 0.
    """
    err = (frames - warp(prev, flow)).norm(dim=1)
    return (err < tau).to(frames.dtype)


@dataclass
class FlowProvider:
    """A named flow method: ``pairs(current, previous, lmk68_current) -> (B, H, W, C)`` flows
    F_{current -> previous} in pixels for uint8 frame batches (B, H, W, 3)."""

    name: str
    channels: int
    pairs: Callable | None
    description: str

    def compute(self, frames: np.ndarray, segment: np.ndarray, lmk68: np.ndarray | None = None, *,
                batch: int = 16, tau: float = 0.1, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Flows between consecutive frames of a video.

        frames: (N, H, W, 3) uint8 (a memmap is fine); segment: (N,) segment ids; lmk68:
        (N, 68, 2) landmarks of the frames (faceflow3d uses them to register; detected if None).
        Returns flows (N, H, W, C) float16 with ``flows[t] = F_{t->t-1}`` and conf (N, H, W)
        float16 (see the module docstring). ``none`` returns (N, H, W, 0) and zeros.
        """

        N, H, W = frames.shape[:3]
        flows = np.zeros((N, H, W, self.channels), np.float16)
        conf = np.zeros((N, H, W), np.float16)
        if self.pairs is None or N < 2:
            return flows, conf
        todo = np.flatnonzero(~segment_starts(segment))
        bar = tqdm(total=len(todo), unit="pair", desc=f"flow {self.name}", disable=not progress)
        for s in range(0, len(todo), batch):
            idx = todo[s:s + batch]
            cur, prev = np.asarray(frames[idx]), np.asarray(frames[idx - 1])
            f = self.pairs(cur, prev, None if lmk68 is None else np.asarray(lmk68[idx]))
            flows[idx] = f.astype(np.float16)
            to_t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float().div(255)
            conf[idx] = flow_confidence(to_t(cur), to_t(prev),
                                        torch.from_numpy(f).permute(0, 3, 1, 2).float(), tau).numpy()
            bar.update(len(idx))
        bar.close()
        return flows, conf


def _dis_pairs() -> Callable:

    dis = DISFlow()

    def pairs(cur, prev, _lmk):
        return np.stack([dis(grey(a), grey(b)) for a, b in zip(cur, prev)]).astype(np.float32)
    return pairs


def _faceflow_pairs(weights: str | Path | None, device: str) -> Callable:

    ff = FaceFlow.from_pretrained(weights, device=device)

    def pairs(cur, prev, lmk):
        res = ff.estimate_pairs(list(cur), list(prev), None if lmk is None else list(lmk))
        return np.stack([np.where(r.mask_image[..., None], r.flow_image, 0) for r in res]).astype(np.float32)
    return pairs


def make_provider(name: str, *, weights: str | Path | None = None, device: str = "auto") -> FlowProvider:
    """The flow provider ``name`` (one of :data:`PROVIDERS`). ``weights``: a directory with
    DeepFaceFlow's ``meshreg.pt`` and ``dffnet.pt`` (default: the shipped ones)."""
    ch = flow_channels(name)
    if name == "none":
        return FlowProvider(name, ch, None, "no flow")
    if name == "dis2d":
        return FlowProvider(name, ch, _dis_pairs(), "OpenCV DIS optical flow (medium preset), grey frames")
    return FlowProvider(name, ch, _faceflow_pairs(weights, device),
                        "DeepFaceFlow 3D facial flow (x, y in crop pixels, z depth), 0 off the face")
