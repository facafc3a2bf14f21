"""DFFNet (Sec. 4.2), 3DMeshReg + eq. (4) (Sec. 4.1) and the flow loss eq. (5): shapes, analytic
loss values, masking invariances, gradient flow and determinism (CPU, tiny widths)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.nets.dffnet import DFFNet
from faceflow.nets.losses import default_scale_weights, flow_loss
from faceflow.nets.meshreg import MeshReg, mesh_edges, mesh_loss
from faceflow.nets.modules import count_parameters

SIZES = [4, 7, 14, 28, 56, 112, 224]  # 1/64 ... 1/1 of a 224 input (ceil at odd sizes)


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(b=2, h=224, w=224, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(b, 3, h, w, generator=g) for _ in range(3))


# ------------------------------------------------------------------ DFFNet
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DFFNet("full", width=0.25)


def test_dffnet_tiny_shapes_all_scales(tiny):
    i1, i2, pncc = _inputs()
    out = tiny(i1, i2, pncc)
    assert [tuple(o.shape) for o in out] == [(2, 3, s, s) for s in SIZES]
    assert all(torch.isfinite(o).all() for o in out)


@pytest.mark.parametrize("mode,cin", [("full", 3), ("depth", 1), ("none", 0)])
def test_dffnet_pncc_variants_input_channels(mode, cin):
    net = DFFNet(mode, width=0.25)
    assert net.conv0[0].in_channels == 3 + cin
    if cin:
        assert net.pncc_branch[0][0].in_channels == cin
    else:
        assert net.pncc_branch is None
    i1, i2, pncc = _inputs(b=1, h=96, w=128)
    out = net(i1, i2, None if mode == "none" else pncc)
    assert [tuple(o.shape[-2:]) for o in out] == [(2, 2), (3, 4), (6, 8), (12, 16), (24, 32), (48, 64), (96, 128)]
    if mode == "depth":  # only the z channel of the PNCC is read
        p2 = pncc.clone()
        p2[:, :2] = torch.rand_like(p2[:, :2])
        net.eval()
        with torch.no_grad():
            assert torch.equal(net(i1, i2, pncc)[-1], net(i1, i2, p2)[-1])
            p3 = pncc.clone()
            p3[:, 2] = 1 - p3[:, 2]
            assert not torch.allclose(net(i1, i2, pncc)[-1], net(i1, i2, p3)[-1])
    # the PNCC branch's parameters are part of the count: full > depth > none
    counts = {m: count_parameters(DFFNet(m, 0.25)) for m in ("full", "depth", "none")}
    assert counts["full"] > counts["depth"] > counts["none"]


def test_dffnet_width_one_forward_and_parameter_counts():
    net = DFFNet("full", width=1.0).eval()
    # width 1: 256-channel 1/8 features, 441 correlation channels, 1024 at 1/64
    assert net.conv3[0].out_channels == 256 and net.conv6_1[0].out_channels == 1024
    assert net.conv3_1[0].in_channels == 441 + 32 + 64
    n1, n_tiny = count_parameters(net), count_parameters(DFFNet("full", width=0.25))
    assert 30e6 < n1 < 50e6 and 1e6 < n_tiny < n1 / 8
    i1, i2, pncc = _inputs(b=1)
    with torch.no_grad():
        out = net(i1, i2, pncc)
    assert [tuple(o.shape) for o in out] == [(1, 3, s, s) for s in SIZES]


def test_dffnet_eval_deterministic_and_batch_independent(tiny):
    tiny.eval()
    i1, i2, pncc = _inputs()
    with torch.no_grad():
        a = tiny(i1, i2, pncc)
        b = tiny(i1, i2, pncc)
        single = tiny(i1[1:], i2[1:], pncc[1:])
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    for x, y in zip(a, single):  # sample 1 of the batch does not depend on sample 0
        torch.testing.assert_close(x[1:], y, atol=1e-4, rtol=1e-4)
    # the second image matters (the correlation sees it)
    with torch.no_grad():
        c = tiny(i1, torch.roll(i2, 5, dims=-1), pncc)
    assert not torch.allclose(a[-1], c[-1])


def test_dffnet_gradients_reach_every_parameter():
    torch.manual_seed(1)
    net = DFFNet("full", width=0.25).train()
    i1, i2, pncc = _inputs(b=2, h=96, w=96)
    out = net(i1, i2, pncc)
    gt = torch.randn(2, 96, 96, 3)
    mask = torch.zeros(2, 96, 96, dtype=torch.bool)
    mask[:, 20:80, 15:85] = True
    ys, xs = torch.meshgrid(torch.arange(96) + 0.5, torch.arange(96) + 0.5, indexing="ij")
    pts = torch.stack([xs, ys, torch.full_like(xs, 50.0)], -1).expand(2, 96, 96, 3)
    loss, parts = flow_loss(out, gt, mask, i1=i1, i2=i2, pncc_points=pts, alpha=10.0)
    assert parts["photometric"] > 0
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not (p.grad != 0).any()]
    assert missing == []


def test_dffnet_coarse_flow_upsampling_keeps_full_resolution_units(tiny):
    # every prediction is in full-resolution pixels, so the flow upsamplers start as plain 2x
    # bilinear interpolation: a constant coarse flow keeps its value (it is not doubled)
    flow = torch.tensor([4.0, -2.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 7, 7)
    with torch.no_grad():
        up = DFFNet("none", 0.25).upflow[0](flow)
    assert tuple(up.shape) == (1, 3, 14, 14)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], flow[..., :1, :1].expand(1, 3, 12, 12))


def test_dffnet_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    net = DFFNet("full", width=0.25)
    i1, i2, pncc = _inputs(b=2, h=64, w=64)
    gt = torch.tensor([3.0, -2.0, 1.0]).expand(2, 64, 64, 3)
    mask = torch.zeros(2, 64, 64, dtype=torch.bool)
    mask[:, 10:50, 12:52] = True
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    losses = []
    for _ in range(4):
        loss, _ = flow_loss(net(i1, i2, pncc), gt, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.95 * losses[0]


def test_dffnet_bad_inputs():
    with pytest.raises(FaceflowError):
        DFFNet("rgb")
    with pytest.raises(FaceflowError):
        DFFNet("full", width=0)
    net = DFFNet("full", width=0.25)
    i1, i2, pncc = _inputs(b=1, h=96, w=96)
    with pytest.raises(FaceflowError):
        net(i1, i2, None)  # PNCC required
    with pytest.raises(FaceflowError):
        net(i1, i2[:, :2], pncc)
    with pytest.raises(FaceflowError):
        net(i1[..., :32, :32], i2[..., :32, :32], pncc[..., :32, :32])


# ------------------------------------------------------------------ 3DMeshReg, eq. (4)
def test_meshreg_outputs_template_at_init_and_shapes():
    torch.manual_seed(0)
    V = 2700
    template = torch.rand(V, 3) * 224
    net = MeshReg(V, backbone="resnet18", template=template).eval()
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        y = net(x)
    assert tuple(y.shape) == (2, V, 3)
    assert (y - template).abs().max() < 0.05  # near-zero last layer: offset of a few 1e-2 px at most
    # but not exactly constant: the image reaches the output (gradients can flow)
    net.train()
    out = net(x[..., :112, :112])
    mesh_loss(out, template.expand(2, V, 3), torch.zeros(0, 2, dtype=torch.long)).backward()
    assert net.backbone[0].weight.grad is not None and (net.backbone[0].weight.grad != 0).any()
    assert torch.equal(net.template, template)


@pytest.mark.slow
def test_meshreg_resnet50_and_weights_loading(tmp_path):
    import torchvision

    net = MeshReg(10, backbone="resnet50").eval()
    assert net.head[0].in_channels == 2048 and net.fc.out_features == 30
    with torch.no_grad():
        assert tuple(net(torch.rand(1, 3, 224, 224)).shape) == (1, 10, 3)
    with pytest.raises(AssetNotFoundError):
        MeshReg(10, backbone="resnet18", pretrained_path=tmp_path / "missing.pth")
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    loaded = MeshReg(10, backbone="resnet18", pretrained_path=tmp_path / "r18.pth")
    assert torch.equal(loaded.backbone[0].weight, ref.conv1.weight)
    assert torch.equal(loaded.backbone[7][1].conv2.weight, ref.layer4[1].conv2.weight)
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(FaceflowError):
        MeshReg(10, backbone="resnet18", pretrained_path=tmp_path / "junk.pth")
    with pytest.raises(FaceflowError):
        MeshReg(10, backbone="vgg16")
    with pytest.raises(FaceflowError):
        MeshReg(10, backbone="resnet18", template=torch.zeros(9, 3))


def test_mesh_edges_two_triangles():
    e = mesh_edges(torch.tensor([[0, 1, 2], [2, 1, 3]]))
    assert e.tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]
    with pytest.raises(FaceflowError):
        mesh_edges(torch.zeros(3, 2, dtype=torch.long))


def test_mesh_loss_analytic():
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(2, 4, 3, generator=g) * 100
    edges = mesh_edges(torch.tensor([[0, 1, 2], [2, 1, 3]]))
    assert mesh_loss(gt, gt, edges).item() == 0
    t = torch.tensor([3.0, -4.0, 12.0])  # |t|^2 = 169; pure translation: edge term 0
    assert mesh_loss(gt + t, gt, edges).item() == pytest.approx(169.0, rel=1e-5)
    assert mesh_loss(gt + t, gt, edges, edge_weight=0).item() == pytest.approx(169.0, rel=1e-5)
    s = 1.5  # scaling about the origin: both terms (s-1)^2 * mean squared norms
    a = gt.double().numpy()
    vert = (s - 1) ** 2 * (a ** 2).sum(-1).mean()
    el = np.linalg.norm(a[:, edges[:, 0]] - a[:, edges[:, 1]], axis=-1)
    edge = (s - 1) ** 2 * (el ** 2).mean()
    assert edge > 0
    assert mesh_loss(gt * s, gt, edges).item() == pytest.approx(vert + edge, rel=1e-4)
    assert mesh_loss(gt * s, gt, edges, edge_weight=0).item() == pytest.approx(vert, rel=1e-4)


def test_mesh_edges_and_loss_on_the_meshreg_subset(skin_model):
    sub = skin_model.subset("meshreg")
    e = mesh_edges(sub.triangles)
    tri = sub.triangles.long()
    # brute force: the set of sorted triangle sides
    ref = {tuple(sorted((int(t[a]), int(t[b])))) for t in tri for a, b in ((0, 1), (1, 2), (2, 0))}
    assert {tuple(x) for x in e.tolist()} == ref and len(ref) == e.shape[0]
    verts = skin_model.mean[sub.indices].unsqueeze(0).float()
    t = torch.tensor([1.0, 2.0, 2.0])
    assert mesh_loss(verts + t, verts, e).item() == pytest.approx(9.0, rel=1e-4)
    net = MeshReg(len(sub), backbone="resnet18", template=verts[0])
    assert net.fc.out_features == 3 * len(sub)


# ------------------------------------------------------------------ flow loss, eq. (5)
def _face_mask(b, h, w):
    m = torch.zeros(b, h, w, dtype=torch.bool)
    m[:, h // 5: 4 * h // 5, w // 4: 3 * w // 4] = True
    m[1, :, :] = False
    m[1, 10:40, 30:60] = True
    return m


def test_flow_loss_ignores_masked_out_pixels():
    B, H, W = 2, 64, 64
    g = torch.Generator().manual_seed(4)
    mask = _face_mask(B, H, W)
    gt = torch.randn(B, H, W, 3, generator=g) * 5
    sizes = [1, 2, 4, 8, 16, 32, 64]
    preds = [torch.randn(B, 3, s, s, generator=g) * 5 for s in sizes]
    i1, i2 = torch.rand(B, 3, H, W, generator=g), torch.rand(B, 3, H, W, generator=g)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    pts = torch.stack([xs, ys, torch.full_like(xs, 10.0)], -1).expand(B, H, W, 3).contiguous()
    base, parts = flow_loss(preds, gt, mask, i1=i1, i2=i2, pncc_points=pts)
    assert parts["photometric"] > 0 and torch.isfinite(base)
    gt2 = gt.clone()
    gt2[~mask] = float("inf")  # even non-finite garbage off the face is ignored
    gt2[~mask & (torch.rand(B, H, W, generator=g) > 0.5)] = 1e6
    p2 = [p.clone() for p in preds]
    p2[-1] = torch.where(mask.unsqueeze(1), p2[-1], torch.full_like(p2[-1], -300.0))
    i1b = torch.where(mask.unsqueeze(1), i1, torch.zeros_like(i1))
    other, _ = flow_loss(p2, gt2, mask, i1=i1b, i2=i2, pncc_points=pts)
    assert other.item() == pytest.approx(base.item(), rel=1e-6)
    # but changing a face pixel does change it
    p3 = [p.clone() for p in preds]
    p3[-1][0, :, 30, 30] += 10
    assert flow_loss(p3, gt, mask, i1=i1, i2=i2, pncc_points=pts)[0] != base


def test_flow_loss_epe_constant_offset_and_masked_average():
    B, H, W = 2, 64, 64
    mask = _face_mask(B, H, W)
    v = torch.tensor([2.0, -1.0, 0.5])
    # constant flow on the face, large values in the background that must not bias the face cells
    gt = torch.where(mask.unsqueeze(-1), v.expand(B, H, W, 3), torch.full((B, H, W, 3), 1000.0))
    d = torch.tensor([3.0, 0.0, 4.0])  # |d| = 5
    sizes = [1, 4, 16, 64]
    preds = [(v + d).view(1, 3, 1, 1).expand(B, 3, s, s).clone() for s in sizes]
    w = [0.1, 0.2, 0.3, 1.0]
    total, parts = flow_loss(preds, gt, mask, weights=w)
    for i in range(len(sizes)):
        assert parts[f"epe_{i}"].item() == pytest.approx(5.0, rel=1e-5)
    assert total.item() == pytest.approx(5.0 * sum(w), rel=1e-5)
    assert parts["photometric"].item() == 0  # no images: term skipped
    exact = [v.view(1, 3, 1, 1).expand(B, 3, s, s) for s in sizes]
    assert flow_loss(exact, gt, mask)[0].item() == pytest.approx(0.0, abs=1e-4)
    # non-constant ground truth at full resolution: EPE of pred = gt + d is |d|
    gr = torch.randn(B, H, W, 3)
    assert flow_loss([gr.permute(0, 3, 1, 2) + d.view(1, 3, 1, 1)], gr, mask)[0].item() == pytest.approx(5.0, rel=1e-5)
    assert default_scale_weights(3) == [1.0, 1.0, 1.0]  # w_i = 1 (paper)


def test_flow_loss_photometric_term_translation():
    B, H, W = 1, 48, 64
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    pattern = lambda x, y: torch.stack([torch.sin(x / 3) * 0.5 + 0.5, torch.cos(y / 4) * 0.5 + 0.5,
                                        torch.sin((x + y) / 5) * 0.5 + 0.5])
    i1 = pattern(xs, ys).unsqueeze(0)
    i2 = pattern(xs - 3, ys - 2).unsqueeze(0)  # content moved by (+3, +2) pixels
    pts = torch.stack([xs, ys, torch.full_like(xs, 20.0)], -1).unsqueeze(0)
    mask = torch.zeros(B, H, W, dtype=torch.bool)
    mask[:, 8:40, 8:56] = True
    flow = torch.tensor([3.0, 2.0, 0.0]).view(1, 3, 1, 1).expand(B, 3, H, W)
    gt = flow.permute(0, 2, 3, 1)
    total, parts = flow_loss([flow], gt, mask, i1=i1, i2=i2, pncc_points=pts, alpha=10.0)
    assert parts["photometric"].item() == pytest.approx(0.0, abs=1e-8)
    assert total.item() == pytest.approx(0.0, abs=1e-4)
    zero = torch.zeros_like(flow)
    total0, parts0 = flow_loss([zero], gt, mask, i1=i1, i2=i2, pncc_points=pts, alpha=10.0)
    assert parts0["photometric"] > 0.05
    assert total0.item() == pytest.approx(math.sqrt(13) + 10 * parts0["photometric"].item(), rel=1e-5)
    # alpha = 0 skips the term
    assert flow_loss([zero], gt, mask, i1=i1, i2=i2, pncc_points=pts, alpha=0)[1]["photometric"] == 0


def test_flow_loss_bad_inputs():
    gt = torch.zeros(1, 8, 8, 3)
    mask = torch.ones(1, 8, 8, dtype=torch.bool)
    with pytest.raises(FaceflowError):
        flow_loss([], gt, mask)
    with pytest.raises(FaceflowError):
        flow_loss([torch.zeros(1, 2, 8, 8)], gt, mask)
    with pytest.raises(FaceflowError):
        flow_loss([torch.zeros(1, 3, 8, 8)], gt, mask[:, :4])
    with pytest.raises(FaceflowError):
        flow_loss([torch.zeros(1, 3, 8, 8)], gt, mask, weights=[1.0, 2.0])


def test_dffnet_output_depends_on_the_second_image_through_the_correlation():
    """The cost volume must carry the match: an untrained DFFNet's flow changes when I2 changes,
    and its correlation input is a cosine similarity (bounded by 1, independent of feature scale)."""
    torch.manual_seed(0)
    net = DFFNet(width=0.125).eval()
    i1, p = torch.rand(1, 3, 96, 96), torch.rand(1, 3, 96, 96)
    i2 = torch.roll(i1, shifts=(0, 3), dims=(2, 3))
    with torch.no_grad():
        a, b = net(i1, i2, p)[-1], net(i1, i1, p)[-1]
        assert (a - b).abs().mean() > 1e-3 * (a.abs().mean() + 1e-6)
        with torch.no_grad():
            for prm in (net.conv3[0].weight, net.conv3[0].bias):
                prm.mul_(1e-3)  # shrinking the features does not switch the matching off
        c, d = net(i1, i2, p)[-1], net(i1, i1, p)[-1]
        assert (c - d).abs().mean() > 1e-3 * (c.abs().mean() + 1e-6)


def test_one_device_resolver_and_module_helpers():
    from faceflow.nets.modules import count_parameters, resolve_device, unwrap

    cuda = torch.cuda.is_available()
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"
    assert resolve_device(None).type == resolve_device("auto").type == ("cuda" if cuda else "cpu")
    if cuda:
        assert resolve_device("cuda", local_rank=0) == torch.device("cuda:0")
    else:
        with pytest.raises(FaceflowError, match="no CUDA GPU"):
            resolve_device("cuda")
    lin = torch.nn.Linear(3, 2)
    lin.bias.requires_grad_(False)
    assert count_parameters(lin) == 6 and unwrap(lin) is lin


# ------------------------------------------------------------------ DFFNet with a classical start
def _zero_heads(net: DFFNet) -> DFFNet:
    for head in net.predict:
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    return net


def test_dffnet_dis_init_outputs_the_initial_flow_when_its_residual_is_zero():
    net = DFFNet("full", width=0.25, init="dis").eval()  # the residual heads start at zero
    i1, i2, pncc = _inputs()
    g = torch.Generator().manual_seed(1)
    init = torch.randn(2, 2, 224, 224, generator=g) * 3
    with torch.no_grad():
        out = net(i1, i2, pncc, init)
    assert [tuple(o.shape) for o in out] == [(2, 3, s, s) for s in SIZES]
    torch.testing.assert_close(out[-1][:, :2], init, atol=1e-5, rtol=0)  # full resolution: the flow itself
    assert (out[-1][:, 2] == 0).all()  # z starts at 0
    # coarse scales: the flow averaged over each cell (224 -> 28: 8x8 blocks)
    torch.testing.assert_close(out[3][:, :2], init.view(2, 2, 28, 8, 28, 8).mean((3, 5)), atol=1e-5, rtol=0)
    # the initial flow is an input too: the same net with its heads on depends on it
    torch.manual_seed(0)
    live = DFFNet("full", width=0.25, init="dis").eval()
    for head in live.predict:
        torch.nn.init.normal_(head.weight, std=0.01)
    with torch.no_grad():
        a, b = live(i1, i2, pncc, init)[-1], live(i1, i2, pncc, init + 1.0)[-1]
    assert not torch.allclose(a[:, 2], b[:, 2])
    assert live.conv0[0].in_channels == 3 + 3 + 2


def test_dffnet_init_is_checked():
    i1, i2, pncc = _inputs(1, 64, 64)
    with pytest.raises(FaceflowError, match="needs init_flow"):
        DFFNet("full", width=0.25, init="dis")(i1, i2, pncc)
    with pytest.raises(FaceflowError, match="takes no init_flow"):
        DFFNet("full", width=0.25)(i1, i2, pncc, torch.zeros(1, 2, 64, 64))
    with pytest.raises(FaceflowError, match="init must be one of"):
        DFFNet("full", init="raft")


def test_faceflow_runs_dis_init_weights_end_to_end(tmp_path):
    from faceflow.engine.weights import load_weights, save_weights
    from faceflow.estimate import FaceFlow
    from faceflow.ops.opticalflow import dis_flow

    net = _zero_heads(DFFNet("full", width=0.25, init="dis"))
    path = save_weights(net, "dffnet", {"use_pncc": "full", "width": 0.25, "init": "dis"}, tmp_path / "dis.pt",
                        half=False)
    loaded = load_weights(path)
    assert loaded.init == "dis"
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 240, 240, generator=g), 9, 1)  # smooth, 232 x 232
    i1, i2 = img[..., :224, :224], img[..., 3:227, 2:226]  # i2 is i1 moved by (-2, -3) px
    pncc = torch.full((1, 3, 224, 224), 0.5)
    out = FaceFlow(None, loaded, None, device="cpu").estimate_registered(i1, i2, pncc=pncc)
    want = dis_flow(i1, i2)[0].permute(1, 2, 0)
    torch.testing.assert_close(out["flow"][0, ..., :2], want, atol=1e-4, rtol=0)
    assert (out["flow"][0, ..., 2] == 0).all()
    inner = out["flow"][0, 40:-40, 40:-40, :2]
    assert (inner - torch.tensor([-2.0, -3.0])).norm(dim=-1).median() < 0.2  # DIS finds the motion


def test_dffnet_task_records_init_only_when_used():
    from faceflow.engine.dff_tasks import DFFNetConfig, DFFNetTask

    assert "init" not in DFFNetTask(DFFNetConfig()).config_dict()  # runs made before the option still resume
    task = DFFNetTask(DFFNetConfig(init="dis", width=0.125))
    assert task.config_dict()["init"] == "dis" and task.build_model().init == "dis"
    assert task.export_spec({})["config"]["init"] == "dis"


# ------------------------------------------------------------------ decomposed DFFNet
def test_dffnet_decomposed_flow_is_the_sum_of_its_parts():
    torch.manual_seed(0)
    net = DFFNet("full", width=0.25, decompose=True).eval()
    i1, i2, pncc = _inputs()
    with torch.no_grad():
        flows, heads = net(i1, i2, pncc, parts=True)
        plain = net(i1, i2, pncc)
    assert [tuple(f.shape) for f in flows] == [tuple(h.shape) for h in heads] == [(2, 3, s, s) for s in SIZES]
    assert all(torch.equal(a, b) for a, b in zip(flows, plain))  # parts=True only adds the heads
    # with the heads' weights off, each prediction is its bias: head (1, 2, 3), expression (0.5, 0, -1)
    for p in net.predict:
        torch.nn.init.zeros_(p.weight)
        p.bias.data = torch.tensor([1.0, 2.0, 3.0, 0.5, 0.0, -1.0]) / 20.0
    with torch.no_grad():
        flows, heads = net(i1, i2, pncc, parts=True)
    torch.testing.assert_close(heads[-1][0, :, 10, 10], torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(flows[-1][0, :, 10, 10], torch.tensor([1.5, 2.0, 2.0]))  # head + expression
    with pytest.raises(FaceflowError, match="decompose=True"):
        DFFNet("full", width=0.25)(i1, i2, pncc, parts=True)


def test_decomposed_dffnet_with_a_dis_start_begins_at_dis_with_no_head_motion():
    torch.manual_seed(0)
    net = DFFNet("full", width=0.25, init="dis", decompose=True).eval()
    i1, i2, pncc = _inputs()
    init = torch.randn(2, 2, 224, 224)
    with torch.no_grad():
        flows, heads = net(i1, i2, pncc, init, parts=True)
    torch.testing.assert_close(flows[-1][:, :2], init, atol=1e-5, rtol=0)  # the untrained total is the start
    assert torch.equal(flows[-1][:, 2], torch.zeros(2, 224, 224))
    assert all(torch.equal(h, torch.zeros_like(h)) for h in heads)  # head motion starts at zero
    for p in net.predict:  # with head / expression biases the total is head + expression + start
        p.bias.data = torch.tensor([1.0, 2.0, 3.0, 0.5, 0.0, -1.0]) / 20.0
    with torch.no_grad():
        flows, heads = net(i1, i2, pncc, init, parts=True)
    torch.testing.assert_close(heads[-1][:, :, 10, 10], torch.tensor([1.0, 2.0, 3.0]).expand(2, 3))
    want = torch.tensor([1.5, 2.0, 2.0]).view(1, 3) + torch.cat([init[:, :, 10, 10], torch.zeros(2, 1)], 1)
    torch.testing.assert_close(flows[-1][:, :, 10, 10], want, atol=1e-5, rtol=0)
