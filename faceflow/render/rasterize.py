"""Pure-PyTorch triangle rasteriser for orthographic (image-space) meshes.

Input vertices are already in image space (see :mod:`faceflow.geometry.camera`): x, y in pixels with
the centre of pixel (row i, col j) at (j + 0.5, i + 0.5), z = depth (smaller is nearer). A pixel
is covered by a triangle when its centre lies inside or on the triangle's edges; among the
covering triangles the nearest wins (ties: the lower triangle id). Because the projection is
orthographic, screen-space barycentric coordinates are the surface's barycentrics: no
perspective correction is needed.

Algorithm (same code on CPU and GPU): for each triangle enumerate the pixel centres of its
clipped bounding box (vectorised with ``repeat_interleave``), test them with edge functions,
and resolve visibility with one ``scatter_reduce(amin)`` over a 64-bit key that packs the
depth's order-preserving integer bits above the triangle id. The barycentrics of the winners
are then recomputed with autograd enabled, so interpolated attributes are differentiable with
respect to both the attributes and the vertex positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_NO_HIT = torch.iinfo(torch.int64).max


@dataclass
class Fragments:
    """Per-pixel rasterisation result for a batch of B meshes at (H, W).

    tri_id (B, H, W) long, -1 where no triangle covers the pixel; bary (B, H, W, 3) barycentric
    coordinates of the pixel centre in that triangle (0 in the background); depth (B, H, W)
    interpolated z (0 in the background); mask (B, H, W) bool coverage.
    """

    tri_id: torch.Tensor
    bary: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.tri_id.shape[1:3])


def _sortable_bits(x: torch.Tensor) -> torch.Tensor:
    """float32 -> int64 whose signed order equals the float order (for finite values)."""
    bits = x.to(torch.float32).contiguous().view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return bits.to(torch.int64)


def _edge_functions(xs, ys, px: torch.Tensor, py: torch.Tensor):
    """Edge functions e_k (edge opposite vertex k) of points (px, py) for triangles with vertex
    coordinates ``xs = (x0, x1, x2)``, ``ys = (y0, y1, y2)``; e_k / (twice the signed area) is
    the k-th barycentric weight.

    The difference form ``(x1 - px)(y2 - py) - (x2 - px)(y1 - py)`` is used on purpose: an edge
    shared by two triangles gives exactly negated values in each, so a pixel centre on it is
    always claimed by at least one of them (no cracks between neighbouring triangles).
    """
    dx0, dx1, dx2 = (x - px for x in xs)
    dy0, dy1, dy2 = (y - py for y in ys)
    return dx1 * dy2 - dx2 * dy1, dx2 * dy0 - dx0 * dy2, dx0 * dy1 - dx1 * dy0


def signed_area(tri: torch.Tensor) -> torch.Tensor:
    """Twice the signed screen area of triangles (..., 3, >=2). With y pointing down, a triangle
    that is counter-clockwise seen from outside the mesh (front-facing) has a negative value."""
    e1 = tri[..., 1, :2] - tri[..., 0, :2]
    e2 = tri[..., 2, :2] - tri[..., 0, :2]
    return e1[..., 0] * e2[..., 1] - e2[..., 0] * e1[..., 1]


def rasterize(verts: torch.Tensor, faces: torch.Tensor, size: tuple[int, int], *,
              cull_backfaces: bool = False, max_candidates: int = 1 << 23) -> Fragments:
    """Rasterise B image-space meshes that share a triangle list.

    verts (B, V, 3) float image-space vertices; faces (F, 3) long; size (H, W).
    ``cull_backfaces`` drops triangles facing away from the viewer (those clockwise on screen
    with y down, i.e. whose outward normal points into the screen). Degenerate (zero-area)
    and non-finite triangles never cover a pixel. ``max_candidates`` bounds the memory of one
    pass (pixel-triangle pairs); larger workloads are processed in several passes.
    """
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must be (B, V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    H, W = int(size[0]), int(size[1])
    if H <= 0 or W <= 0 or H * W > 1 << 26:
        raise ValueError(f"image size {H}x{W} is out of range")
    B, F, dev = verts.shape[0], faces.shape[0], verts.device
    faces = faces.to(device=dev, dtype=torch.long)

    with torch.no_grad():
        tri = verts.detach().float().index_select(1, faces.reshape(-1)).view(B, F, 3, 3)
        area = signed_area(tri)
        valid = torch.isfinite(tri).all(-1).all(-1) & (area.abs() > 1e-12)
        if cull_backfaces:
            valid &= area < 0
        lo = tri[..., :2].amin(2)  # (B, F, 2)
        hi = tri[..., :2].amax(2)
        limit = torch.tensor([W, H], device=dev, dtype=lo.dtype)
        # pixel index j is covered only if lo <= j + 0.5 <= hi
        first = torch.ceil(lo - 0.5).clamp(min=0).minimum(limit)
        last = torch.floor(hi - 0.5).minimum(limit - 1).clamp(min=-1)
        first = torch.where(valid[..., None], first, torch.zeros_like(first)).long()
        last = torch.where(valid[..., None], last, torch.full_like(last, -1)).long()
        extent = (last - first + 1).clamp(min=0)  # (B, F, 2)
        count = (extent[..., 0] * extent[..., 1]).reshape(-1)  # (B*F,)

        live = torch.nonzero(count).squeeze(1)  # flat (b, f) ids with candidates
        counts = count[live]
        tri_flat = tri.reshape(B * F, 3, 3)
        area_flat, first_flat, ext_flat = area.reshape(-1), first.reshape(-1, 2), extent.reshape(-1, 2)

        zbuf = torch.full((B * H * W,), _NO_HIT, dtype=torch.int64, device=dev)
        cum = torch.cumsum(counts, 0)
        start = 0
        while start < live.numel():
            # largest chunk of triangles whose candidates fit the budget (at least one triangle)
            base = cum[start - 1] if start > 0 else 0
            stop = int(torch.searchsorted(cum, base + max_candidates, right=True))
            stop = max(stop, start + 1)
            _scatter_chunk(zbuf, live[start:stop], counts[start:stop], tri_flat, area_flat,
                           first_flat, ext_flat, F, H, W)
            start = stop

        hit = zbuf != _NO_HIT
        pix = torch.nonzero(hit).squeeze(1)
        tri_win = zbuf.index_select(0, pix) & 0xFFFFFFFF  # triangle id within its mesh
        b_win = pix // (H * W)
        vid = (faces.index_select(0, tri_win) + (b_win * verts.shape[1])[:, None]).reshape(-1)

    # Differentiable barycentrics of the winners.
    py = (pix // W % H).to(verts.dtype) + 0.5
    px = (pix % W).to(verts.dtype) + 0.5
    tri_v = verts.reshape(-1, 3).index_select(0, vid).view(-1, 3, 3)  # (P, 3, 3), keeps autograd
    e = _edge_functions(tri_v[:, :, 0].unbind(1), tri_v[:, :, 1].unbind(1), px, py)
    w = torch.stack(e, -1) / signed_area(tri_v)[:, None]  # (P, 3) barycentrics
    bary = torch.zeros(B * H * W, 3, dtype=verts.dtype, device=dev).index_put((pix,), w)
    depth = torch.zeros(B * H * W, dtype=verts.dtype, device=dev).index_put((pix,), (w * tri_v[..., 2]).sum(-1))
    tri_id = torch.full((B * H * W,), -1, dtype=torch.long, device=dev)
    tri_id[pix] = tri_win
    return Fragments(tri_id.view(B, H, W), bary.view(B, H, W, 3), depth.view(B, H, W), hit.view(B, H, W))


def _scatter_chunk(zbuf, ids, counts, tri_flat, area_flat, first_flat, ext_flat, F, H, W):
    """Test every (triangle, pixel-in-bbox) pair of a chunk and keep the nearest per pixel."""
    dev = zbuf.device
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(ids.numel(), device=dev), counts, output_size=total)
    offset = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - offset.index_select(0, owner)
    gid = ids.index_select(0, owner)  # flat (b, f) of each candidate
    per_tri = torch.cat([first_flat.index_select(0, ids), ext_flat.index_select(0, ids)[:, :1]], 1)
    x0, y0, ext_x = per_tri.index_select(0, owner).unbind(1)
    x = x0 + local % ext_x
    y = y0 + local // ext_x
    t = tri_flat.reshape(-1, 9).index_select(0, gid)  # (N, 9): x0 y0 z0 x1 y1 z1 x2 y2 z2
    px, py = x.to(t.dtype) + 0.5, y.to(t.dtype) + 0.5
    e0, e1, e2 = _edge_functions((t[:, 0], t[:, 3], t[:, 6]), (t[:, 1], t[:, 4], t[:, 7]), px, py)
    area = area_flat.index_select(0, gid)
    sgn = area.sign()
    inside = ((e0 * sgn) >= 0) & ((e1 * sgn) >= 0) & ((e2 * sgn) >= 0)
    sel = torch.nonzero(inside).squeeze(1)
    gid, x, y, t = gid.index_select(0, sel), x.index_select(0, sel), y.index_select(0, sel), t.index_select(0, sel)
    z = (e0.index_select(0, sel) * t[:, 2] + e1.index_select(0, sel) * t[:, 5]
         + e2.index_select(0, sel) * t[:, 8]) / area.index_select(0, sel)
    b = gid // F
    key = (_sortable_bits(z) << 32) | (gid - b * F)
    zbuf.scatter_reduce_(0, (b * H + y) * W + x, key, reduce="amin")


def interpolate(attr: torch.Tensor, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Interpolate per-vertex attributes at every pixel with the fragments' barycentrics.

    attr (B, V, C) or (V, C) (shared by the batch); faces (F, 3). Returns (B, H, W, C), zero in
    the background; differentiable with respect to ``attr`` (and vertex positions via bary).
    """
    B, H, W = frags.tri_id.shape
    faces = faces.to(device=frags.tri_id.device, dtype=torch.long)
    covered = frags.mask.nonzero(as_tuple=True)  # only the covered pixels are computed
    vid = faces.index_select(0, frags.tri_id[covered])  # (P, 3)
    if attr.dim() == 2:
        flat = attr
    else:
        if attr.shape[0] != B:
            raise ValueError(f"attr batch {attr.shape[0]} does not match fragments batch {B}")
        vid = vid + (covered[0] * attr.shape[1]).unsqueeze(1)
        flat = attr.reshape(B * attr.shape[1], -1)
    vals = flat.index_select(0, vid.reshape(-1)).view(vid.shape[0], 3, flat.shape[-1])
    out = flat.new_zeros(B, H, W, flat.shape[-1])
    out[covered] = (frags.bary[covered].to(vals.dtype).unsqueeze(-1) * vals).sum(-2)
    return out


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals (B, V, 3) of meshes (B, V, 3) with outward winding."""
    faces = faces.to(device=verts.device, dtype=torch.long)
    tri = verts[:, faces]
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)  # (B, F, 3)
    out = torch.zeros_like(verts)
    for k in range(3):
        out = out.index_add(1, faces[:, k], n)
    return torch.nn.functional.normalize(out, dim=-1, eps=1e-12)
