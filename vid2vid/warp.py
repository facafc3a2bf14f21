"""2D backward warping by optical flow, in pure PyTorch (:mod:`faceflow.ops.sampling`), and flow
composition.

Convention (shared by every flow provider, :mod:`reenact.flows`): a flow ``F_{t->s}`` lives on
frame t's pixel grid and says where each pixel of frame t is found in frame s, in pixels
(dx right, dy down). Warping frame s by it brings s onto t's grid (backward warping):
``W(I_s, F_{t->s})(x) = I_s(x + F_{t->s}(x))``, sampled bilinearly. With pixel (i, j) centred at
(j + 0.5, i + 0.5), sampling at pixel centres (:func:`faceflow.ops.sampling.sample`) is exact,
so a zero flow reproduces the image exactly.
"""

from __future__ import annotations

import torch

from faceflow.ops.sampling import pixel_centres, sample

__all__ = ["warp", "compose"]


def warp(image: torch.Tensor, flow: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) by ``flow`` (B, 2+, H, W) (pixels; only x, y used).

    Returns (B, C, H, W): ``out[x] = image[x + flow[x]]`` (bilinear; outside: ``padding_mode``).
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] < 2:
        raise ValueError(f"warp: image (B, C, H, W) and flow (B, 2, H, W) expected, got "
                         f"{tuple(image.shape)} and {tuple(flow.shape)}")
    B, _, H, W = image.shape
    if flow.shape[0] != B or tuple(flow.shape[-2:]) != (H, W):
        raise ValueError(f"warp: flow {tuple(flow.shape)} does not match image {tuple(image.shape)}")
    f = flow[:, :2].to(image.dtype).permute(0, 2, 3, 1)
    pos = pixel_centres(H, W, image.device, image.dtype) + f
    return sample(image, pos, mode="bilinear", padding_mode=padding_mode)


def compose(flow_ab: torch.Tensor, flow_bc: torch.Tensor) -> torch.Tensor:
    """``F_{a->c}`` from ``F_{a->b}`` and ``F_{b->c}`` (both (B, C, H, W), C = 2 or 3):
    ``F_ac(x) = F_ab(x) + F_bc(x + F_ab(x))``; a z channel (3D flow) adds the same way."""
    return flow_ab + warp(flow_bc, flow_ab)
