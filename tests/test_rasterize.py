"""The rasteriser against a brute-force per-pixel, per-triangle reference."""

import numpy as np
import pytest
import torch

from faceflow.render.rasterize import interpolate, rasterize, signed_area, vertex_normals


def reference(verts, faces, H, W, cull=False):
    """Loop over every pixel and every triangle in float64; nearest covering triangle wins,
    ties to the lower id. Also returns, per pixel, the depth gap to the runner-up and the
    smallest |edge weight| among covering triangles, to tell genuine ties from float noise."""
    v = np.asarray(verts, dtype=np.float64)
    tri_id = -np.ones((H, W), dtype=np.int64)
    depth = np.zeros((H, W))
    bary = np.zeros((H, W, 3))
    ambiguous = np.zeros((H, W), dtype=bool)
    for i in range(H):
        for j in range(W):
            px, py = j + 0.5, i + 0.5
            hits = []
            for f, (a, b, c) in enumerate(faces):
                (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = v[a], v[b], v[c]
                area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
                if abs(area) <= 1e-12 or (cull and area >= 0):
                    continue
                w0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area
                w1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area
                w2 = ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)) / area
                wmin = min(w0, w1, w2)
                if wmin >= -1e-5:  # near or inside
                    hits.append((w0 * z0 + w1 * z1 + w2 * z2, f, (w0, w1, w2), wmin))
            inside = [h for h in hits if h[3] >= 0]
            if any(abs(h[3]) < 1e-5 for h in hits):
                ambiguous[i, j] = True  # pixel centre on an edge: float32 may decide either way
            if inside:
                inside.sort(key=lambda h: (h[0], h[1]))
                if len(inside) > 1 and inside[1][0] - inside[0][0] < 1e-4:
                    ambiguous[i, j] = True
                z, f, w, _ = inside[0]
                tri_id[i, j], depth[i, j], bary[i, j] = f, z, w
    return tri_id, depth, bary, ambiguous


def random_mesh(n_tri, H, W, seed, spread=1.0):
    g = np.random.default_rng(seed)
    centres = g.uniform([-2, -2], [W + 2, H + 2], size=(n_tri, 2))
    size = g.uniform(1, spread * max(H, W) / 2, size=(n_tri, 1, 1))
    xy = centres[:, None, :] + g.normal(size=(n_tri, 3, 2)) * size
    z = g.uniform(-50, 50, size=(n_tri, 3))
    verts = np.concatenate([xy, z[..., None]], -1).reshape(-1, 3)
    faces = np.arange(n_tri * 3).reshape(n_tri, 3)
    return torch.tensor(verts, dtype=torch.float32), torch.tensor(faces)


def check_against_reference(verts, faces, H, W, cull=False):
    frags = rasterize(verts[None], faces, (H, W), cull_backfaces=cull)
    ref_id, ref_depth, ref_bary, amb = reference(verts.numpy(), faces.numpy(), H, W, cull)
    got = frags.tri_id[0].numpy()
    ok = ~amb
    assert ok.mean() > 0.9, "the test mesh is too degenerate to be informative"
    np.testing.assert_array_equal(got[ok], ref_id[ok])
    np.testing.assert_array_equal(frags.mask[0].numpy()[ok], ref_id[ok] >= 0)
    fg = ok & (ref_id >= 0)
    assert fg.sum() > 0
    np.testing.assert_allclose(frags.depth[0].numpy()[fg], ref_depth[fg], atol=2e-3)
    np.testing.assert_allclose(frags.bary[0].numpy()[fg], ref_bary[fg], atol=1e-4)
    # on ambiguous pixels, the chosen triangle must still be a valid (covering, nearest) one
    for i, j in zip(*np.nonzero(amb & (got >= 0))):
        assert abs(frags.depth[0, i, j].item() - ref_depth[i, j]) < 1e-2 or ref_id[i, j] < 0
    return frags


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_overlapping_triangles_match_reference(seed):
    verts, faces = random_mesh(12, 23, 31, seed)
    check_against_reference(verts, faces, 23, 31)


def test_backface_culling_matches_reference():
    verts, faces = random_mesh(14, 20, 20, 7)
    frags = check_against_reference(verts, faces, 20, 20, cull=True)
    area = signed_area(verts[faces])
    seen = frags.tri_id[frags.mask].unique()
    assert (area[seen] < 0).all()  # only front-facing (counter-clockwise seen from outside) survive


def test_pixel_centre_vertices_and_shared_edges():
    # a grid of quads whose vertices and edges pass exactly through pixel centres: no holes,
    # no double cover, and the diagonal pixels resolve to the lower triangle id (tie rule)
    n, H, W = 4, 12, 12
    xs = torch.arange(n + 1, dtype=torch.float32) * 2 + 2.5
    X, Y = torch.meshgrid(xs, xs, indexing="xy")
    verts = torch.stack([X.flatten(), Y.flatten(), torch.zeros((n + 1) ** 2)], -1)
    faces = []
    for r in range(n):
        for c in range(n):
            a = r * (n + 1) + c
            faces += [[a, a + 1, a + n + 2], [a, a + n + 2, a + n + 1]]
    faces = torch.tensor(faces)
    frags = rasterize(verts[None], faces, (H, W))
    covered = frags.mask[0]
    expect = torch.zeros(H, W, dtype=torch.bool)
    expect[2:11, 2:11] = True  # centres 2.5 .. 10.5 inclusive
    assert torch.equal(covered, expect)
    # pixel (row 3, col 3) lies on the diagonal shared by triangles 0 and 1 -> id 0
    assert frags.tri_id[0, 3, 3].item() == 0
    ref_id, _, _, _ = reference(verts.numpy(), faces.numpy(), H, W)
    assert np.array_equal(ref_id >= 0, covered.numpy())


def test_degenerate_and_non_finite_triangles_cover_nothing():
    verts = torch.tensor([[1, 1, 0], [5, 5, 0], [9, 9, 0],  # collinear
                          [2, 2, 0], [2, 2, 0], [8, 3, 0],  # repeated vertex
                          [0, 0, 0], [float("nan"), 3, 0], [5, 9, 0]], dtype=torch.float32)
    faces = torch.arange(9).view(3, 3)
    frags = rasterize(verts[None], faces, (10, 10))
    assert not frags.mask.any()


def test_huge_and_offscreen_triangles():
    verts = torch.tensor([[-1e6, -1e6, 5.0], [1e6, -1e6, 5.0], [0, 1e6, 5.0],
                          [1e4, 1e4, 0.0], [2e4, 1e4, 0.0], [1e4, 2e4, 0.0]])
    frags = rasterize(verts[None], torch.tensor([[0, 1, 2], [3, 4, 5]]), (16, 20))
    assert frags.mask.all() and (frags.tri_id == 0).all()
    assert torch.allclose(frags.depth, torch.full_like(frags.depth, 5.0))


def test_nearer_triangle_wins_z_test():
    # two full-screen triangles, the second nearer on the left half and farther on the right
    H, W = 8, 16
    far = [[-40, -40, 0], [80, -40, 0], [-40, 80, 0]]
    tilted = [[-40, -40, -9], [80, -40, 15], [-40, 80, -9]]  # z = -9 + 0.2 (x + 40)
    verts = torch.tensor(far + tilted, dtype=torch.float32)
    frags = rasterize(verts[None], torch.tensor([[0, 1, 2], [3, 4, 5]]), (H, W))
    x = torch.arange(W) + 0.5
    expect = (-9 + 0.2 * (x + 40) > 0).long()  # triangle 1 wins where its depth < 0
    assert torch.equal(frags.tri_id[0], 1 - expect.expand(H, W))


def test_batch_and_chunking_are_consistent():
    meshes = [random_mesh(30, 24, 24, s, spread=0.6) for s in range(3)]
    faces = meshes[0][1]
    verts = torch.stack([m[0] for m in meshes])
    whole = rasterize(verts, faces, (24, 24))
    chunked = rasterize(verts, faces, (24, 24), max_candidates=50)
    for b in range(3):
        single = rasterize(verts[b:b + 1], faces, (24, 24))
        assert torch.equal(whole.tri_id[b], single.tri_id[0])
        assert torch.allclose(whole.bary[b], single.bary[0])
    assert torch.equal(whole.tri_id, chunked.tri_id)
    assert torch.allclose(whole.depth, chunked.depth)


def test_interpolation_is_exact_for_linear_attributes_and_differentiable():
    verts, faces = random_mesh(10, 20, 20, 3)
    frags = rasterize(verts[None], faces, (20, 20))
    # an attribute that is a linear function of position is reproduced exactly at pixel centres
    attr = verts @ torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    out = interpolate(attr, faces, frags)[0]
    jj, ii = torch.meshgrid(torch.arange(20) + 0.5, torch.arange(20) + 0.5, indexing="xy")
    m = frags.mask[0]
    assert torch.allclose(out[m], torch.stack([jj, ii], -1)[m], atol=1e-4)
    assert (out[~m] == 0).all()
    # gradient w.r.t. the attribute: d sum(out * g) / d attr[v] = sum of g * bary over pixels using v
    a = torch.randn(1, verts.shape[0], 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 20, 20, 4, dtype=torch.float64)
    (interpolate(a, faces, frags) * g).sum().backward()
    expect = torch.zeros_like(a)
    vid = faces[frags.tri_id[0].clamp(min=0)]
    for i, j in zip(*torch.nonzero(m, as_tuple=True)):
        for k in range(3):
            expect[0, vid[i, j, k]] += frags.bary[0, i, j, k].double() * g[0, i, j]
    assert torch.allclose(a.grad, expect, atol=1e-6)


def test_interpolation_of_batches_with_and_without_covered_pixels():
    """Per-item attributes land in their own item; an item (or a whole batch) the mesh misses
    gets zeros, as does any uncovered pixel."""
    verts, faces = random_mesh(10, 20, 20, 3)
    away = verts + torch.tensor([100.0, 100.0, 0.0])  # entirely outside the image
    frags = rasterize(torch.stack([verts, away]), faces, (20, 20))
    assert frags.mask[0].any() and not frags.mask[1].any()
    attr = torch.stack([torch.ones(len(verts), 2), 2 * torch.ones(len(verts), 2)])
    out = interpolate(attr, faces, frags)
    assert out.shape == (2, 20, 20, 2)
    assert torch.allclose(out[0][frags.mask[0]], torch.ones(())) and (out[0][~frags.mask[0]] == 0).all()
    assert (out[1] == 0).all()
    empty = rasterize(away[None], faces, (20, 20))
    assert torch.equal(interpolate(attr[1], faces, empty), torch.zeros(1, 20, 20, 2))


def test_barycentrics_differentiable_wrt_vertices():
    verts, faces = random_mesh(6, 16, 16, 5)
    v = verts.double()[None].requires_grad_(True)
    frags = rasterize(v, faces, (16, 16))
    loss = frags.depth.sum()
    loss.backward()
    assert v.grad is not None and v.grad[..., 2].abs().sum() > 0
    # depth is linear in vertex z with the barycentrics as coefficients
    dz = torch.zeros(verts.shape[0], dtype=torch.float64)
    vid = faces[frags.tri_id[0].clamp(min=0)]
    for k in range(3):
        dz.index_add_(0, vid[..., k][frags.mask[0]], frags.bary[0][..., k][frags.mask[0]].detach())
    assert torch.allclose(v.grad[0, :, 2], dz, atol=1e-9)


def test_vertex_normals_of_a_sphere_point_outward():
    # octahedron, counter-clockwise seen from outside
    verts = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    faces = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    n = vertex_normals(verts[None], faces)[0]
    assert torch.allclose(n, verts, atol=1e-6)


def test_rejects_bad_shapes_and_sizes():
    v = torch.zeros(1, 3, 3)
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError):
        rasterize(v[0], f, (4, 4))
    with pytest.raises(ValueError):
        rasterize(v, f[0], (4, 4))
    with pytest.raises(ValueError):
        rasterize(v, f, (0, 4))
    with pytest.raises(ValueError):
        rasterize(v, f, (100000, 100000))
