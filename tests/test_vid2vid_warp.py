"""vid2vid.warp: backward warping by pixel flow and flow composition, against analytic answers and
a brute-force bilinear reference."""

from __future__ import annotations

import math

import pytest
import torch

from faceflow.ops.sampling import pixel_centres as base_grid
from vid2vid.warp import compose, warp

pytestmark = pytest.mark.usefixtures("one_thread")


def _bilinear_border(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img (C, H, W) sampled at continuous pixel coords (x, y) (pixel (i, j) centred at
    (j + 0.5, i + 0.5)) with border clamping; returns (C,). Reference for grid_sample."""
    C, H, W = img.shape
    u = min(max(x - 0.5, 0.0), W - 1.0)  # index-space column, clamped (border padding)
    v = min(max(y - 0.5, 0.0), H - 1.0)
    j0, i0 = math.floor(u), math.floor(v)
    j1, i1 = min(j0 + 1, W - 1), min(i0 + 1, H - 1)
    a, b = u - j0, v - i0
    return ((1 - a) * (1 - b) * img[:, i0, j0] + a * (1 - b) * img[:, i0, j1]
            + (1 - a) * b * img[:, i1, j0] + a * b * img[:, i1, j1])


def test_base_grid_pixel_centres():
    g = base_grid(3, 4)
    assert g.shape == (1, 3, 4, 2)
    assert g[0, 2, 1].tolist() == [1.5, 2.5]  # (x, y) of row 2, column 1


def test_zero_flow_is_identity():
    img = torch.randn(2, 3, 32, 32)
    assert torch.equal(warp(img, torch.zeros(2, 2, 32, 32)), img)  # exact for power-of-2 sizes
    img = torch.randn(2, 3, 12, 20)
    torch.testing.assert_close(warp(img, torch.zeros(2, 3, 12, 20)), img, atol=1e-5, rtol=0)


def test_integer_translation_is_a_shift():
    H, W = 16, 20
    img = torch.randn(1, 3, H, W)
    flow = torch.zeros(1, 2, H, W)
    flow[:, 0], flow[:, 1] = 3.0, -2.0  # out[i, j] = img[i - 2, j + 3]
    out = warp(img, flow)
    torch.testing.assert_close(out[:, :, 2:, : W - 3], img[:, :, : H - 2, 3:], atol=1e-5, rtol=0)
    # outside, the border is repeated: column W-1 for j + 3 >= W, row 0 for i - 2 < 0
    torch.testing.assert_close(out[:, :, 5, W - 1], img[:, :, 3, W - 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :, 0, 4], img[:, :, 0, 7], atol=1e-5, rtol=0)


def test_subpixel_translation_is_bilinear_blend():
    H, W = 10, 12
    img = torch.randn(2, 2, H, W)
    flow = torch.zeros(2, 2, H, W)
    flow[:, 0], flow[:, 1] = 0.25, 0.5
    out = warp(img, flow)
    expect = (0.75 * 0.5 * img[..., :-1, :-1] + 0.25 * 0.5 * img[..., :-1, 1:]
              + 0.75 * 0.5 * img[..., 1:, :-1] + 0.25 * 0.5 * img[..., 1:, 1:])
    torch.testing.assert_close(out[..., :-1, :-1], expect, atol=1e-5, rtol=0)


def test_third_flow_channel_is_ignored_by_warp():
    img = torch.randn(1, 3, 8, 8)
    f2 = torch.randn(1, 2, 8, 8)
    f3 = torch.cat([f2, torch.randn(1, 1, 8, 8) * 5], 1)
    assert torch.equal(warp(img, f2), warp(img, f3))


def test_compose_constant_translations_adds():
    H, W = 9, 11
    ab = torch.zeros(1, 2, H, W)
    ab[:, 0], ab[:, 1] = 1.5, -0.75
    bc = torch.zeros(1, 2, H, W)
    bc[:, 0], bc[:, 1] = -2.25, 3.0
    ac = compose(ab, bc)
    torch.testing.assert_close(ac, ab + bc, atol=1e-5, rtol=0)
    # and warping by the composition equals two successive warps in the interior
    img = torch.randn(1, 3, H, W)
    ab_i = torch.zeros(1, 2, H, W)
    ab_i[:, 0] = 2.0
    bc_i = torch.zeros(1, 2, H, W)
    bc_i[:, 1] = 1.0
    two = warp(warp(img, bc_i), ab_i)  # I_a(x) = I_c(x + F_ab + F_bc)
    one = warp(img, compose(ab_i, bc_i))
    torch.testing.assert_close(one[:, :, : H - 1, : W - 2], two[:, :, : H - 1, : W - 2], atol=1e-5, rtol=0)


def test_compose_non_constant_matches_brute_force():
    H, W = 7, 9
    ab = torch.randn(2, 3, H, W) * 1.5  # 3D flow: z channel composes the same way
    bc = torch.randn(2, 3, H, W) * 2.0
    ac = compose(ab, bc)
    ref = torch.empty_like(ac)
    for b in range(2):
        for i in range(H):
            for j in range(W):
                x = j + 0.5 + ab[b, 0, i, j].item()
                y = i + 0.5 + ab[b, 1, i, j].item()
                ref[b, :, i, j] = ab[b, :, i, j] + _bilinear_border(bc[b], x, y)
    torch.testing.assert_close(ac, ref, atol=1e-5, rtol=0)


def test_warp_non_constant_matches_brute_force():
    H, W = 6, 8
    img = torch.randn(1, 2, H, W)
    flow = torch.randn(1, 2, H, W) * 3.0  # many samples fall outside: border clamping
    out = warp(img, flow)
    for i in range(H):
        for j in range(W):
            ref = _bilinear_border(img[0], j + 0.5 + flow[0, 0, i, j].item(), i + 0.5 + flow[0, 1, i, j].item())
            torch.testing.assert_close(out[0, :, i, j], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("img_shape, flow_shape", [
    ((3, 8, 8), (1, 2, 8, 8)),        # image not 4D
    ((1, 3, 8, 8), (2, 8, 8)),        # flow not 4D
    ((1, 3, 8, 8), (1, 1, 8, 8)),     # flow with one channel
    ((1, 3, 8, 8), (1, 2, 8, 9)),     # size mismatch
    ((2, 3, 8, 8), (1, 2, 8, 8)),     # batch mismatch
])
def test_warp_shape_errors(img_shape, flow_shape):
    with pytest.raises(ValueError):
        warp(torch.zeros(img_shape), torch.zeros(flow_shape))


def test_compose_shape_error():
    with pytest.raises(ValueError):
        compose(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 9))
