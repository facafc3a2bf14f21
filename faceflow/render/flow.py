"""Ground-truth 3D facial flow between two posed meshes with shared topology.

DeepFaceFlow eq. (2): for a pixel of I1 covered by triangle t = (t1, t2, t3) with barycentric
coordinates b, ::

    F = f2 (R2 [S2(t1), S2(t2), S2(t3)] b + t2) - f1 (R1 [S1(t1), S1(t2), S1(t3)] b + t1)

i.e. the displacement, in image-space pixels (x right, y down, z depth), of the surface point
seen at that pixel in I1 to where the same point lies in I2. Because the projection is an
affine map, ``F[..., :2]`` is exactly the 2D optical flow of that surface point. Pixels not
covered in I1 get 0 and are masked out. Occlusion in I2 is not considered (as in the paper).
"""

from __future__ import annotations

import torch

from faceflow.render.rasterize import Fragments, interpolate, rasterize


def flow_ground_truth(verts1: torch.Tensor, verts2: torch.Tensor, faces: torch.Tensor,
                      size: tuple[int, int], *, frags1: Fragments | None = None,
                      cull_backfaces: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """3D flow from image-space meshes verts1 -> verts2 (B, V, 3) at I1's pixels.

    Returns flow (B, H, W, 3) in pixels (zero outside the mask) and mask (B, H, W) bool.
    """
    if verts1.shape != verts2.shape:
        raise ValueError(f"meshes differ in shape: {tuple(verts1.shape)} vs {tuple(verts2.shape)}")
    if frags1 is None:
        frags1 = rasterize(verts1, faces, size, cull_backfaces=cull_backfaces)
    return interpolate(verts2 - verts1, faces, frags1), frags1.mask
