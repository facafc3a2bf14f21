"""Training pairs whose flow is known exactly without any model: a registered frame and its copy
moved by a rigid 2D motion of the image plane (or not moved at all).

Frame 2 is frame 1 resampled by a similarity T of the template (a rotation by a few degrees about
the template centre and a shift of a few pixels; no scale change), so the template pixel p of I1
shows in I2 at T(p): the true 2D flow is ``T(p) - p`` and, the motion lying in the image plane,
the true depth flow is exactly 0. With T the identity, I2 = I1 and the flow is zero everywhere.

These are the pairs of the benchmark's precision rows (:mod:`evaluation.flow_precision`), built
here on training frames: a network that sees them learns that a motion of the whole image is
rigid and in-plane (z = 0), and that identical images have no flow.
"""

from __future__ import annotations

import math

import torch

from faceflow.errors import FaceflowError
from faceflow.face.registration import warp_image
from faceflow.geometry.similarity import Similarity
from faceflow.ops.sampling import pixel_centres

__all__ = ["inplane_motions", "inplane_pairs"]


def inplane_motions(u: torch.Tensor, size: tuple[int, int], max_shift: float, max_angle: float,
                    identical: float) -> list[Similarity]:
    """One rigid motion of the image plane per row of ``u`` (N, 4) uniform [0, 1): the identity when
    ``u[:, 3] < identical``, else a rotation by +-``max_angle`` degrees about the centre of the
    (H, W) = ``size`` image followed by a shift of +-``max_shift`` px on each axis."""
    H, W = size
    out = []
    for dx, dy, da, keep in u[:, :4].double().cpu().tolist():
        if keep < identical:
            out.append(Similarity.from_params(1.0, 0.0, (0.0, 0.0)))
            continue
        rot = Similarity.about((W / 2, H / 2), 1.0, math.radians(max_angle) * (2 * da - 1))
        out.append(Similarity.from_params(1.0, 0.0, (max_shift * (2 * dx - 1), max_shift * (2 * dy - 1))) @ rot)
    return out


def inplane_pairs(i1: torch.Tensor, motions: list[Similarity]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame 2 and the exact 3D flow of each frame ``i1`` (N, C, H, W) moved by ``motions[n]``.

    Returns ``i2`` (N, C, H, W) (I2(q) = I1(T^-1 q), edge-replicated outside the image) and
    ``flow`` (N, H, W, 3) in pixels: (T(p) - p, 0) at every pixel centre p."""
    if i1.ndim != 4 or len(motions) != i1.shape[0]:
        raise FaceflowError(f"inplane_pairs needs (N, C, H, W) frames and N motions, got {tuple(i1.shape)} "
                            f"and {len(motions)}")
    N, _, H, W = i1.shape
    i2 = warp_image(i1, motions, (H, W), border="border") if N > 1 else warp_image(i1, motions[0], (H, W),
                                                                                  border="border")
    grid = pixel_centres(H, W, dtype=torch.float64)[0].reshape(-1, 2)  # (H*W, 2) x, y
    flows = []
    for T in motions:
        moved = torch.as_tensor(T.apply(grid.numpy()), dtype=torch.float64)
        flows.append(torch.cat([moved - grid, torch.zeros_like(grid[:, :1])], 1).view(H, W, 3))
    return i2.to(i1.dtype), torch.stack(flows).to(device=i1.device, dtype=i1.dtype)
