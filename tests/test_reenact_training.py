"""The sequential training machinery: flow confidence, windows and split, the curriculum, APD,
train/inference consistency of the sequential generator, loss bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reenact.data import to_signed, to_uint8, window_starts
from reenact.flows import flow_channels, flow_confidence, segment_starts
from reenact.preprocess import split_frames
from reenact.task import apd, seq_len_at
from vid2vid import collector
from vid2vid.discriminators import DiscriminatorConfig, build_discriminators
from vid2vid.generator import Generator, GeneratorConfig
from vid2vid.losses import LossWeights, weighted_total

pytestmark = pytest.mark.usefixtures("one_thread")


def _textured(h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, h, w, generator=g)


def test_flow_confidence_trusts_exact_flow_and_rejects_wrong_flow():
    prev = _textured()
    cur = torch.roll(prev, shifts=2, dims=-1)           # cur[x] = prev[x - 2]
    exact = torch.zeros(1, 2, 32, 32)
    exact[:, 0] = -2.0                                   # F_{t->t-1}: pixel x of t is at x - 2 in t-1
    c = flow_confidence(cur, prev, exact)
    assert c[0, :, 2:].min() == 1.0                      # exact away from the wrapped border columns
    wrong = torch.zeros(1, 2, 32, 32)
    c0 = flow_confidence(cur, prev, wrong)
    assert c0[0, :, 2:].mean() < 0.3                     # random texture: a 2 px error is visible


def test_segment_starts_and_windows_against_brute_force():
    seg = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    assert segment_starts(seg).tolist() == [True, False, False, False, True, False, False, True, False, False,
                                            False, False]
    for lo, hi, L, stride in [(0, 12, 3, 1), (2, 10, 2, 1), (0, 12, 4, 2), (0, 12, 6, 1)]:
        brute = [s for s in range(lo, hi) if s + L <= hi and len(set(seg[s:s + L])) == 1][::1]
        brute = [s for s in brute if (s - lo) % stride == 0]
        assert window_starts(seg, lo, hi, L, stride).tolist() == brute


def test_split_is_two_thirds_and_rejects_tiny_videos():
    s = split_frames(300)
    assert s["train"] == [0, 200] and s["test"] == [200, 300]
    s = split_frames(2)
    assert s["train"][1] == 1 and s["test"] == [1, 2]
    from faceflow.errors import FaceflowError
    with pytest.raises(FaceflowError):
        split_frames(1)


def test_curriculum_doubles_and_caps():
    got = [seq_len_at(s, 3, 12, 10) for s in (0, 9, 10, 19, 20, 30, 1000)]
    assert got == [3, 3, 6, 6, 12, 12, 12]


def test_apd_is_mean_rgb_l2_on_0_255():
    real = torch.zeros(2, 3, 4, 4)
    fake = real.clone()
    fake[:, 0] = 30 / 127.5                       # +30 in R everywhere
    fake[:, 1, :2] = 40 / 127.5                   # +40 in G on the top half
    # top half: sqrt(30^2 + 40^2) = 50, bottom half: 30 -> mean 40
    assert float(apd(fake, real)) == pytest.approx(40.0, rel=1e-5)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1
    assert float(apd(fake, real, mask)) == pytest.approx(50.0, rel=1e-5)


def test_uint8_round_trip():
    x = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8(to_signed(x)), x)


def _tiny_g(composite=False):
    cfg = GeneratorConfig(ngf=4, max_nf=8, n_down=2, enc_blocks=1, dec_blocks=1, composite=composite)
    return Generator(cfg).eval(), cfg


@pytest.mark.parametrize("composite", [False, True])
def test_streaming_inference_equals_sequence_generation(composite):
    G, cfg = _tiny_g(composite)
    cond = torch.rand(1, 5, 6, 16, 16) * 2 - 1
    with torch.no_grad():
        seq, _ = collector.generate(G, cond, cfg.n_frames)
        stream = collector.StreamGenerator(G, cfg.n_frames)
        frames = torch.stack([stream(cond[:, t]) for t in range(5)], 1)
    assert torch.allclose(seq, frames, atol=1e-6)


def test_generation_feeds_back_previous_outputs():
    G, cfg = _tiny_g()
    cond = torch.rand(1, 4, 6, 16, 16) * 2 - 1
    with torch.no_grad():
        a, _ = collector.generate(G, cond, cfg.n_frames)
        b, _ = collector.generate(G, cond, cfg.n_frames, prev=torch.ones(1, 2, 3, 16, 16))
    assert not torch.allclose(a[:, 0], b[:, 0])   # the first frame sees the given previous frames
    # the conditioning window repeats the first frame at the start
    x = collector.frame_inputs(cond, 0, 3)
    assert torch.equal(x, torch.cat([cond[:, 0]] * 3, 1))
    x = collector.frame_inputs(cond, 3, 3)
    assert torch.equal(x, cond[:, 1:4].flatten(1, 2))


def _dset(flow_nc):
    dcfg = DiscriminatorConfig(ndf=4, n_layers=2, num_D=1, flow_nc=flow_nc)
    D = build_discriminators(dcfg)
    return collector.DiscriminatorSet(D["image"], D["mouth"], D["dynamics"], dcfg.temporal_scales)


@pytest.mark.parametrize("T,flow_nc", [(3, 3), (5, 2), (9, 0)])
def test_loss_bookkeeping(T, flow_nc):
    H = 64
    Dset = _dset(flow_nc)
    cond = torch.rand(1, T, 6, H, H) * 2 - 1
    real = torch.rand(1, T, 3, H, H) * 2 - 1
    fake = (torch.rand(1, T, 3, H, H) * 2 - 1).requires_grad_()
    mouth = torch.tensor([20, 30, 38, 48]).expand(1, T, 4)
    flows = torch.randn(1, T, flow_nc, H, H) if flow_nc else None
    conf = torch.ones(1, T, 1, H, H)
    outs = Dset(cond, real, fake.detach(), mouth, flows)
    scales = sum(p is not None for p in outs["dynamics"])
    assert scales == {3: 1, 5: 2, 9: 3}[T]          # k = 1, 2, 4 need 3, 5, 9 frames
    d = collector.discriminator_losses(outs)
    assert set(d) == {"D_image", "D_mouth", "D_dynamics"}
    g = collector.generator_losses(Dset(cond, real, fake, mouth, flows), real, fake, flows, conf, use_l1=True)
    expect = {"G_image", "G_mouth", "G_dynamics", "G_feat", "G_dynamics_feat", "G_l1"}
    if flow_nc >= 2:
        expect.add("G_temporal")
    assert set(g) == expect
    w = LossWeights(lambda_feat=3.0, lambda_temporal=5.0)
    named = {k: v for k, v in g.items() if k != "G_l1"}
    total = weighted_total(named, w)
    table = w.table()
    assert float(total.detach()) == pytest.approx(sum(table[k] * float(v.detach()) for k, v in named.items()), rel=1e-5)
    total.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_flow_channels_and_unknown_provider():
    from faceflow.errors import FaceflowError

    assert [flow_channels(n) for n in ("faceflow3d", "dis2d", "none")] == [3, 2, 0]
    with pytest.raises(FaceflowError, match="flownet2"):
        flow_channels("flownet2")
