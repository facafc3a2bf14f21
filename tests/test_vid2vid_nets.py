"""Tests of the vid2vid generator (Head2Head++ eq. (7.4)) and its image, mouth and dynamics
discriminators (eq. (7.9)). Tiny widths, 64x64 frames."""

from __future__ import annotations

import itertools
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn as nn

from faceflow.errors import FaceflowError
from faceflow.nets.modules import count_parameters
from vid2vid.discriminators import (
    DiscriminatorConfig,
    DynamicsDiscriminator,
    MultiscaleDiscriminator,
    NLayerDiscriminator,
    build_discriminators,
    dynamics_inputs,
    mouth_boxes,
    mouth_crop,
    mouth_size,
    strided_flows,
    temporal_windows,
)
from vid2vid.discriminators import presets as d_presets
from vid2vid.generator import Generator, GeneratorConfig, _upsample_x2
from vid2vid.generator import presets as g_presets

pytestmark = pytest.mark.usefixtures("one_thread")

S = 64


def tiny_g(**kw) -> Generator:
    cfg = g_presets()["tiny"]
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.__post_init__()
    return Generator(cfg)


def inputs(cfg: GeneratorConfig, B=2, H=S, W=S):
    cond = torch.rand(B, cfg.n_frames * cfg.cond_nc, H, W) * 2 - 1
    prev = torch.rand(B, (cfg.n_frames - 1) * cfg.out_nc, H, W) * 2 - 1
    return cond, prev


# ----------------------------------------------------------------------------- generator

def test_generator_shapes_and_ranges():
    g = tiny_g()
    cond, prev = inputs(g.cfg)
    out = g(cond, prev)
    assert set(out) == {"image"}
    assert out["image"].shape == (2, 3, S, S)
    assert out["image"].abs().max() <= 1

    gc = tiny_g(composite=True)
    out = gc(cond, prev)
    assert set(out) == {"image", "raw", "flow", "mask", "warped"}
    assert out["image"].shape == out["raw"].shape == out["warped"].shape == (2, 3, S, S)
    assert out["flow"].shape == (2, 2, S, S) and out["mask"].shape == (2, 1, S, S)
    assert 0 <= out["mask"].min() and out["mask"].max() <= 1
    # output is the mask blend of warped and raw
    m = out["mask"]
    assert torch.allclose(out["image"], m * out["warped"] + (1 - m) * out["raw"])
    # the flow head starts at zero: warped = last previous frame
    assert torch.equal(out["flow"], torch.zeros_like(out["flow"]))
    assert torch.equal(out["warped"], prev[:, -3:])


def test_generator_bad_sizes():
    g = tiny_g()
    cond, prev = inputs(g.cfg, H=60, W=64)  # 60 not divisible by 2**3
    with pytest.raises(FaceflowError, match="divisible"):
        g(cond, prev)
    cond, prev = inputs(g.cfg)
    with pytest.raises(ValueError, match="cond"):
        g(cond[:, :6], prev)
    with pytest.raises(ValueError, match="prev"):
        g(cond, prev[:, :3])
    with pytest.raises(FaceflowError):
        GeneratorConfig(norm="group")
    with pytest.raises(FaceflowError):
        GeneratorConfig(n_frames=1, composite=True)


def test_composite_mask_one_zero_flow_copies_previous_frame():
    g = tiny_g(composite=True)
    with torch.no_grad():
        g.to_flow[1].weight.zero_()
        g.to_flow[1].bias.zero_()
        g.to_mask[1].weight.zero_()
        g.to_mask[1].bias.fill_(100.0)  # sigmoid(100) == 1 in float32
    cond, prev = inputs(g.cfg)
    out = g(cond, prev)
    assert torch.equal(out["mask"], torch.ones_like(out["mask"]))
    assert torch.equal(out["image"], prev[:, 3:6])  # Y~_{t-1}, the last previous frame

    # an integer flow (dx = 2, dy = -1) shifts the previous frame: out[y, x] = prev[y - 1, x + 2]
    with torch.no_grad():
        g.to_flow[1].bias.copy_(torch.tensor([2.0, -1.0]))
    out = g(cond, prev)
    assert torch.allclose(out["image"][:, :, 1:, :-2], prev[:, 3:6, :-1, 2:], atol=1e-6)

    # mask forced to 0: the raw output alone
    with torch.no_grad():
        g.to_mask[1].bias.fill_(-100.0)
    out = g(cond, prev)
    assert torch.allclose(out["image"], out["raw"], atol=1e-6)


def test_two_separate_encoders_added():
    g = tiny_g()
    assert isinstance(g.cond_encoder, nn.Module) and isinstance(g.prev_encoder, nn.Module)
    assert g.cond_encoder is not g.prev_encoder
    ids_c = {id(p) for p in g.cond_encoder.parameters()}
    ids_p = {id(p) for p in g.prev_encoder.parameters()}
    assert ids_c and ids_p and not ids_c & ids_p
    # same architecture apart from the input channels
    shapes_c = [tuple(p.shape) for p in g.cond_encoder.parameters()][2:]
    shapes_p = [tuple(p.shape) for p in g.prev_encoder.parameters()][2:]
    assert shapes_c == shapes_p
    assert g.cond_encoder.net[0][1].in_channels == 18 and g.prev_encoder.net[0][1].in_channels == 6

    cond, prev = inputs(g.cfg)
    with torch.no_grad():
        full = g(cond, prev)["image"]
        manual = torch.tanh(g.to_image(g.decoder(g.cond_encoder(cond) + g.prev_encoder(prev))))
        assert torch.allclose(full, manual, atol=1e-6)
        # zero the previous-frames encoder's contribution: output = decoder(cond features) alone
        h = g.prev_encoder.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        no_prev = g(cond, prev)["image"]
        h.remove()
        cond_only = torch.tanh(g.to_image(g.decoder(g.cond_encoder(cond))))
    assert torch.allclose(no_prev, cond_only, atol=1e-6)
    assert (no_prev - full).abs().max() > 1e-3

    # gradients reach both encoders
    g(cond, prev)["image"].square().mean().backward()
    for enc in (g.cond_encoder, g.prev_encoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_paper_preset_architecture():
    cfg = g_presets()["paper"]
    g = Generator(cfg)
    convs = [m for m in g.cond_encoder.modules() if isinstance(m, nn.Conv2d)]
    # c64, d128, d256, d512, then R512 x 4 (two convs each)
    assert [c.out_channels for c in convs] == [64, 128, 256, 512] + [512] * 8
    assert [c.kernel_size[0] for c in convs[:4]] == [7, 3, 3, 3]
    assert [c.stride[0] for c in convs[:4]] == [1, 2, 2, 2]
    assert convs[0].in_channels == 18
    assert next(m for m in g.prev_encoder.modules() if isinstance(m, nn.Conv2d)).in_channels == 6
    dec = [m for m in g.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(dec) == 10 + 3  # R512 x 5, then u256, u128, u64 (nearest x2 + 3x3 conv each)
    assert [u.out_channels for u in dec[10:]] == [256, 128, 64] and all(u.kernel_size[0] == 3 for u in dec[10:])
    assert sum(isinstance(m, nn.Upsample) for m in g.decoder.modules()) == 3
    # the thesis' transposed convs: the same shapes and parameter count
    t = Generator(GeneratorConfig(upsample="transpose"))
    ups = [m for m in t.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [u.out_channels for u in ups] == [256, 128, 64] and all(u.stride[0] == 2 for u in ups)
    assert count_parameters(t) == count_parameters(g)
    assert g.to_image[1].kernel_size[0] == 7 and g.to_image[1].out_channels == 3
    n_enc = count_parameters(g.cond_encoder)
    assert count_parameters(g) == n_enc + count_parameters(g.prev_encoder) + count_parameters(g.decoder) \
        + count_parameters(g.to_image)


@pytest.mark.parametrize("how", ["resize", "transpose"])
def test_upsampling_of_a_flat_image_is_flat_only_without_transposed_convs(how):
    # a uniform kernel on a constant image: resize-then-conv gives a constant image (every output
    # pixel sees 9 equal taps), the stride-2 transposed conv the checkerboard (4, 2 or 1 taps by
    # the output pixel's parity)
    layers = nn.Sequential(*_upsample_x2(1, 1, how, bias=False))
    conv = layers[-1]
    with torch.no_grad():
        conv.weight.fill_(1.0)
        y = layers(torch.ones(1, 1, 8, 8))[0, 0]
    assert y.shape == (16, 16)
    inner = y[2:-2, 2:-2]
    if how == "resize":
        assert torch.allclose(y, torch.full_like(y, 9.0))
    else:
        assert set(inner.unique().tolist()) == {1.0, 2.0, 4.0}
        assert inner[0::2, 0::2].eq(inner[0, 0]).all() and inner[0, 0] != inner[1, 1]  # period 2


def test_a_model_saved_before_the_upsample_option_loads_with_transposed_convs():
    old_fields = {k: v for k, v in asdict(g_presets()["tiny"]).items() if k != "upsample"}
    old = Generator(GeneratorConfig(**{**old_fields, "upsample": "transpose"}))
    cfg = GeneratorConfig.from_saved(old_fields)
    assert cfg.upsample == "transpose" and g_presets()["tiny"].upsample == "resize"
    g = Generator(cfg)
    g.load_state_dict(old.state_dict())  # strict: the same layers
    with pytest.raises(RuntimeError):
        Generator(g_presets()["tiny"]).load_state_dict(old.state_dict())
    with pytest.raises(FaceflowError, match="upsample"):
        GeneratorConfig(upsample="bilinear-ish")


# ----------------------------------------------------------------------------- PatchGAN

def conv_out(n, stride):
    return (n + 2 * 2 - 4) // stride + 1


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_nlayer_features(n_layers):
    d = NLayerDiscriminator(9, ndf=8, n_layers=n_layers)
    feats = d(torch.randn(2, 9, S, 48))
    assert len(feats) == n_layers + 2
    h, w = S, 48
    nf = 8
    for i, f in enumerate(feats):
        stride = 2 if i < n_layers else 1
        h, w = conv_out(h, stride), conv_out(w, stride)
        ch = 1 if i == len(feats) - 1 else min(8 * 2 ** i, 512)
        assert f.shape == (2, ch, h, w), (i, f.shape)
        nf = ch
    assert nf == 1


def test_multiscale_shapes_and_pooling():
    d = MultiscaleDiscriminator(9, ndf=8, n_layers=2, num_D=3)
    x = torch.randn(1, 9, S, S)
    out = d(x)
    assert len(out) == 3 and all(len(f) == 4 for f in out)
    for i, feats in enumerate(out):
        n = S // 2 ** i
        for j, f in enumerate(feats):
            n = conv_out(n, 2 if j < 2 else 1)
            assert f.shape[-2:] == (n, n)
        assert feats[-1].shape[:2] == (1, 1)
    # separate weights per scale
    assert d.nets[0].blocks[0][0].weight.data_ptr() != d.nets[1].blocks[0][0].weight.data_ptr()
    # downsampling is 3x3/2 average pooling without padded cells: a constant stays constant
    from vid2vid.discriminators import downsample
    c = torch.full((1, 2, 9, 9), 0.7)
    assert torch.allclose(downsample(c), torch.full((1, 2, 5, 5), 0.7))
    y = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert downsample(y)[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4
    assert downsample(y)[0, 0, 1, 1] == y[0, 0, 1:4, 1:4].mean()


# ----------------------------------------------------------------------------- mouth

def test_mouth_size():
    assert mouth_size(256) == 72 and mouth_size(64) == 18 and mouth_size(512) == 144
    # one rule, halves rounded up: 72 * 80 / 256 = 22.5 -> 23 (Python's round would give 22); the
    # boxes preprocessing stores (reenact.conditioning.mouth_boxes) use it too
    assert mouth_size(80) == 23 and mouth_size(208) == 59
    assert all(mouth_size(s) == int(72 * s / 256 + 0.5) for s in range(16, 2049))
    from reenact.conditioning import mouth_boxes

    lmk = np.zeros((1, 68, 2), np.float32) + 40.0
    for s in (80, 208):
        x0, y0, x1, y1 = mouth_boxes(lmk, s)[0]
        assert x1 - x0 == y1 - y0 == mouth_size(s)


def test_mouth_crop_slices_and_gradients():
    x = torch.randn(2, 9, S, S, requires_grad=True)
    s = mouth_size(S)
    boxes = torch.tensor([[10, 30, 10 + s, 30 + s], [S - s, 0, S, s]], dtype=torch.int64)
    c = mouth_crop(x, boxes)
    assert c.shape == (2, 9, s, s)
    assert torch.equal(c[0], x[0, :, 30:30 + s, 10:10 + s])
    assert torch.equal(c[1], x[1, :, 0:s, S - s:S])
    (c * 2).sum().backward()
    expect = torch.zeros_like(x)
    expect[0, :, 30:30 + s, 10:10 + s] = 2
    expect[1, :, 0:s, S - s:S] = 2
    assert torch.equal(x.grad, expect)
    # and the mouth D runs on it
    d = build_discriminators(d_presets()["tiny"])["mouth"]
    out = d(c)
    assert len(out) == 2 and out[-1][-1].shape[:2] == (2, 1)


@pytest.mark.parametrize("box", [
    [-1, 10, 17, 28],  # leaves left
    [50, 10, 68, 28],  # leaves right
    [10, 50, 28, 68],  # leaves bottom
    [10, 10, 27, 27],  # wrong side (17, expected 18)
    [10, 10, 28, 27],  # not square
])
def test_mouth_crop_bad_boxes(box):
    x = torch.randn(2, 3, S, S)
    good = [0, 0, 18, 18]
    with pytest.raises(FaceflowError, match="box 1"):
        mouth_crop(x, torch.tensor([good, box]))


def test_mouth_crop_bad_box_tensor():
    x = torch.randn(2, 3, S, S)
    with pytest.raises(FaceflowError, match="integer"):
        mouth_crop(x, torch.zeros(2, 4))
    with pytest.raises(FaceflowError, match=r"\(2, 4\)"):
        mouth_crop(x, torch.zeros(1, 4, dtype=torch.int64))


def test_mouth_boxes_inside_image():
    c = torch.tensor([[32.0, 40.0], [2.0, 63.0]])
    b = mouth_boxes(c, S, S)
    s = mouth_size(S)
    assert b.dtype == torch.int64
    assert b.tolist() == [[23, 31, 41, 49], [0, S - s, s, S]]
    mouth_crop(torch.zeros(2, 1, S, S), b)  # valid


# ----------------------------------------------------------------------------- dynamics

@pytest.mark.parametrize("k,count", [(1, 7), (2, 5), (4, 1)])
def test_temporal_windows_brute_force(k, count):
    T = 9
    expect = [w for w in itertools.product(range(T), repeat=3) if w[1] - w[0] == k and w[2] - w[1] == k]
    assert temporal_windows(T, k) == sorted(expect)
    assert len(expect) == count
    assert temporal_windows(4, 2) == [] and temporal_windows(5, 2) == [(0, 2, 4)]


@pytest.mark.parametrize("cf", [2, 3])
@pytest.mark.parametrize("k", [1, 2, 4])
def test_strided_flows_constant_translation(cf, k):
    B, T, H, W = 2, 9, 16, 20
    v = torch.tensor([1.5, -0.75, 0.25][:cf])
    flows = v.view(1, 1, cf, 1, 1).expand(B, T, cf, H, W).clone()
    out = strided_flows(flows, k)
    assert out.shape == flows.shape
    assert torch.equal(out[:, :k], torch.zeros_like(out[:, :k]))
    assert torch.allclose(out[:, k:], (k * v).view(1, 1, cf, 1, 1).expand_as(out[:, k:]), atol=1e-5)


def test_strided_flows_sums_per_frame_translations():
    # F_{t->t-1} = (t, -0.5 t) everywhere, so F_{t->t-k} = sum_{j<k} F_{t-j->t-j-1}
    B, T, H, W = 1, 9, 12, 12
    t = torch.arange(T, dtype=torch.float32)
    flows = torch.stack([t, -0.5 * t], 1).view(1, T, 2, 1, 1).expand(B, T, 2, H, W).clone()
    for k in (2, 4):
        out = strided_flows(flows, k)
        for tt in range(k, T):
            sx = sum(tt - j for j in range(k))
            assert torch.allclose(out[0, tt, 0], torch.full((H, W), float(sx)), atol=1e-4)
            assert torch.allclose(out[0, tt, 1], torch.full((H, W), -0.5 * sx), atol=1e-4)


def test_strided_flows_composes_spatially_varying():
    # F_{t->t-1}(x) = a * x (horizontal, linear in x) -> F_{t->t-2}(x) = a x + a (x + a x)
    H, W, a = 8, 16, 0.05
    xs = torch.arange(W, dtype=torch.float32) + 0.5
    fx = (a * xs).view(1, 1, 1, 1, W).expand(1, 3, 1, H, W)
    flows = torch.cat([fx, torch.zeros(1, 3, 1, H, W)], 2).clone()
    out = strided_flows(flows, 2)
    expect = a * xs + a * (xs + a * xs)
    inner = slice(1, W - 3)  # away from the border clamp
    assert torch.allclose(out[0, 2, 0, 0, inner], expect[inner], atol=1e-5)
    assert torch.allclose(out[0, 2, 1], torch.zeros(H, W))


@pytest.mark.parametrize("cf,channels", [(0, 9), (2, 13), (3, 15)])
def test_dynamics_inputs_channels_and_content(cf, channels):
    B, T, H, W = 2, 9, 16, 16
    frames = torch.randn(B, T, 3, H, W)
    flows = torch.randn(B, T, cf, H, W)
    for k, nW in [(1, 7), (2, 5), (4, 1)]:
        x = dynamics_inputs(frames, flows, k)
        assert x.shape == (B * nW, channels, H, W)
        sf = strided_flows(flows, k) if cf else None
        for b in range(B):
            for w, (t0, t1, t2) in enumerate(temporal_windows(T, k)):
                row = x[b * nW + w]
                assert torch.equal(row[:9], torch.cat([frames[b, t0], frames[b, t1], frames[b, t2]]))
                if cf:
                    assert torch.equal(row[9:], torch.cat([sf[b, t1], sf[b, t2]]))
    if cf == 0:
        assert torch.equal(dynamics_inputs(frames, None, 2), dynamics_inputs(frames, flows, 2))
    assert dynamics_inputs(frames[:, :4], flows[:, :4], 2) is None
    assert dynamics_inputs(frames[:, :4], flows[:, :4], 1).shape[0] == B * 2


def test_dynamics_discriminator_scales():
    cfg = d_presets()["tiny"]
    ds = build_discriminators(cfg)
    assert set(ds) == {"image", "mouth", "dynamics"}
    dd = ds["dynamics"]
    assert isinstance(dd, DynamicsDiscriminator) and len(dd.scales) == 3 and dd.strides == [1, 2, 4]
    assert dd.in_nc == 15
    frames = torch.randn(1, 9, 3, 32, 32)
    flows = torch.randn(1, 9, 3, 32, 32) * 0.5
    for i, nW in enumerate([7, 5, 1]):
        out = dd(dd.inputs(frames, flows, i), i)
        assert len(out) == cfg.num_D
        assert out[0][-1].shape == (nW, 1, 11, 11) and out[1][-1].shape == (nW, 1, 7, 7)
        assert all(len(f) == cfg.n_layers + 2 for f in out)
    with pytest.raises(ValueError):
        dd(torch.randn(1, 15, 32, 32), 3)
    with pytest.raises(ValueError, match="flow channels"):
        dd.inputs(frames, flows[:, :, :2], 0)
    # separate weights per temporal scale
    assert dd.scales[0].nets[0].blocks[0][0].weight.data_ptr() != dd.scales[1].nets[0].blocks[0][0].weight.data_ptr()
    assert DynamicsDiscriminator(0, ndf=8, n_layers=1).in_nc == 9
    assert DynamicsDiscriminator(2, ndf=8, n_layers=1).in_nc == 13
    # image D is conditional on cat(X, Y)
    img = ds["image"](torch.randn(2, 9, S, S))
    assert [f[-1].shape for f in img] == [(2, 1, 19, 19), (2, 1, 11, 11)]


def test_discriminator_presets_and_validation():
    p = d_presets()
    assert (p["paper"].ndf, p["paper"].n_layers, p["paper"].num_D, p["paper"].temporal_scales) == (64, 3, 2, 3)
    assert (p["tiny"].ndf, p["tiny"].n_layers, p["tiny"].num_D, p["tiny"].temporal_scales) == (16, 2, 2, 3)
    with pytest.raises(FaceflowError):
        DiscriminatorConfig(flow_nc=1)
    with pytest.raises(FaceflowError):
        DiscriminatorConfig(norm="layer")
    d = build_discriminators(DiscriminatorConfig(ndf=8, n_layers=1, flow_nc=0))
    assert d["image"].nets[0].in_nc == 9 and d["dynamics"].in_nc == 9


def test_the_fused_resize_conv_equals_upsample_pad_conv_values_and_gradients():
    from vid2vid.generator import nearest_x2_conv3x3

    torch.manual_seed(0)
    up, conv = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1)), nn.Conv2d(5, 7, 3)
    x = torch.randn(2, 5, 6, 9, requires_grad=True)
    ref = conv(up(x))
    fused = nearest_x2_conv3x3(x, conv)
    assert fused.shape == (2, 7, 12, 18) and torch.allclose(fused, ref, atol=1e-5)
    g = torch.randn_like(ref)
    gx_ref, gw_ref = torch.autograd.grad((ref * g).sum(), (x, conv.weight))
    gx, gw = torch.autograd.grad((nearest_x2_conv3x3(x, conv) * g).sum(), (x, conv.weight))
    assert torch.allclose(gx, gx_ref, atol=1e-4) and torch.allclose(gw, gw_ref, atol=1e-4)
    # and inside the decoder: the same output as running its layers one by one
    g = Generator(g_presets()["tiny"]).eval()
    feat = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        assert torch.allclose(g.decoder(feat), g.decoder.net(feat), atol=1e-5)
