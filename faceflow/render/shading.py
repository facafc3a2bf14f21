"""Simple Lambertian shading of image-space meshes, for previews and synthetic renders."""

from __future__ import annotations

import torch

from faceflow.render.rasterize import Fragments, interpolate, rasterize, vertex_normals


def shade(verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *,
          albedo: torch.Tensor | float = 0.8, to_light=(-0.3, -0.4, -1.0), ambient: float = 0.25,
          frags: Fragments | None = None, background: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Lambert shading with a directional light; ``to_light`` is the direction toward the light
    in image space (x right, y down, z into the screen): the default sits by the viewer, up-left.

    verts (B, V, 3) image space; albedo a float or per-vertex colours (V, 3) / (B, V, 3) in
    [0, 1]. Returns image (B, H, W, 3) in [0, 1] and mask (B, H, W).
    """
    if frags is None:
        frags = rasterize(verts, faces, size, cull_backfaces=True)
    n = interpolate(vertex_normals(verts, faces), faces, frags)
    n = torch.nn.functional.normalize(n, dim=-1, eps=1e-12)
    light = torch.nn.functional.normalize(torch.tensor(to_light, dtype=n.dtype, device=n.device), dim=0)
    diffuse = (n @ light).clamp(min=0).unsqueeze(-1)
    if torch.is_tensor(albedo):
        color = interpolate(albedo.to(n), faces, frags)
    else:
        color = torch.full_like(n, float(albedo))
    img = color * (ambient + (1 - ambient) * diffuse)
    m = frags.mask.unsqueeze(-1)
    return torch.where(m, img, torch.full_like(img, background)).clamp(0, 1), frags.mask
