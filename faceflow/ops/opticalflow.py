"""Classical 2D optical flow from OpenCV: DIS (medium preset) and Farneback.

The 2D-flow baselines of the flow benchmark (:mod:`evaluation.baselines`) and the ``dis2d`` flow
provider of reenactment (:mod:`reenact.flows`) both use these functions, so the baseline in the
tables and the flow a renderer trains with are the same computation. Forward flow: ``flow[y, x]``
is where I1's pixel (x, y) moved in I2 (p2 - p1), in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from faceflow.errors import FaceflowError


@dataclass
class FarnebackParams:
    """``cv2.calcOpticalFlowFarneback`` settings for 224x224 registered faces: a 4-level
    pyramid halving each time (224 -> 28 px at the top, so motions of ~10+ px of gap pairs are
    caught), a 15 px averaging window (about a third of an eye width: smooth but local),
    3 iterations per level, polynomial expansion over 5x5 neighbourhoods with sigma 1.1
    (OpenCV's recommended pairing for poly_n = 5)."""

    pyr_scale: float = 0.5
    levels: int = 4
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.1
    flags: int = 0


def grey(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> grey uint8 (H, W) (OpenCV's luma weights)."""

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class DISFlow:
    """DIS optical flow (``DISOPTICAL_FLOW_PRESET_MEDIUM``); one OpenCV object reused per call."""

    preset = "DISOPTICAL_FLOW_PRESET_MEDIUM"

    def __init__(self):

        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
        """Grey uint8 (H, W) images -> forward flow (H, W, 2) float32 (dx, dy) in pixels."""
        return self._dis.calc(g1, g2, None)


def farneback_flow(g1: np.ndarray, g2: np.ndarray, params: FarnebackParams | None = None) -> np.ndarray:
    """Grey uint8 (H, W) images -> forward Farneback flow (H, W, 2) float32 (dx, dy) in pixels."""

    p = params or FarnebackParams()
    return cv2.calcOpticalFlowFarneback(g1, g2, None, p.pyr_scale, p.levels, p.winsize, p.iterations,
                                        p.poly_n, p.poly_sigma, p.flags)


def to_uint8_images(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 RGB (rounded)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise FaceflowError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
    return (x.detach().float().clamp(0, 1).permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def dis_flow(i1: torch.Tensor, i2: torch.Tensor, dis: DISFlow | None = None) -> torch.Tensor:
    """DIS forward flow of image batches: i1, i2 (B, 3, H, W) float in [0, 1] -> (B, 2, H, W) float32
    (dx, dy) pixels on i1's device, computed on the CPU from the rounded grey images (the same input
    as the benchmark's DIS row). No gradient flows through it."""
    dis = dis or DISFlow()
    a, b = to_uint8_images(i1), to_uint8_images(i2)
    flows = np.stack([dis(grey(x), grey(y)) for x, y in zip(a, b)])
    return torch.from_numpy(flows).permute(0, 3, 1, 2).to(i1.device)
