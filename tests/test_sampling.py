"""faceflow.ops.sampling: pixel-coordinate sampling against analytic answers and a brute-force
bilinear reference (pixel (i, j) centred at (j + 0.5, i + 0.5))."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from faceflow.ops.sampling import affine_grid, pixel_centres, sample, sample_normalised, sample_points, to_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def _bilinear(img: torch.Tensor, x: float, y: float, padding: str = "border") -> torch.Tensor:
    """img (C, H, W) at continuous pixel coordinates (x, y), brute force; returns (C,).
    ``border`` clamps the coordinate to the outermost centres, ``zeros`` reads 0 off the image."""
    C, H, W = img.shape
    u, v = x - 0.5, y - 0.5  # index space
    if padding == "border":
        u, v = min(max(u, 0.0), W - 1.0), min(max(v, 0.0), H - 1.0)
    j0, i0 = math.floor(u), math.floor(v)
    a, b = u - j0, v - i0
    out = torch.zeros(C, dtype=img.dtype)
    for i, j, wgt in ((i0, j0, (1 - a) * (1 - b)), (i0, j0 + 1, a * (1 - b)),
                      (i0 + 1, j0, (1 - a) * b), (i0 + 1, j0 + 1, a * b)):
        if 0 <= i < H and 0 <= j < W:
            out += wgt * img[:, i, j]
        elif padding == "border" and wgt != 0:
            out += wgt * img[:, min(max(i, 0), H - 1), min(max(j, 0), W - 1)]
    return out


def test_pixel_centres_layout():
    g = pixel_centres(3, 4, dtype=torch.float64)
    assert g.shape == (1, 3, 4, 2) and g.dtype == torch.float64
    assert g[0, 2, 1].tolist() == [1.5, 2.5]  # (x, y) of row 2, column 1
    assert g[0, 0, 0].tolist() == [0.5, 0.5]


def test_to_grid_maps_edges_and_centres():
    H, W = 5, 8
    xy = torch.tensor([[0.0, 0.0], [W, H], [0.5, 0.5], [W / 2, H / 2]], dtype=torch.float64)
    g = to_grid(xy, H, W)
    assert g.dtype == torch.float64
    torch.testing.assert_close(g, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1 / W - 1, 1 / H - 1], [0.0, 0.0]],
                                               dtype=torch.float64), atol=1e-15, rtol=0)


def test_pixel_centres_return_the_pixels():
    img = torch.randn(2, 3, 16, 32)  # power-of-2 sizes: the normalisation is exact
    assert torch.equal(sample(img, pixel_centres(16, 32).expand(2, -1, -1, -1)), img)
    img = torch.randn(2, 3, 7, 13, dtype=torch.float64)  # identity flow, any size
    out = sample(img, pixel_centres(7, 13, dtype=torch.float64).expand(2, -1, -1, -1))
    torch.testing.assert_close(out, img, atol=1e-13, rtol=0)


def test_half_way_point_is_the_mean_of_four():
    img = torch.arange(12.0).view(1, 1, 3, 4)
    # (2, 1) lies between the centres of columns 1, 2 and rows 0, 1; (1.5, 1): column 1, half-way between rows 0 and 1;
    # (2.25, 2.5): row 2 exactly, 3/4 of the way from column 1 to column 2
    out = sample_points(img, torch.tensor([[[2.0, 1.0], [1.5, 1.0], [2.25, 2.5]]]))
    assert out.shape == (1, 3, 1)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([(1 + 2 + 5 + 6) / 4, (1 + 5) / 2, 0.25 * 9 + 0.75 * 10]))


def test_nearest_picks_the_covering_pixel():
    img = torch.arange(12.0).view(1, 1, 3, 4)
    out = sample_points(img, torch.tensor([[[2.9, 0.1], [0.2, 2.8]]]), mode="nearest")
    assert out[0, :, 0].tolist() == [2.0, 8.0]


@pytest.mark.parametrize("padding", ["border", "zeros"])
def test_random_points_match_brute_force(padding):
    g = torch.Generator().manual_seed(0)
    B, C, H, W, N = 2, 3, 9, 11, 60
    img = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    xy = torch.rand(B, N, 2, generator=g, dtype=torch.float64) * torch.tensor([W + 4.0, H + 4.0]) - 2
    out = sample_points(img, xy, padding_mode=padding)
    assert out.shape == (B, N, C) and out.dtype == torch.float64
    ref = torch.stack([torch.stack([_bilinear(img[b], *xy[b, n].tolist(), padding) for n in range(N)])
                       for b in range(B)])
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    # the same points laid out as a (B, h, w, 2) grid give the same values
    grid_out = sample(img, xy.view(B, 6, 10, 2), padding_mode=padding)
    torch.testing.assert_close(grid_out.flatten(2).transpose(1, 2), out, atol=0, rtol=0)


def test_float64_coordinates_are_normalised_before_the_cast():
    H, W = 1000, 3000  # large: float32 coordinates would lose sub-pixel bits
    img = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(1))
    xy = torch.tensor([[[2999.123456789, 999.987654321], [1234.5678901, 17.000001]]], dtype=torch.float64)
    grid = to_grid(xy, H, W)
    assert grid.dtype == torch.float64
    expect = F.grid_sample(img, grid.float().view(1, 1, 2, 2), align_corners=False, padding_mode="border")
    assert torch.equal(sample_points(img, xy).view(-1), expect.view(-1))
    ref = torch.stack([_bilinear(img[0].double(), *p) for p in xy[0].tolist()]).view(-1)
    torch.testing.assert_close(sample_points(img, xy).view(-1).double(), ref, atol=1e-3, rtol=0)  # float32 grid


def test_affine_grid_matches_torch_and_identity():
    theta = torch.tensor([[[0.9, -0.2, 0.1], [0.3, 1.1, -0.05]]], dtype=torch.float64)
    ours = affine_grid(theta, 7, 9, torch.float64)
    ref = F.affine_grid(theta, (1, 1, 7, 9), align_corners=False)
    torch.testing.assert_close(ours, ref, atol=1e-14, rtol=0)
    eye = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64)
    img = torch.randn(1, 2, 8, 16)
    grid = affine_grid(eye, 8, 16)
    assert grid.dtype == torch.float32
    assert torch.equal(sample_normalised(img, grid), img)
