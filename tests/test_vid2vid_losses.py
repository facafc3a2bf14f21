"""vid2vid.losses: LSGAN, feature matching, VGG19 perceptual loss (local weights only), the
flow-warping temporal loss and the weighted total."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from faceflow.errors import FaceflowError
from vid2vid.losses import (
    VGG19_FILENAME,
    LossWeights,
    VGG19Loss,
    discriminator_loss,
    feature_matching_loss,
    find_vgg19_weights,
    generator_adv_loss,
    lsgan_loss,
    temporal_warp_loss,
    weighted_total,
)
from vid2vid.warp import warp

pytestmark = pytest.mark.usefixtures("one_thread")

# torchvision's VGG19 "E" configuration: conv widths, "M" = 2x2 max pooling
_CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"]


def _const(v: float, shape=(2, 1, 4, 4)) -> torch.Tensor:
    return torch.full(shape, float(v))


# ---------------------------------------------------------------------------------------------
# LSGAN


def test_lsgan_constant_predictions():
    # two scales, each (feature, prediction); features must be ignored
    preds = [[_const(7.0, (2, 8, 4, 4)), _const(0.25)], [_const(-3.0, (2, 8, 2, 2)), _const(2.0, (2, 1, 2, 2))]]
    real = lsgan_loss(preds, True)
    fake = lsgan_loss(preds, False)
    assert real.item() == pytest.approx(((0.25 - 1) ** 2 + (2 - 1) ** 2) / 2)
    assert fake.item() == pytest.approx((0.25 ** 2 + 2.0 ** 2) / 2)
    assert generator_adv_loss(preds).item() == pytest.approx(real.item())
    # single tensor and a flat list (one scale's features, prediction last)
    assert lsgan_loss(_const(0.5), True).item() == pytest.approx(0.25)
    assert lsgan_loss([_const(9.0, (2, 4, 4, 4)), _const(0.5)], False).item() == pytest.approx(0.25)


def test_discriminator_loss_is_average_of_halves():
    real = [[_const(0.8)], [_const(0.6)]]
    fake = [[_const(0.1)], [_const(0.3)]]
    expect = 0.5 * (((0.2 ** 2 + 0.4 ** 2) / 2) + ((0.1 ** 2 + 0.3 ** 2) / 2))
    assert discriminator_loss(real, fake).item() == pytest.approx(expect)
    # perfect discriminator: zero loss
    assert discriminator_loss([[_const(1.0)]], [[_const(0.0)]]).item() == 0.0


def test_lsgan_mixed_prediction_values():
    p = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 2, 2)
    assert lsgan_loss(p, True).item() == pytest.approx((1 + 0 + 1 + 4) / 4)


def test_lsgan_bad_input():
    with pytest.raises(ValueError):
        lsgan_loss([], True)
    with pytest.raises(ValueError):
        lsgan_loss([[_const(1.0)], [[]]], True)


# ---------------------------------------------------------------------------------------------
# feature matching


def _disc_outputs(vals, pred):
    """Two scales, 3 intermediate features each (constant values) + a prediction."""
    return [[_const(v, (2, 4, 4, 4)) for v in vals[0]] + [_const(pred)],
            [_const(v, (2, 4, 2, 2)) for v in vals[1]] + [_const(pred, (2, 1, 2, 2))]]


def test_feature_matching_zero_for_identical():
    feats = [[torch.randn(2, 4, 4, 4), torch.randn(2, 8, 2, 2), torch.randn(2, 1, 2, 2)]]
    assert feature_matching_loss(feats, [[t.clone() for t in s] for s in feats]).item() == 0.0


def test_feature_matching_hand_computation():
    fake = _disc_outputs([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], pred=5.0)
    real = _disc_outputs([[1.5, 2.0, 1.0], [0.25, -1.0, 0.0]], pred=-5.0)  # prediction ignored
    w = (4.0 / 3) / 2  # (4 / (n_layers + 1)) / num_D with 3 intermediate features, 2 scales
    expect = w * (0.5 + 0.0 + 2.0) + w * (0.25 + 1.0 + 0.0)
    assert feature_matching_loss(fake, real).item() == pytest.approx(expect)
    # one scale given as a flat list: num_D = 1, 2 intermediate features -> weight 2
    f = [_const(1.0), _const(3.0), _const(0.0)]
    r = [_const(0.0), _const(3.5), _const(9.0)]
    assert feature_matching_loss(f, r).item() == pytest.approx(2.0 * (1.0 + 0.5))


def test_feature_matching_real_gets_no_gradient():
    fake = [[torch.randn(2, 4, 4, 4, requires_grad=True), torch.randn(2, 1, 4, 4, requires_grad=True)]]
    real = [[torch.randn(2, 4, 4, 4, requires_grad=True), torch.randn(2, 1, 4, 4, requires_grad=True)]]
    feature_matching_loss(fake, real).backward()
    assert real[0][0].grad is None and real[0][1].grad is None
    assert fake[0][0].grad is not None and fake[0][0].grad.abs().sum() > 0
    assert fake[0][1].grad is None  # the prediction is not matched


def test_feature_matching_structure_mismatch():
    a = [[_const(1.0), _const(1.0)], [_const(1.0), _const(1.0)]]
    with pytest.raises(ValueError):
        feature_matching_loss(a, a[:1])
    with pytest.raises(ValueError):
        feature_matching_loss(a, [[_const(1.0)], [_const(1.0), _const(1.0)]])


# ---------------------------------------------------------------------------------------------
# VGG19


def _random_vgg19_features() -> nn.Sequential:
    layers, c = [], 3
    for v in _CFG_E:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            conv = nn.Conv2d(c, v, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.normal_(conv.bias, std=0.01)
            layers += [conv, nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """A random-initialised VGG19 state dict in torchvision's key layout (features.N.*), plus a
    classifier key that the loader must ignore."""
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in _random_vgg19_features().state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("vgg") / VGG19_FILENAME
    torch.save(state, path)
    return path


def _reference_vgg_loss(state: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Independent functional VGG19 perceptual loss straight from the state dict."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(img):
        h = ((img + 1) / 2 - mean) / std
        out, idx, first_in_block = [], 0, True
        for v in _CFG_E:
            if v == "M":
                h = F.max_pool2d(h, 2)
                first_in_block, idx = True, idx + 1
                continue
            h = F.relu(F.conv2d(h, state[f"features.{idx}.weight"], state[f"features.{idx}.bias"], padding=1))
            if first_in_block:
                out.append(h)  # relu{k}_1
                first_in_block = False
            idx += 2
        return out

    fx, fy = feats(x), feats(y)
    w = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
    return sum(wi * (a - b).abs().mean() for wi, a, b in zip(w, fx, fy))


def test_vgg_missing_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEFLOW_VGG19", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    default = tmp_path / "th" / "hub" / "checkpoints" / VGG19_FILENAME
    assert find_vgg19_weights() is None
    loss = VGG19Loss()
    assert loss.available is False
    assert str(default) in loss.reason and "FACEFLOW_VGG19" in loss.reason
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    out = loss(x, -x)
    assert out.shape == () and out.item() == 0.0
    assert list(loss.parameters()) == []
    explicit = tmp_path / "nope.pth"
    loss2 = VGG19Loss(explicit)
    assert not loss2.available and str(explicit) in loss2.reason


def test_vgg_loads_and_matches_reference(vgg_file, monkeypatch):
    monkeypatch.delenv("FACEFLOW_VGG19", raising=False)
    loss = VGG19Loss(vgg_file)
    assert loss.available and loss.weights_path == vgg_file
    state = torch.load(vgg_file, weights_only=True)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0
    val = loss(x, y)
    assert val.item() > 0
    torch.testing.assert_close(val, _reference_vgg_loss(state, x, y), rtol=1e-4, atol=1e-6)


def test_vgg_env_var_and_torch_home(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("FACEFLOW_VGG19", str(vgg_file))
    assert find_vgg19_weights() == vgg_file
    assert VGG19Loss().available
    # without the env var, the torchvision cache location under TORCH_HOME is found
    monkeypatch.delenv("FACEFLOW_VGG19")
    ckpt = tmp_path / "th" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / VGG19_FILENAME).symlink_to(vgg_file)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert find_vgg19_weights() == ckpt / VGG19_FILENAME
    # an explicit path wins and is not replaced by the fallbacks when missing
    assert find_vgg19_weights(tmp_path / "missing.pth") is None


def test_vgg_frozen_gradient_flows_to_input(vgg_file):
    loss = VGG19Loss(vgg_file)
    loss.train()
    assert not loss.net.training  # stays in eval mode
    assert all(not p.requires_grad for p in loss.parameters())
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    loss(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None  # target detached
    assert all(p.grad is None for p in loss.parameters())


def test_vgg_corrupt_or_wrong_file(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(FaceflowError, match="bad.pth"):
        VGG19Loss(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(FaceflowError, match="wrong.pth"):
        VGG19Loss(wrong)
    shape = tmp_path / "shape.pth"
    torch.save({f"features.{k}": torch.zeros(1) for k in _random_vgg19_features().state_dict()}, shape)
    with pytest.raises(FaceflowError, match="shape.pth"):
        VGG19Loss(shape)


# ---------------------------------------------------------------------------------------------
# temporal


def _shifted_pair(H=16, W=16):
    prev = torch.rand(2, 3, H, W) * 2 - 1
    # current(i, j) = prev(i + 1, j + 2): matches F_{t->t-1} = (2, 1) away from the wrapped border
    cur = torch.roll(prev, shifts=(-1, -2), dims=(2, 3))
    flow = torch.zeros(2, 3, H, W)  # a 3D flow: z is ignored
    flow[:, 0], flow[:, 1], flow[:, 2] = 2.0, 1.0, 5.0
    conf = torch.zeros(2, 1, H, W)
    conf[:, :, : H - 1, : W - 2] = 1.0
    return cur, prev, flow, conf


def test_temporal_zero_when_consistent():
    cur, prev, flow, conf = _shifted_pair()
    assert temporal_warp_loss(cur, prev, flow, conf).item() == pytest.approx(0.0, abs=1e-6)
    # the wrapped border does not match: positive once conf covers it
    assert temporal_warp_loss(cur, prev, flow, torch.ones_like(conf)).item() > 0.01
    # a wrong flow is penalised
    assert temporal_warp_loss(cur, prev, torch.zeros_like(flow), conf).item() > 0.01


def test_temporal_analytic_value():
    cur, prev, flow, conf = _shifted_pair()
    assert temporal_warp_loss(cur + 0.1, prev, flow, conf).item() == pytest.approx(0.1, rel=1e-4)
    # confidence weights: 0.5 on half of the valid pixels offset by 0.3, others offset 0
    off = torch.zeros_like(cur)
    off[..., :8, :] = 0.3
    c = conf.clone()
    c[..., :8, :] *= 0.5
    n_top = c[..., :8, :].sum() * 3
    expect = (0.3 * n_top / (c.sum() * 3)).item()
    assert temporal_warp_loss(cur + off, prev, flow, c).item() == pytest.approx(expect, rel=1e-4)


def test_temporal_zero_conf_keeps_graph():
    cur, prev, flow, _ = _shifted_pair()
    cur = (cur + 1.0).requires_grad_(True)
    out = temporal_warp_loss(cur, prev, flow, torch.zeros(2, 1, 16, 16))
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.equal(cur.grad, torch.zeros_like(cur))


def test_temporal_gradient_and_shapes():
    cur, prev, flow, conf = _shifted_pair()
    cur = (cur + 0.2).requires_grad_(True)
    temporal_warp_loss(cur, prev, flow, conf).backward()
    assert cur.grad[..., : 15, : 14].abs().min() > 0 and cur.grad[..., 15, :].abs().max() == 0
    with pytest.raises(ValueError):
        temporal_warp_loss(cur, prev[:, :2], flow, conf)
    with pytest.raises(ValueError):
        temporal_warp_loss(cur, prev, flow[:, :1], conf)
    with pytest.raises(ValueError):
        temporal_warp_loss(cur, prev, flow, conf.expand(2, 3, 16, 16))
    assert torch.allclose(warp(prev, flow)[..., :15, :14], cur.detach()[..., :15, :14] - 0.2, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# weights


def test_weighted_total_values_and_errors():
    w = LossWeights()
    assert (w.lambda_feat, w.lambda_vgg, w.lambda_mouth, w.lambda_dynamics, w.lambda_temporal) == (10, 10, 1, 1, 10)
    t = torch.tensor
    total = weighted_total({"G_image": t(1.0), "G_feat": t(2.0), "G_temporal": t(3.0), "G_mouth": t(4.0)})
    assert total.item() == pytest.approx(1 + 20 + 30 + 4)
    custom = LossWeights(lambda_mouth=0.5, lambda_vgg=2.0)
    assert weighted_total({"G_mouth": t(4.0), "G_vgg": t(1.0)}, custom).item() == pytest.approx(2 + 2)
    assert weighted_total({"D_image": t(1.0), "D_mouth": t(2.0)}, custom).item() == pytest.approx(2.0)
    with pytest.raises(FaceflowError, match="G_typo"):
        weighted_total({"G_image": t(1.0), "G_typo": t(1.0)})
    with pytest.raises(FaceflowError):
        weighted_total({"G_image": t(1.0), "D_image": t(1.0)})
    with pytest.raises(FaceflowError):
        weighted_total({})
    with pytest.raises(FaceflowError):
        weighted_total({"G_image": torch.ones(2)})


# ---------------------------------------------------------------------------------------------
# face-feature perceptual loss (the shipped DFFNet's feature tower)


def _face_image() -> torch.Tensor:
    """A real still's centre crop, (1, 3, 128, 128) in [-1, 1]."""
    import cv2
    from _media import media

    from faceflow.io import read_image

    img = read_image(media("stills/deepface_img32.jpg"))
    h, w = img.shape[:2]
    s = min(h, w)
    centre = img[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
    crop = cv2.resize(centre, (128, 128), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def _blur(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


def test_face_feature_loss_is_zero_on_the_target_and_grows_with_blur():
    from vid2vid.losses import FaceFeatureLoss

    loss = FaceFeatureLoss()
    y = _face_image()
    assert float(loss(y, y)) == 0.0
    values = [float(loss(_blur(y, k), y)) for k in (3, 5, 9)]
    assert 0 < values[0] < values[1] < values[2], values
    # a blur costs more than a brightness offset of similar L1 (it is the edges that count)
    offset = y + (_blur(y, 9) - y).abs().mean()
    assert float(loss(offset.clamp(-1, 1), y)) < values[2]


def test_face_feature_loss_is_frozen_and_passes_gradients_to_the_input():
    from vid2vid.losses import FaceFeatureLoss

    loss = FaceFeatureLoss().train()
    assert not loss.training and not any(p.requires_grad for p in loss.parameters())
    y = _face_image()
    x = _blur(y, 5).requires_grad_(True)
    loss(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="FaceFeatureLoss"):
        loss(x[:, :2], y[:, :2])


def test_face_feature_loss_refuses_a_file_of_another_kind(tmp_path):
    from faceflow.runtime.assets import WEIGHTS_DIR
    from vid2vid.losses import FaceFeatureLoss

    with pytest.raises(FaceflowError, match="dffnet"):
        FaceFeatureLoss(WEIGHTS_DIR / "meshreg.pt")
    with pytest.raises(FaceflowError):
        FaceFeatureLoss(tmp_path / "absent.pt")
