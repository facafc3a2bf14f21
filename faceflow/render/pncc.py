"""Coordinate-code images of a posed face: PNCC (DeepFaceFlow) and NMFC (Head2Head++).

Both colour the visible surface of an image-space mesh by 3D coordinates:

- PNCC, eq. (3) of DeepFaceFlow: ``PNCC(x, y) = P (R [S(t1), S(t2), S(t3)] b + t3d)`` with
  ``P = diag(f/W, f/H, f/D)``: the posed, projected surface point normalised by the image
  width, height and a fixed depth range D. Here the image-space point p = f C R S + t is
  already in pixels, so ``PNCC = (p_x / W, p_y / H, 1/2 - p_z / D)``: the depth channel is
  centred on the camera's depth origin and grows toward the viewer. D defaults to twice the
  larger image side, so any depth within one image size of the origin (a whole head framed in
  the image) is encoded without clipping. It is invertible (:func:`pncc_to_points`), which DFFNet's warping
  loss relies on.
- NMFC, eq. (7.2) of Head2Head++: every vertex coloured by the model's *mean face*
  coordinates normalised to [0, 1]; the same semantic point gets the same colour for every
  person and expression.

Background pixels are 0 in both.
"""

from __future__ import annotations

import torch

from faceflow.render.rasterize import Fragments, interpolate, rasterize


def pncc_scale(size: tuple[int, int], depth_range: float | None = None) -> tuple[float, float, float]:
    """The divisors (W, H, D) of eq. (3) for an image of size (H, W)."""
    H, W = size
    return float(W), float(H), float(depth_range if depth_range is not None else 2 * max(H, W))


def pncc(verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *,
         depth_range: float | None = None, frags: Fragments | None = None,
         cull_backfaces: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """PNCC image of image-space meshes (the camera-free variant: the mesh is already posed).

    verts (B, V, 3) image space; faces (F, 3); size (H, W). Returns pncc (B, H, W, 3) in [0, 1]
    (clamped; zero background) and mask (B, H, W). Pass ``frags`` to reuse a rasterisation.
    """
    if frags is None:
        frags = rasterize(verts, faces, size, cull_backfaces=cull_backfaces)
    pts = interpolate(verts, faces, frags)  # (B, H, W, 3) image-space surface points
    return points_to_pncc(pts, frags.mask, size, depth_range), frags.mask


def points_to_pncc(points: torch.Tensor, mask: torch.Tensor, size: tuple[int, int],
                   depth_range: float | None = None) -> torch.Tensor:
    """eq. (3) of DeepFaceFlow at each pixel: image-space surface points (B, H, W, 3) and their
    mask (B, H, W) -> PNCC (B, H, W, 3) in [0, 1], 0 off the mask (inverse: :func:`pncc_to_points`)."""
    W, H, D = pncc_scale(size, depth_range)
    code = torch.stack([points[..., 0] / W, points[..., 1] / H, 0.5 - points[..., 2] / D], -1).clamp(0, 1)
    return code * mask.unsqueeze(-1).to(code.dtype)


def pncc_to_points(code: torch.Tensor, size: tuple[int, int], depth_range: float | None = None) -> torch.Tensor:
    """Invert eq. (3): PNCC (B, H, W, 3) -> image-space surface points (B, H, W, 3) in pixels."""
    W, H, D = pncc_scale(size, depth_range)
    return torch.stack([code[..., 0] * W, code[..., 1] * H, (0.5 - code[..., 2]) * D], -1)


def nmfc_colors(mean: torch.Tensor, region_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Vertex colours of eq. (7.2): the mean face (V, 3) normalised to [0, 1] per axis.

    The bounding box is taken over ``region_mask`` (V,) bool (e.g. the inner face) when given,
    so the face's colours use the whole range; vertices outside it are clamped.
    """
    ref = mean[region_mask] if region_mask is not None else mean
    lo, hi = ref.amin(0), ref.amax(0)
    return ((mean - lo) / (hi - lo)).clamp(0, 1)


def nmfc(verts: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, size: tuple[int, int], *,
         frags: Fragments | None = None, cull_backfaces: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """NMFC image: (B, V, 3) image-space verts, (F, 3) faces, (V, 3) colours -> (B, H, W, 3), mask."""
    if frags is None:
        frags = rasterize(verts, faces, size, cull_backfaces=cull_backfaces)
    return interpolate(colors, faces, frags), frags.mask


def face_nmfc_uint8(model, verts: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The NMFC as stored in ``data/nmfc.npy`` (Head2Head++ eq. (7.2)): image-space vertices of
    ``model.subset("face")`` (B, Vf, 3) -> (uint8 (B, S, S, 3), bool face mask (B, S, S)), the
    face subset coloured by its mean-face coordinates (:func:`nmfc_colors`)."""
    face = model.subset("face")
    img, mask = nmfc(verts, face.triangles, nmfc_colors(model.mean[face.indices]), (size, size))
    return (img.clamp(0, 1) * 255 + 0.5).to(torch.uint8), mask
