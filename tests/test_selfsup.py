"""In-plane training pairs (exact flow) and the self-supervised losses for real pairs."""

import math

import pytest
import torch
import torch.nn.functional as F

from faceflow.data.inplane import inplane_motions, inplane_pairs
from faceflow.nets.selfsup import census_descriptor, census_distance, self_supervised_loss, smoothness
from faceflow.ops.sampling import pixel_centres

pytestmark = pytest.mark.usefixtures("one_thread")


def _texture(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) smooth random images in [0.1, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return 0.1 + 0.8 * F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _sample_at(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """img (N, C, H, W) sampled bilinearly at pixel positions xy (N, H, W, 2)."""
    H, W = img.shape[-2:]
    grid = torch.stack([xy[..., 0] / W * 2 - 1, xy[..., 1] / H * 2 - 1], -1)
    return F.grid_sample(img, grid, align_corners=False)


def test_inplane_pairs_flow_is_exact_and_in_plane():
    i1 = _texture(3)
    u = torch.tensor([[0.9, 0.2, 0.8, 0.9], [0.1, 0.6, 0.1, 0.5], [0.3, 0.3, 0.3, 0.1]])
    motions = inplane_motions(u, (64, 64), max_shift=3.0, max_angle=4.0, identical=0.25)
    i2, flow = inplane_pairs(i1, motions)
    assert flow.shape == (3, 64, 64, 3) and torch.equal(flow[..., 2], torch.zeros(3, 64, 64))
    # the pixel p of I1 shows in I2 at p + flow(p): compare away from the replicated border
    grid = pixel_centres(64, 64)[0].expand(3, 64, 64, 2)
    err = (_sample_at(i2, grid + flow[..., :2]) - i1)[:2, :, 12:-12, 12:-12].abs().mean()
    unmoved = (i2 - i1)[:2, :, 12:-12, 12:-12].abs().mean()
    assert err < 0.1 * unmoved  # what is left is bilinear resampling twice
    # motion 0: shift (2.4, -1.8) px, rotation +2.4 degrees about the centre
    T = motions[0]
    assert T.angle == pytest.approx(math.radians(2.4)) and T.scale == pytest.approx(1.0)
    # near the centre (0.7 px away) the rotation moves a pixel by 0.03 px at most: the flow is the shift
    assert flow[0, 31, 31, :2] == pytest.approx(torch.tensor([2.4, -1.8]), abs=0.04)
    # far from it the rotation adds R(p - c) - (p - c): at p - c = (-31.5, -31.5)
    far = torch.tensor([-31.5, -31.5])
    c, s = math.cos(T.angle), math.sin(T.angle)
    rotated = torch.tensor([c * far[0] - s * far[1], s * far[0] + c * far[1]])
    assert flow[0, 0, 0, :2] == pytest.approx(rotated - far + torch.tensor([2.4, -1.8]), abs=1e-4)
    # motion 2 is below the identical fraction: I2 = I1 and the flow is zero
    assert torch.allclose(i2[2], i1[2], atol=1e-6) and torch.equal(flow[2], torch.zeros(64, 64, 3))


def test_census_ignores_brightness_and_finds_the_motion():
    img = _texture(1, seed=1)
    t = census_descriptor(img)
    assert t.shape == (1, 49, 64, 64) and t.abs().max() < 1
    brighter = census_descriptor((img + 0.05).clamp(0, 1))
    assert census_distance(t, brighter).max() < 1e-3  # an offset leaves every grey difference unchanged
    shifted = census_descriptor(torch.roll(img, 1, dims=-1))
    assert census_distance(t, shifted)[..., 8:-8, 8:-8].mean() > 1.0


def test_smoothness_is_zero_for_a_constant_flow_and_counts_only_face_pairs():
    img = _texture(1)
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[:, 10:50, 10:50] = True
    const = torch.ones(1, 3, 64, 64) * torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1)
    assert float(smoothness(const, img, mask)) < 1e-4
    noisy = const.clone()
    noisy[:, :, :5] += 3.0  # a jump off the face is not counted
    assert float(smoothness(noisy, img, mask)) < 1e-4
    noisy[:, :, 30] += 3.0
    assert float(smoothness(noisy, img, mask)) > 0.01


def test_self_supervised_loss_recovers_a_translation():
    """Gradient descent on the self-supervised loss alone, over one constant 2D flow, finds the
    true motion of an image pair (the loss is minimal at the truth and its gradient leads there)."""
    big = _texture(1, size=96, seed=3)
    dx, dy = 2.0, -1.0
    i1 = big[..., 16:80, 16:80]
    i2 = big[..., 16 - int(dy):80 - int(dy), 16 - int(dx):80 - int(dx)]  # I2(p + d) = I1(p)
    grid = pixel_centres(64, 64)[0][None]
    points = torch.cat([grid, torch.zeros(1, 64, 64, 1)], -1)
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[:, 12:52, 12:52] = True
    v = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.1)
    for _ in range(120):
        flow = torch.cat([v, torch.zeros(1)]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
        loss, parts = self_supervised_loss(flow, i1, i2, points, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert v.detach() == pytest.approx(torch.tensor([dx, dy]), abs=0.15)
    assert float(parts["valid_fraction"]) == 1.0


def test_photometric_term_sees_brightness_census_does_not_and_both_find_the_motion():
    big = _texture(1, size=96, seed=4)
    i1 = big[..., 16:80, 16:80]
    i2 = big[..., 16:80, 15:79]                                     # I2(p + (1, 0)) = I1(p)
    grid = pixel_centres(64, 64)[0][None]
    points = torch.cat([grid, torch.zeros(1, 64, 64, 1)], -1)
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[:, 12:52, 12:52] = True
    truth = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    _, at_truth = self_supervised_loss(truth, i1, i2, points, mask, photo_weight=1.0)
    _, off = self_supervised_loss(truth * 0, i1, i2, points, mask, photo_weight=1.0)
    assert float(at_truth["photo"]) < 0.05 < float(off["photo"])    # minimal at the true motion
    _, lit = self_supervised_loss(truth, i1, (i2 + 0.02).clamp(0, 1), points, mask, photo_weight=1.0)
    assert float(lit["photo"]) == pytest.approx((0.02 * 255) ** 0.9, rel=0.05)  # the 5-grey-level offset
    assert float(lit["census"]) == pytest.approx(float(at_truth["census"]), abs=1e-3)  # census ignores it
    total0, _ = self_supervised_loss(truth * 0, i1, i2, points, mask, photo_weight=0.0)
    total2, p2 = self_supervised_loss(truth * 0, i1, i2, points, mask, photo_weight=2.0)
    assert float(total2 - total0) == pytest.approx(2.0 * float(p2["photo"]), rel=1e-5)
