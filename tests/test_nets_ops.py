"""Tests of DFFNet's pure-PyTorch operators: FlowNetC correlation and the warp W of eq. (5)."""

from __future__ import annotations

import pytest
import torch

from faceflow.errors import FaceflowError
from faceflow.nets import correlation, correlation_channels, moved_zbuffer, warp_by_flow
from faceflow.render.pncc import pncc_to_points

# ----------------------------------------------------------------------------- correlation

def naive_correlation(f1, f2, md, s, k=1):
    """Direct Python-loop transcription of FlowNetC's definition (unnormalised)."""
    B, C, H, W = f1.shape
    ds = list(range(-(md // s) * s, (md // s) * s + 1, s))
    D = len(ds)
    out = torch.zeros(B, D * D, H, W, dtype=f1.dtype)
    h = k // 2
    for i, dy in enumerate(ds):
        for j, dx in enumerate(ds):
            for y in range(H):
                for x in range(W):
                    acc = torch.zeros(B, dtype=f1.dtype)
                    for oy in range(-h, h + 1):
                        for ox in range(-h, h + 1):
                            y1, x1, y2, x2 = y + oy, x + ox, y + oy + dy, x + ox + dx
                            if 0 <= y1 < H and 0 <= x1 < W and 0 <= y2 < H and 0 <= x2 < W:
                                acc += (f1[:, :, y1, x1] * f2[:, :, y2, x2]).sum(1)
                    out[:, i * D + j, y, x] = acc
    return out


@pytest.mark.parametrize("md,s,k", [(2, 1, 1), (4, 2, 1), (3, 2, 1), (6, 3, 1), (0, 1, 1), (2, 1, 3), (4, 2, 3)])
@pytest.mark.parametrize("method", ["shift", "matmul"])
def test_correlation_matches_naive_loop(md, s, k, method):
    g = torch.Generator().manual_seed(md * 10 + s + k)
    f1 = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    f2 = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
    ref = naive_correlation(f1, f2, md, s, k)
    out = correlation(f1, f2, md, s, kernel_size=k, normalize=False, method=method)
    assert out.shape == ref.shape == (2, correlation_channels(md, s), 5, 7)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    norm = correlation(f1, f2, md, s, kernel_size=k, method=method)
    torch.testing.assert_close(norm, ref / (k * k * 3), rtol=0, atol=1e-12)


def test_correlation_flownetc_channels_and_methods_agree():
    assert correlation_channels(20, 2) == 441
    g = torch.Generator().manual_seed(1)
    f1, f2 = torch.randn(2, 1, 8, 9, 11, generator=g)
    a = correlation(f1, f2, 20, 2, method="shift")
    b = correlation(f1, f2, 20, 2)  # auto = matmul
    assert a.shape == (1, 441, 9, 11)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_correlation_peak_at_true_shift():
    # f2(y, x) = f1(y - 2, x + 4): displacement (dy, dx) = (2, -4) matches everywhere it is defined
    g = torch.Generator().manual_seed(2)
    big = torch.randn(1, 128, 30, 30, generator=g)
    f1 = big[:, :, 6:22, 6:22]
    f2 = big[:, :, 4:20, 10:26]
    out = correlation(f1, f2, 6, 2)
    D = 7
    k = out[0, :, :14, 4:].argmax(0)  # every pixel whose match lies inside f2
    assert torch.all(k == ((2 + 6) // 2) * D + (-4 + 6) // 2)


@pytest.mark.slow
def test_correlation_gradcheck():
    g = torch.Generator().manual_seed(3)
    f1 = torch.randn(2, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(2, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    for method in ("shift", "matmul"):
        assert torch.autograd.gradcheck(lambda a, b: correlation(a, b, 2, 1, method=method), (f1, f2))
        assert torch.autograd.gradcheck(lambda a, b: correlation(a, b, 4, 2, method=method), (f1, f2))
    assert torch.autograd.gradcheck(lambda a, b: correlation(a, b, 2, 2, kernel_size=3), (f1, f2))
    # gradient w.r.t. one input only (the other a constant) agrees with the joint one
    w = torch.randn(2, 25, 4, 5, generator=g, dtype=torch.float64)
    ga, gb = torch.autograd.grad((correlation(f1, f2, 2, 1) * w).sum(), (f1, f2))
    (ga1,) = torch.autograd.grad((correlation(f1, f2.detach(), 2, 1) * w).sum(), (f1,))
    (gb1,) = torch.autograd.grad((correlation(f1.detach(), f2, 2, 1) * w).sum(), (f2,))
    torch.testing.assert_close(ga, ga1)
    torch.testing.assert_close(gb, gb1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_correlation_preserves_device_and_dtype(dtype):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        f1 = torch.randn(1, 4, 6, 6, dtype=dtype, device=dev)
        out = correlation(f1, f1, 2, 1)
        assert out.dtype == dtype and out.device.type == dev
        # zero displacement channel of an autocorrelation is the mean squared feature
        torch.testing.assert_close(out[:, 12], (f1 ** 2).mean(1))


def test_correlation_bad_input():
    x = torch.zeros(1, 2, 3, 3)
    with pytest.raises(FaceflowError, match="same shape"):
        correlation(x, torch.zeros(1, 2, 3, 4))
    with pytest.raises(FaceflowError, match="floating"):
        correlation(x.long(), x.long())
    with pytest.raises(FaceflowError, match="kernel_size"):
        correlation(x, x, kernel_size=2)
    with pytest.raises(FaceflowError, match="empty"):
        correlation(torch.zeros(0, 2, 3, 3), torch.zeros(0, 2, 3, 3))
    with pytest.raises(FaceflowError, match="method"):
        correlation(x, x, method="cuda")


# ----------------------------------------------------------------------------- warping

def plane_points(H, W, z0=50.0, zx=0.3, dtype=torch.float64):
    """(1, H, W, 3) points of a plane z = z0 + zx x seen at pixel centres, through a PNCC code."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype) + 0.5, torch.arange(W, dtype=dtype) + 0.5, indexing="ij")
    z = z0 + zx * xs
    D = 2 * max(H, W)
    code = torch.stack([xs / W, ys / H, 0.5 - z / D], -1)[None]
    return pncc_to_points(code, (H, W))


def test_warp_integer_translation_is_exact():
    H, W, dx, dy = 20, 23, 3, -2
    g = torch.Generator().manual_seed(4)
    I1 = torch.rand(1, 3, H, W, generator=g, dtype=torch.float64)
    I2 = torch.roll(I1, shifts=(dy, dx), dims=(2, 3))  # I2[i + dy, j + dx] = I1[i, j]
    pts = plane_points(H, W)
    flow = torch.tensor([dx, dy, 5.0], dtype=torch.float64).expand(1, H, W, 3)
    mask = torch.ones(1, H, W, dtype=torch.bool)
    warped, valid = warp_by_flow(I2, pts, flow, mask)
    i, j = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    expect = (i + dy >= 0) & (i + dy < H) & (j + dx >= 0) & (j + dx < W)
    assert torch.equal(valid[0], expect)
    torch.testing.assert_close(warped[0][:, expect], I1[0][:, expect], rtol=0, atol=1e-12)
    assert torch.all(warped[0][:, ~expect] == 0)


def test_warp_subpixel_translation_smooth_image():
    H, W, tx, ty = 32, 32, 1.37, -0.61
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5,
                            torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    def f(x, y):
        return 0.5 + 0.25 * torch.sin(0.3 * x) * torch.cos(0.25 * y)
    I2 = f(xs, ys)[None, None]
    pts = plane_points(H, W)
    flow = torch.tensor([tx, ty, 0.0], dtype=torch.float64).expand(1, H, W, 3)
    warped, valid = warp_by_flow(I2, pts, flow, torch.ones(1, H, W, dtype=torch.bool))
    interior = torch.zeros(H, W, dtype=torch.bool)
    interior[2:-2, 2:-3] = True
    assert valid[0][interior].all()
    err = (warped[0, 0] - f(xs + tx, ys + ty))[interior].abs()
    # bilinear interpolation error <= h^2/8 (|f_xx| + |f_yy|) + |f_xy|/4 with h = 1
    assert err.max() < 0.25 * (0.09 + 0.0625) / 8 * 2 + 0.25 * 0.075 / 4
    assert err.max() > 1e-4  # not trivially exact: it is genuinely interpolating


def test_warp_occlusion_near_square_over_background():
    H, W = 24, 24
    pts = plane_points(H, W, z0=100.0, zx=0.0).clone()
    pts[0, 8:16, 8:16, 2] = 10.0  # near square at rows/cols 8..15
    flow = torch.zeros(1, H, W, 3, dtype=torch.float64)
    flow[0, 8:16, 8:16, 0] = 4.0  # the square slides right by 4 px, background static
    I2 = torch.rand(1, 1, H, W, dtype=torch.float64)
    mask = torch.ones(1, H, W, dtype=torch.bool)
    _, valid = warp_by_flow(I2, pts, flow, mask)
    expect = torch.ones(H, W, dtype=torch.bool)
    expect[8:16, 16:20] = False  # background seen in I1 but covered by the moved square in I2
    assert torch.equal(valid[0], expect)
    _, valid_no = warp_by_flow(I2, pts, flow, mask, occlusion=False)
    assert valid_no.all()
    # the z-buffer holds the square's depth where it landed, the background elsewhere
    zb = moved_zbuffer((pts + flow).reshape(1, -1, 3), mask.reshape(1, -1), (H, W))[0]
    assert torch.all(zb[8:16, 12:20] == 10.0) and torch.all(zb[:, :8] == 100.0)
    assert torch.isinf(zb[8:16, 8:12]).all()  # disoccluded: nothing of I1 lands there


def test_warp_occlusion_subpixel_splat_has_no_holes():
    # near square stretched 1.5x horizontally: its moved points are 1.5 px apart, yet every
    # background point under it must still be hidden
    H, W = 24, 40
    pts = plane_points(H, W, z0=100.0, zx=0.0).clone()
    pts[0, 8:16, 8:16, 2] = 10.0
    flow = torch.zeros(1, H, W, 3, dtype=torch.float64)
    cols = torch.arange(8, 16, dtype=torch.float64) + 0.5
    flow[0, 8:16, 8:16, 0] = (8.5 + 1.5 * (cols - 8.5)) + 12.0 - cols  # lands at x in [20.5, 31]
    _, valid = warp_by_flow(torch.rand(1, 1, H, W, dtype=torch.float64), pts, flow,
                            torch.ones(1, H, W, dtype=torch.bool))
    assert not valid[0, 8:16, 21:31].any()
    assert valid[0, 8:16, 8:16].all() and valid[0, :8].all() and valid[0, 16:].all()


def test_warp_outside_image_is_invalid():
    H, W = 10, 16
    pts = plane_points(H, W)
    flow = torch.zeros(1, H, W, 3, dtype=torch.float64)
    flow[..., 0] = 8.0
    flow[0, :3, :, 1] = -20.0  # top rows thrown above the image
    I2 = torch.rand(1, 2, H, W, dtype=torch.float64) + 0.1
    warped, valid = warp_by_flow(I2, pts, flow, torch.ones(1, H, W, dtype=torch.bool))
    expect = torch.zeros(H, W, dtype=torch.bool)
    expect[3:, :8] = True
    assert torch.equal(valid[0], expect)
    assert torch.all(warped[0][:, ~expect] == 0) and torch.all(warped[0][:, expect] > 0)
    flow2 = flow.clone()
    flow2[0, 5, 5, 0] = float("nan")
    _, v2 = warp_by_flow(I2, pts, flow2, torch.ones(1, H, W, dtype=torch.bool))
    assert not v2[0, 5, 5] and v2[0, 5, 4]


def test_warp_gradient_matches_finite_differences():
    H, W = 6, 7
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5,
                            torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    I2 = (0.5 + 0.3 * torch.sin(0.7 * xs + 0.4 * ys))[None].expand(2, H, W)[:, None].contiguous()
    pts = plane_points(H, W).expand(2, H, W, 3)
    g = torch.Generator().manual_seed(5)
    flow = torch.rand(2, H, W, 3, generator=g, dtype=torch.float64) * 0.3 + 0.1  # stays between centres
    flow.requires_grad_(True)
    mask = torch.ones(2, H, W, dtype=torch.bool)
    assert torch.autograd.gradcheck(lambda f: warp_by_flow(I2, pts, f, mask)[0], (flow,))
    img = I2.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda im: warp_by_flow(im, pts, flow.detach(), mask)[0], (img,))
    warp_by_flow(I2, pts, flow, mask)[0].sum().backward()
    assert flow.grad[..., :2].abs().sum() > 0


def test_warp_masked_out_pixels_never_contribute():
    H, W = 12, 12
    pts = plane_points(H, W, z0=100.0, zx=0.0).clone()
    mask = torch.ones(1, H, W, dtype=torch.bool)
    mask[0, 2:5, 2:5] = False
    pts[0, 2:5, 2:5, 2] = 1.0  # very near, but not face: must not occlude anything
    flow = torch.zeros(1, H, W, 3, dtype=torch.float64)
    flow[0, 2:5, 2:5, 0] = 5.0  # would land on face pixels 2:5, 7:10
    flow.requires_grad_(True)
    I2 = torch.rand(1, 3, H, W, dtype=torch.float64)
    warped, valid = warp_by_flow(I2, pts, flow, mask)
    assert torch.equal(valid, mask)
    assert torch.all(warped[0][:, ~mask[0]] == 0)
    warped.sum().backward()
    assert torch.all(flow.grad[0, 2:5, 2:5] == 0)


def test_warp_dtype_and_bad_input():
    H, W = 5, 6
    pts = plane_points(H, W, dtype=torch.float32)
    mask = torch.ones(1, H, W, dtype=torch.bool)
    warped, valid = warp_by_flow(torch.rand(1, 3, H, W), pts, torch.zeros(1, H, W, 3), mask)
    assert warped.dtype == torch.float32 and warped.shape == (1, 3, H, W) and valid.all()
    with pytest.raises(FaceflowError, match="flow"):
        warp_by_flow(torch.rand(1, 3, H, W), pts, torch.zeros(1, H, W, 2), mask)
    with pytest.raises(FaceflowError, match="mask"):
        warp_by_flow(torch.rand(1, 3, H, W), pts, torch.zeros(1, H, W, 3), mask.float())
    with pytest.raises(FaceflowError, match="image2"):
        warp_by_flow(torch.rand(3, H, W), pts, torch.zeros(1, H, W, 3), mask)
