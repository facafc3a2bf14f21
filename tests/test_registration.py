"""Tests of faceflow.face.registration (and faceflow.geometry.similarity): similarity estimation,
template, warping, crop boxes.

Mostly analytic (known transforms, affine fields that bilinear interpolation reproduces
exactly, np.rot90, integer shifts) and brute force (scipy least squares). The template
constant is re-derived from the ICT FaceKit asset; one test registers a real still through
faceflow.face.landmarks when that module exists.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _media import media
from scipy.optimize import least_squares

from faceflow.errors import FaceflowError
from faceflow.face import registration as reg
from faceflow.face.registration import (
    CropBox,
    crop_box,
    crop_image,
    flow_to_image,
    register_image,
    register_landmarks,
    template_landmarks,
    warp_back,
    warp_image,
)
from faceflow.geometry.similarity import Similarity, estimate_similarity


def random_similarity(rng, scale=(0.5, 2.0), shift=50.0) -> Similarity:
    return Similarity.from_params(rng.uniform(*scale), rng.uniform(-math.pi, math.pi), rng.uniform(-shift, shift, 2))


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def smooth_image(h, w, seed=0) -> np.ndarray:
    """(h, w, 3) uint8 made of a few low-frequency sinusoids."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    chans = []
    for _ in range(3):
        v = 128.0
        for _ in range(3):
            kx, ky = rng.uniform(-0.08, 0.08, 2)
            v = v + 35 * np.sin(kx * xx + ky * yy + rng.uniform(0, 6.28))
        chans.append(v)
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def sim_cost(params, src, dst, w):
    s, a, tx, ty = params
    T = Similarity.from_params(s, a, (tx, ty))
    return ((T.apply(src) - dst) * np.sqrt(w)[:, None]).ravel()


# ----------------------------------------------------------------------------- Similarity
def test_similarity_names_are_re_exported_by_registration():
    assert reg.Similarity is Similarity and reg.estimate_similarity is estimate_similarity


def test_estimate_similarity_exact_on_noiseless_points():
    rng = np.random.default_rng(1)
    for _ in range(5):
        T = random_similarity(rng)
        src = rng.uniform(-100, 100, (15, 2))
        est = estimate_similarity(src, T.apply(src))
        np.testing.assert_allclose(est.matrix, T.matrix, atol=1e-10)
        assert est.scale == pytest.approx(T.scale, rel=1e-12)
        assert est.angle == pytest.approx(T.angle, abs=1e-12)
    # two points determine a similarity
    src2 = np.array([[0.0, 0.0], [3.0, 1.0]])
    np.testing.assert_allclose(estimate_similarity(src2, T.apply(src2)).matrix, T.matrix, atol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_estimate_similarity_is_the_least_squares_optimum(weighted):
    rng = np.random.default_rng(2)
    T = random_similarity(rng)
    src = rng.uniform(-50, 50, (30, 2))
    dst = T.apply(src) + rng.normal(0, 3.0, (30, 2))
    w = rng.uniform(0.1, 3.0, 30) if weighted else np.ones(30)
    est = estimate_similarity(src, dst, w if weighted else None)
    ref = least_squares(sim_cost, [1.0, 0.0, 0.0, 0.0], args=(src, dst, w), xtol=1e-14, ftol=1e-14, gtol=1e-14)
    ref_T = Similarity.from_params(ref.x[0], ref.x[1], ref.x[2:])
    np.testing.assert_allclose(est.matrix, ref_T.matrix, atol=1e-6)
    ours = 0.5 * np.sum(sim_cost([est.scale, est.angle, *est.translation], src, dst, w) ** 2)
    assert ours <= ref.cost * (1 + 1e-9)
    # any perturbation of the parameters increases the cost
    for d in np.eye(4) * 1e-3:
        p = np.array([est.scale, est.angle, *est.translation]) + d
        assert 0.5 * np.sum(sim_cost(p, src, dst, w) ** 2) > ours


def test_weights_and_nan_rows():
    rng = np.random.default_rng(3)
    T = random_similarity(rng)
    src = rng.uniform(-50, 50, (12, 2))
    dst = T.apply(src)
    bad = dst.copy()
    bad[3] += 400.0  # an outlier
    w = np.ones(12)
    w[3] = 0.0
    np.testing.assert_allclose(estimate_similarity(src, bad, w).matrix, T.matrix, atol=1e-9)
    assert not np.allclose(estimate_similarity(src, bad).matrix, T.matrix, atol=1e-3)
    nan_src, nan_dst = src.copy(), bad.copy()
    nan_dst[3] = np.nan
    nan_src[7, 1] = np.nan
    np.testing.assert_allclose(estimate_similarity(nan_src, nan_dst).matrix, T.matrix, atol=1e-9)
    # a heavier weight pulls the fit toward that point
    noisy = dst + rng.normal(0, 2.0, dst.shape)
    w = np.ones(12)
    w[0] = 1000.0
    r_w = np.linalg.norm(estimate_similarity(src, noisy, w).apply(src[0]) - noisy[0])
    r_u = np.linalg.norm(estimate_similarity(src, noisy).apply(src[0]) - noisy[0])
    assert r_w < 0.1 * r_u


def test_inverse_compose_and_serialisation():
    rng = np.random.default_rng(4)
    A, B = random_similarity(rng), random_similarity(rng)
    p = rng.uniform(-100, 100, (7, 2))
    np.testing.assert_allclose(A.inverse().apply(A.apply(p)), p, atol=1e-9)
    assert A.compose(A.inverse()).allclose(Similarity.identity(), atol=1e-12)
    np.testing.assert_allclose(A.compose(B).apply(p), A.apply(B.apply(p)), atol=1e-9)
    assert (A @ B).inverse().allclose(B.inverse() @ A.inverse(), atol=1e-9)
    assert A.compose(B).scale == pytest.approx(A.scale * B.scale)
    T = Similarity.from_params(1.7, 2.5, (3.0, -4.0))
    assert (T.scale, T.angle) == (pytest.approx(1.7), pytest.approx(2.5))
    np.testing.assert_allclose(T.translation, [3.0, -4.0])
    # positive angle turns +x toward +y (clockwise on screen, y down)
    np.testing.assert_allclose(Similarity.from_params(1, math.pi / 2).apply([1.0, 0.0]), [0.0, 1.0], atol=1e-15)
    R = Similarity.about((10.0, 20.0), 2.0, 0.4)
    np.testing.assert_allclose(R.apply([10.0, 20.0]), [10.0, 20.0], atol=1e-12)
    back = Similarity.from_dict(json.loads(json.dumps(A.to_dict())))
    np.testing.assert_array_equal(back.matrix, A.matrix)
    # torch in, torch out, same numbers
    pt = torch.tensor(p, dtype=torch.float32)
    np.testing.assert_allclose(A.apply(pt).numpy(), A.apply(p), rtol=1e-5, atol=1e-3)


def test_apply_3d_and_flow3d_are_consistent():
    rng = np.random.default_rng(5)
    T = random_similarity(rng)
    p = rng.uniform(-50, 50, (10, 3))
    f = rng.normal(0, 5, (10, 3))
    q = T.apply_3d(p)
    np.testing.assert_allclose(q[:, :2], T.apply(p[:, :2]))
    np.testing.assert_allclose(q[:, 2], T.scale * p[:, 2])
    h = 1e-3
    fd = (T.apply_3d(p + h * f) - T.apply_3d(p - h * f)) / (2 * h)
    np.testing.assert_allclose(T.apply_flow3d(f), fd, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(T.apply_vectors(f[:, :2]), fd[:, :2], rtol=1e-7, atol=1e-7)
    # scaled-orthographic round trip through the inverse
    np.testing.assert_allclose(T.inverse().apply_3d(q), p, atol=1e-9)
    ft = T.apply_flow3d(torch.tensor(f))
    assert torch.is_tensor(ft) and np.allclose(ft.numpy(), T.apply_flow3d(f))


# ----------------------------------------------------------------------------- template
def test_template_matches_asset(skin_model):
    lmk3d = skin_model.mean[skin_model.lmk68].double().numpy()
    derived = reg.template_from_model(lmk3d)
    np.testing.assert_allclose(reg._TEMPLATE_UNIT, derived, atol=5.1e-5)
    np.testing.assert_allclose(template_landmarks(224), derived * 224, atol=0.012)


def test_template_layout():
    t = template_landmarks(224) / 224
    lo, hi = t.min(0), t.max(0)
    assert lo[1] == pytest.approx(0.28, abs=1e-4) and hi[1] - lo[1] == pytest.approx(0.60, abs=1e-4)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.5, abs=1e-4)
    left, right = t[36:42].mean(0), t[42:48].mean(0)
    assert left[0] < 0.5 < right[0]  # eye 36-41 on the image left
    assert 0.26 < right[0] - left[0] < 0.32  # inter-ocular distance ~0.28 size
    assert 0.37 < left[1] < 0.43 and abs(left[1] - right[1]) < 1e-3  # level eye line ~0.40
    assert t[8, 1] == pytest.approx(hi[1]) and t[30, 1] < t[51, 1] < t[57, 1]  # chin lowest, nose above mouth
    # mirror symmetric: jaw 0 <-> 16, brows 17 <-> 26
    mirror = list(range(16, -1, -1)) + list(range(26, 16, -1))
    np.testing.assert_allclose(t[:27, 0], 1 - t[mirror, 0], atol=2e-4)
    np.testing.assert_allclose(t[:27, 1], t[mirror, 1], atol=2e-4)
    np.testing.assert_allclose(template_landmarks(100), t * 100, atol=1e-12)


def test_register_landmarks_recovers_the_template():
    rng = np.random.default_rng(6)
    tmpl = template_landmarks(224)
    for _ in range(3):
        S = random_similarity(rng, scale=(0.8, 3.0), shift=300)  # template -> some image
        lmk = S.apply(tmpl)
        T = register_landmarks(lmk)
        assert T.allclose(S.inverse(), atol=1e-9)
        np.testing.assert_allclose(T.apply(lmk), tmpl, atol=1e-9)
    lmk[:10] = np.nan  # missed points are ignored
    np.testing.assert_allclose(register_landmarks(lmk, 112).apply(lmk[10:]), tmpl[10:] / 2, atol=1e-9)
    lmk3 = np.concatenate([S.apply(tmpl), rng.normal(size=(68, 1))], 1)  # (68, 3): x, y used
    assert register_landmarks(lmk3).allclose(S.inverse(), atol=1e-9)


# ----------------------------------------------------------------------------- warping
def test_integer_translation_is_exact():
    img = np.random.default_rng(7).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    T = Similarity.from_params(1.0, 0.0, (3.0, -2.0))  # out[i, j] = img[i + 2, j - 3]
    out = warp_image(img, T, (30, 40))
    assert out.dtype == np.uint8 and out.shape == img.shape
    np.testing.assert_array_equal(out[:28, 3:], img[2:, :37])
    assert (out[28:] == 0).all() and (out[:, :3] == 0).all()
    edge = warp_image(img, T, (30, 40), border="border")
    np.testing.assert_array_equal(edge[:28, :3], np.repeat(img[2:, :1], 3, 1))
    # float torch, (C, H, W): exact up to float32 rounding of the sampling grid
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    y = warp_image(x, T, 30)
    assert y.shape == (3, 30, 30)
    np.testing.assert_allclose(y[:, :28, 3:].numpy(), x[:, 2:, :27].numpy(), atol=1e-5)
    # nearest agrees at exact pixel centres; a 2-D (grey) image keeps its shape
    np.testing.assert_array_equal(warp_image(img[..., 0], T, (30, 40), interpolation="nearest"), out[..., 0])


def bilinear_reference(img: np.ndarray, T: Similarity, out_hw, border: str) -> np.ndarray:
    """Brute-force bilinear sampling of img (H, W, C) float at T^-1(pixel centres)."""
    H, W = img.shape[:2]
    yy, xx = np.mgrid[0:out_hw[0], 0:out_hw[1]] + 0.5
    p = T.inverse().apply(np.stack([xx, yy], -1)) - 0.5  # continuous pixel indices
    j0, i0 = np.floor(p[..., 0]).astype(int), np.floor(p[..., 1]).astype(int)
    fx, fy = p[..., 0] - j0, p[..., 1] - i0
    out = 0.0
    for di, wy in ((0, 1 - fy), (1, fy)):
        for dj, wx in ((0, 1 - fx), (1, fx)):
            i, j = i0 + di, j0 + dj
            inside = (i >= 0) & (i < H) & (j >= 0) & (j < W)
            v = img[np.clip(i, 0, H - 1), np.clip(j, 0, W - 1)]
            if border == "zeros":
                v = v * inside[..., None]
            out = out + (wy * wx)[..., None] * v
    return out


@pytest.mark.parametrize("border", ["zeros", "border"])
def test_warp_matches_brute_force_bilinear(border):
    rng = np.random.default_rng(13)
    img = rng.uniform(0, 1, (300, 400, 2))
    cases = [Similarity.from_params(2.5, 0.3, (-300.0, -200.0)),  # a small area deep inside
             Similarity.from_params(1.3, -0.7, (10.0, 150.0)),  # partly outside
             Similarity.from_params(0.8, 0.1, (-340.0, 30.0)),  # crosses the right edge
             Similarity.from_params(1.0, 0.0, (-420.0, 10.0))]  # entirely right of the image
    for T in cases:
        ref = bilinear_reference(img, T, (40, 50), border)
        np.testing.assert_allclose(warp_image(img, T, (40, 50), border=border), ref, atol=1e-9)


def test_rotation_by_90_degrees_equals_rot90():
    rng = np.random.default_rng(8)
    sq = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    T = Similarity.about((12.0, 12.0), 1.0, -math.pi / 2)
    np.testing.assert_array_equal(warp_image(sq, T, 24), np.rot90(sq))
    np.testing.assert_array_equal(warp_image(sq, T.inverse(), 24), np.rot90(sq, -1))
    rect = rng.integers(0, 256, (20, 31), dtype=np.uint8)  # H=20, W=31 -> (31, 20)
    T = Similarity(np.array([[0.0, -1.0, 31.0], [1.0, 0.0, 0.0]])).inverse()  # out(x, y) = in(31 - y, x)
    np.testing.assert_array_equal(warp_image(rect, T, (31, 20)), np.rot90(rect))


def test_warp_and_inverse_warp_round_trip():
    img = smooth_image(128, 128)
    T = Similarity.about((64.0, 64.0), 1.15, 0.35).compose(Similarity.from_params(1, 0, (2.3, -1.7)))
    there = warp_image(img, T, 128)
    back = warp_image(there, T.inverse(), 128)
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    q = T.apply(np.stack([xx, yy], -1))
    interior = (q.min(-1) > 3) & (q.max(-1) < 125) & (xx > 3) & (xx < 125) & (yy > 3) & (yy < 125)
    assert interior.mean() > 0.4
    assert psnr(back[interior], img[interior]) > 35
    # a half-pixel error in the convention would fail this
    bad = warp_image(there, Similarity.from_params(1, 0, (0.5, 0.5)).compose(T.inverse()), 128)
    assert psnr(bad[interior], img[interior]) < psnr(back[interior], img[interior]) - 3


def test_numpy_and_torch_paths_agree_and_batch():
    img = smooth_image(40, 50, seed=3)
    rng = np.random.default_rng(9)
    ts = [Similarity.about((25.0, 20.0), rng.uniform(0.7, 1.4), rng.uniform(-1, 1)) for _ in range(3)]
    ref = np.stack([warp_image(img, t, (36, 44)) for t in ts])
    x = torch.from_numpy(img).permute(2, 0, 1).float()
    y = torch.stack([warp_image(x, t, (36, 44)) for t in ts])
    np.testing.assert_array_equal(y.round().permute(0, 2, 3, 1).numpy().astype(np.uint8), ref)
    # a batch with one transform each, and one image broadcast to several transforms
    batch = torch.stack([x, x.flip(-1), x * 0.5])
    yb = warp_image(batch, ts, (36, 44))
    for i, t in enumerate(ts):
        torch.testing.assert_close(yb[i], warp_image(batch[i], t, (36, 44)), rtol=0, atol=1e-3)
    # A batch reads the union of the sampled areas: float32 grid rounding may move a uint8
    # value sitting at .5 by one level, nothing more.
    for out in (warp_image(img, ts, (36, 44)), warp_image(np.stack([img] * 3), ts, (36, 44)),
                warp_image(x.to(torch.uint8), ts, (36, 44)).permute(0, 2, 3, 1).numpy()):
        assert out.dtype == np.uint8 and out.shape == ref.shape
        diff = np.abs(out.astype(int) - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_register_image_and_warp_back_of_a_linear_field():
    rng = np.random.default_rng(10)
    S = Similarity.from_params(2.0, 0.3, (150.0, 80.0))  # template -> image
    lmk = S.apply(template_landmarks(224))
    img = smooth_image(600, 700)
    out, T = register_image(img, lmk)
    assert out.shape == (224, 224, 3) and T.allclose(S.inverse(), atol=1e-9)
    np.testing.assert_array_equal(out, warp_image(img, T, 224))
    # a template image that is linear in template coordinates comes back analytic
    g = rng.normal(0, 1, (2, 2))
    yy, xx = np.mgrid[0:224, 0:224] + 0.5
    tmpl = np.stack([xx, yy], -1) @ g.T + 5.0  # (224, 224, 2) float64
    back, valid = warp_back(tmpl, T, (600, 700), return_mask=True)
    py, px = np.mgrid[0:600, 0:700] + 0.5
    q = T.apply(np.stack([px, py], -1))
    inside = (q.min(-1) > 0.5) & (q.max(-1) < 223.5)
    assert valid[inside].all() and not valid[(q.min(-1) < -1) | (q.max(-1) > 225)].any()
    np.testing.assert_allclose(back[inside], (q @ g.T + 5.0)[inside], atol=1e-9)
    np.testing.assert_allclose(warp_back(tmpl, T, (600, 700))[inside], back[inside], atol=1e-9)


def test_flow_to_image_of_an_affine_motion():
    S = Similarity.from_params(1.6, -0.4, (120.0, 60.0))  # template -> image
    T = S.inverse()  # image -> template
    M = np.array([[1.02, -0.03], [0.04, 0.98]])
    c = np.array([1.5, -2.0])
    gz, hz = np.array([0.01, -0.02]), 0.7
    yy, xx = np.mgrid[0:224, 0:224] + 0.5
    q = np.stack([xx, yy], -1)
    flow_t = np.concatenate([q @ M.T + c - q, (q @ gz + hz)[..., None]], -1).astype(np.float32)
    H, W = 500, 520
    out, valid = flow_to_image(flow_t, T, (H, W), return_mask=True)
    assert out.shape == (H, W, 3) and out.dtype == np.float32
    py, px = np.mgrid[0:H, 0:W] + 0.5
    p = np.stack([px, py], -1)
    qp = T.apply(p)
    expect_xy = S.apply(qp @ M.T + c) - p  # where the image point moves to, minus where it is
    expect_z = (qp @ gz + hz) / T.scale
    inside = (qp.min(-1) > 0.5) & (qp.max(-1) < 223.5)
    assert valid[inside].all() and (out[~valid] == 0).all()
    np.testing.assert_allclose(out[inside][:, :2], expect_xy[inside], atol=2e-3)
    np.testing.assert_allclose(out[inside][:, 2], expect_z[inside], atol=2e-3)
    # 2D flow and the torch layout give the same numbers
    out2 = flow_to_image(flow_t[..., :2], T, (H, W))
    np.testing.assert_allclose(out2, out[..., :2], atol=1e-6)
    ot = flow_to_image(torch.from_numpy(flow_t).permute(2, 0, 1), T, (H, W))
    np.testing.assert_allclose(ot.permute(1, 2, 0).numpy(), out, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_flow_to_image_mask_does_not_bleed(interpolation):
    T = Similarity.from_params(0.5, 0.2, (20.0, -10.0))  # image -> template (image 2x bigger)
    flow = np.full((224, 224, 3), 1.0, np.float32)
    mask = np.zeros((224, 224), bool)
    mask[40:180, 50:170] = True
    flow[~mask] = 1e4  # garbage outside the face
    out, valid = flow_to_image(flow, T, (480, 480), mask=mask, interpolation=interpolation, return_mask=True)
    expect = T.inverse().apply_flow3d(np.ones(3))
    assert valid.sum() > 0.5 * mask.sum() / T.scale ** 2
    np.testing.assert_allclose(out[valid], np.broadcast_to(expect, out[valid].shape), atol=1e-4)
    assert (out[~valid] == 0).all()
    py, px = np.mgrid[0:480, 0:480] + 0.5
    q = T.apply(np.stack([px, py], -1))
    far = (q[..., 0] < 48) | (q[..., 0] > 172) | (q[..., 1] < 38) | (q[..., 1] > 182)
    assert not valid[far].any()


# ----------------------------------------------------------------------------- crop box
def test_crop_box_median_nan_and_outlier():
    rng = np.random.default_rng(11)
    base = np.array([100.0, 120.0, 200.0, 240.0])  # w=100, h=120, centre (150, 180)
    boxes = base + rng.uniform(-1, 1, (21, 4))
    boxes[3] = np.nan
    boxes[5] = [0.0, 0.0, 400.0, 30.0]  # one wild box
    b = crop_box(boxes, margin=0.4, shift=0.2)
    L = 120.0
    assert b.side == pytest.approx(1.8 * L, abs=2.0)
    np.testing.assert_allclose(b.centre, [150.0, 180.0 - 0.2 * L], atol=1.5)
    exact = crop_box(np.tile(base, (5, 1)), margin=0.25, shift=0.0)
    assert (exact.x0, exact.y0, exact.side) == pytest.approx((150 - 90, 180 - 90, 180))
    valid = np.ones(21, bool)
    valid[:20] = False  # only the last row counts
    only = crop_box(boxes, valid=valid, margin=0.0, shift=0.0)
    last = boxes[20]
    assert only.side == pytest.approx(max(last[2] - last[0], last[3] - last[1]))
    # the crop is square and maps the box corners to the crop corners
    A = b.transform(256)
    assert A.angle == 0.0 and A.scale == pytest.approx(256 / b.side)
    np.testing.assert_allclose(A.apply([[b.x0, b.y0], [b.x0 + b.side, b.y0 + b.side]]), [[0, 0], [256, 256]], atol=1e-9)
    assert CropBox.from_dict(json.loads(json.dumps(b.to_dict()))) == b
    with pytest.raises(FaceflowError, match="no valid face box"):
        crop_box(np.full((4, 4), np.nan))


def test_crop_box_kept_inside_the_image():
    boxes = np.array([[10.0, 20.0, 110.0, 120.0]])
    free = crop_box(boxes)
    assert free.x0 < 0 and free.y0 < 0  # would pad
    inside = crop_box(boxes, image_size=(400, 300))
    assert inside.side == free.side and (inside.x0, inside.y0) == (0.0, 0.0)
    assert inside.x0 <= 10 and inside.x0 + inside.side >= 110  # face still inside
    big = crop_box(boxes, image_size=(100, 100))  # larger than the image: left as is (pads)
    assert (big.x0, big.y0) == (free.x0, free.y0)


def test_crop_image_pads_and_keeps_inside_pixels():
    img = np.random.default_rng(12).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    box = CropBox(-5.0, -3.0, 32.0)
    out = crop_image(img, box, size=32, border="zeros")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[3:, 5:], img[:29, :27])
    assert (out[:3] == 0).all() and (out[:, :5] == 0).all()
    edge = crop_image(img, box, size=32)  # default: edge replicate
    np.testing.assert_array_equal(edge[3:, 5:], img[:29, :27])
    np.testing.assert_array_equal(edge[3:, :5], np.repeat(img[:29, :1], 5, 1))
    np.testing.assert_array_equal(edge[:3, 5:], np.repeat(img[:1, :27], 3, 0))
    # a scale-1/2 crop samples between 2 x 2 pixel blocks: their mean
    f = img.astype(np.float64)
    half = crop_image(f, CropBox(4.0, 6.0, 40.0), size=20)
    blocks = f[6:46, 4:44].reshape(20, 2, 20, 2, 3).mean((1, 3))
    np.testing.assert_allclose(half, blocks, atol=1e-9)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_faceflow_error():
    T = Similarity.identity()
    img = np.zeros((10, 10, 3), np.uint8)
    cases = [
        lambda: estimate_similarity(np.zeros((5, 3)), np.zeros((5, 3))),
        lambda: estimate_similarity(np.zeros((5, 2)), np.zeros((4, 2))),
        lambda: estimate_similarity(np.ones((5, 2)), np.random.rand(5, 2)),  # coincident source
        lambda: estimate_similarity(np.random.rand(5, 2), np.ones((5, 2))),  # zero scale
        lambda: estimate_similarity(np.random.rand(3, 2), np.random.rand(3, 2), [1, -1, 1]),
        lambda: estimate_similarity([["a", "b"], ["c", "d"]], np.zeros((2, 2))),
        lambda: Similarity.from_params(-1.0, 0.0),
        lambda: register_landmarks(np.zeros((67, 2))),
        lambda: register_landmarks(np.full((68, 2), np.nan)),
        lambda: register_landmarks(np.where(np.arange(68)[:, None] == 0, 1.0, np.nan) * np.ones((68, 2))),
        lambda: warp_image(img, T, 0),
        lambda: warp_image(img, T, (10, 9000)),
        lambda: warp_image(img, T, (-3, 10)),
        lambda: warp_image(img, T, 2.5),
        lambda: warp_image(img, T, 10, border="wrap"),
        lambda: warp_image(img, T, 10, interpolation="lanczos"),
        lambda: warp_image(np.zeros((0, 5, 3)), T, 10),
        lambda: warp_image("image.png", T, 10),
        lambda: warp_image(np.zeros((2, 3, 4, 5, 6)), T, 10),
        lambda: warp_image(img, "identity", 10),
        lambda: warp_image(torch.zeros(2, 3, 8, 8), [T, T, T], 8),
        lambda: template_landmarks(0),
        lambda: register_image(img, np.zeros((68, 2)), size=10000),
        lambda: Similarity(np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])),  # a reflection
        lambda: Similarity(np.eye(3)),
        lambda: Similarity.from_dict({"m": 1}),
        lambda: flow_to_image(np.zeros((8, 8, 4), np.float32), T, (8, 8)),
        lambda: flow_to_image(np.zeros((8, 8, 3), np.float32), T, (8, 8), mask=np.ones((4, 4), bool)),
        lambda: flow_to_image(np.zeros((8, 8, 3), np.float32), T, (0, 8)),
        lambda: crop_box(np.zeros((5, 3))),
        lambda: crop_box(np.ones((3, 4)), valid=np.ones(2, bool)),
        lambda: CropBox(0.0, 0.0, 0.0),
        lambda: crop_image(img, CropBox(0.0, 0.0, 5.0), size=0),
        lambda: crop_image(img, (0, 0, 5), size=8),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(FaceflowError) as e:
            case()
        assert str(e.value), f"case {i} has an empty message"


# ----------------------------------------------------------------------------- real still
def test_real_still_registers_eyes_onto_the_template():
    path = media("stills/deepface_img32.jpg")
    try:
        from faceflow.face.landmarks import detect_image
    except ImportError as e:
        pytest.skip(f"faceflow.face.landmarks (detect_image) is not available yet: {e}")
    from faceflow.io import read_image

    img = read_image(path)
    lmk = np.asarray(detect_image(img).lmk68, dtype=np.float64)[:, :2]
    out, T = register_image(img, lmk, 224)
    assert out.shape == (224, 224, 3)
    tmpl = template_landmarks(224)
    reg_lmk = T.apply(lmk)
    for eye in (slice(36, 42), slice(42, 48)):
        err = np.linalg.norm(reg_lmk[eye].mean(0) - tmpl[eye].mean(0))
        assert err < 6.0, f"eye centre {err:.1f} px from the template's"
    # the registered face is upright and at the template's scale
    assert abs(math.degrees(T.inverse().angle)) < 15
    assert np.linalg.norm(reg_lmk[45] - reg_lmk[36]) == pytest.approx(np.linalg.norm(tmpl[45] - tmpl[36]), rel=0.15)
