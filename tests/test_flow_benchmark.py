"""The flow benchmark (evaluation/flow_benchmark.py, evaluation/baselines.py) on fake
pair-sample contract data with known answers, plus one real video pair for the 3DMM baseline."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import Dataset

from evaluation import flow_benchmark as fb
from evaluation.baselines import FitDifference, OpenCVFlow, ZeroFlow, fit_difference_flow
from evaluation.commands import flow as flow_cmd
from faceflow.data.splits import evenly_spaced
from faceflow.errors import FaceflowError
from faceflow.nets import metrics

S = 224


# ---------------------------------------------------------------------- fake data

def smooth_texture(h: int, w: int, seed: int = 0, sigma: float = 2.5) -> np.ndarray:
    """(h, w, 3) float32 in [0.1, 0.9]: Gaussian-smoothed noise (textured at every scale >= sigma)."""
    rng = np.random.default_rng(seed)
    t = gaussian_filter(rng.standard_normal((h, w, 3)), (sigma, sigma, 0))
    t = (t - t.min()) / (t.max() - t.min())
    return (0.1 + 0.8 * t).astype(np.float32)


def translated_pair(dx: int, dy: int, seed: int = 0, size: int = S, margin: int = 16):
    """I1, I2 (3, size, size) with I1's pixel p moved to p + (dx, dy) in I2 (both views of one
    larger texture), so the true forward flow is (dx, dy) everywhere."""
    big = smooth_texture(size + 2 * margin, size + 2 * margin, seed)
    i1 = big[margin:margin + size, margin:margin + size]
    i2 = big[margin - dy:margin - dy + size, margin - dx:margin - dx + size]  # I2(p + d) = I1(p)
    f = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
    return f(i1), f(i2)


def disk_mask(radius: float, size: int = S) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= radius ** 2


class FakePairs(Dataset):
    """Contract items: translated textures with a constant 3D flow (dx, dy, dz) on a disk mask
    of a per-item radius; pair kinds alternate consecutive / gap (``pair_kind`` attribute)."""

    shifts = [(1, 0, 0.5), (2, -1, -1.0), (0, 3, 2.0), (-2, -2, 0.0), (3, 1, 1.5)]

    def __init__(self, n: int = 5):
        self.n = n
        self.pair_kind = np.arange(n) % 2

    def __len__(self):
        return self.n

    def __getitem__(self, k):
        dx, dy, dz = self.shifts[k % len(self.shifts)]
        i1, i2 = translated_pair(dx, dy, seed=k)
        mask = disk_mask(40 + 10 * k)
        flow = torch.tensor([dx, dy, dz], dtype=torch.float32).expand(S, S, 3) * mask[..., None]
        return {"i1": i1, "i2": i2, "pncc": torch.rand(3, S, S) * mask, "flow": flow.contiguous(), "mask": mask,
                "head_flow": torch.zeros(S, S, 3), "has_head_flow": torch.tensor(False),
                "mesh1": torch.zeros(2713, 3), "mesh2": torch.zeros(2713, 3),
                "identity": torch.tensor(0), "kind": torch.tensor(0)}


class Oracle:
    """Returns the ground truth (a perfect method); counts its calls."""

    name, label, dims, failures = "oracle", "Oracle", 3, 0

    def __init__(self):
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        return batch["flow"].clone()

    def meta(self):
        return {}

    def close(self):
        pass


# ---------------------------------------------------------------------- metrics

def brute_force_aepe(pred, gt, mask, dims):
    """Pixel-pooled and per-pair AEPE with explicit loops (numpy)."""
    pred, gt, mask = pred.numpy().astype(np.float64), gt.numpy().astype(np.float64), mask.numpy()
    total, count, per_pair = 0.0, 0, []
    for b in range(pred.shape[0]):
        s, n = 0.0, 0
        for i in range(pred.shape[1]):
            for j in range(pred.shape[2]):
                if mask[b, i, j]:
                    s += np.sqrt(sum((pred[b, i, j, c] - gt[b, i, j, c]) ** 2 for c in range(dims)))
                    n += 1
        total, count = total + s, count + n
        if n:
            per_pair.append(s / n)
    return total / count, float(np.mean(per_pair))


@pytest.mark.parametrize("dims", [2, 3])
def test_aepe_matches_brute_force(dims):
    g = torch.Generator().manual_seed(dims)
    pred = torch.randn(3, 13, 17, 3, generator=g) * torch.tensor([1.0, 4.0, 12.0])[:, None, None, None]
    gt = torch.randn(3, 13, 17, 3, generator=g) * 4
    mask = torch.rand(3, 13, 17, generator=g) < torch.tensor([0.2, 0.5, 0.9])[:, None, None]
    pooled, pairs = brute_force_aepe(pred, gt, mask, dims)
    assert metrics.aepe(pred, gt, mask, dims, "pixels") == pytest.approx(pooled, rel=1e-9)
    assert metrics.aepe(pred, gt, mask, dims, "pairs") == pytest.approx(pairs, rel=1e-9)
    # the benchmark scores with the very functions training validates with
    assert fb.aepe is metrics.aepe and fb.endpoint_errors is metrics.endpoint_errors
    assert pooled != pytest.approx(pairs, rel=1e-3)  # the two averages differ: masks differ in size


def test_aepe_ignores_off_mask_garbage():
    g = torch.Generator().manual_seed(1)
    pred, gt = torch.randn(2, 20, 20, 3, generator=g), torch.randn(2, 20, 20, 3, generator=g)
    mask = torch.rand(2, 20, 20, generator=g) < 0.4
    clean = metrics.endpoint_errors(pred, gt, mask, 3)
    junk = torch.tensor([float("nan"), float("inf"), 1e9, -1e30])
    idx = torch.randint(0, 4, (2, 20, 20, 3), generator=g)
    pred_g = torch.where(mask[..., None], pred, junk[idx])
    gt_g = torch.where(mask[..., None], gt, junk[idx.flip(-1)])
    dirty = metrics.endpoint_errors(pred_g, gt_g, mask, 3)
    assert torch.equal(dirty[1], clean[1])
    assert torch.allclose(dirty[0], clean[0], rtol=0, atol=0)
    assert np.isfinite(metrics.aepe(pred_g, gt_g, mask, 2))
    # a masked pixel does count: changing one moves the result
    b, i, j = (int(v) for v in torch.nonzero(mask)[0])
    pred_g[b, i, j, 0] += 10
    assert metrics.aepe(pred_g, gt_g, mask) > metrics.aepe(pred, gt, mask)


def test_evenly_spaced_indices():
    idx = evenly_spaced(100, 5)
    assert idx.tolist() == [0, 25, 50, 74, 99] and idx.dtype == np.int64  # round(24.75 k)
    assert np.array_equal(idx, evenly_spaced(100, 5))
    assert evenly_spaced(10, 10).tolist() == list(range(10)) == evenly_spaced(10, None).tolist()
    assert evenly_spaced(10, 50).tolist() == list(range(10)) and evenly_spaced(7, 1).tolist() == [0]
    gaps = np.diff(evenly_spaced(1000, 7))
    assert gaps.max() - gaps.min() <= 1
    with pytest.raises(FaceflowError, match="at least 1"):
        evenly_spaced(10, 0)


# ---------------------------------------------------------------------- 2D baselines and warping

@pytest.mark.parametrize("algorithm", ["dis", "farneback"])
def test_opencv_flow_recovers_translation(algorithm):
    i1, i2 = translated_pair(3, -2, seed=7)
    batch = {"i1": i1[None], "i2": i2[None]}
    pred = OpenCVFlow(algorithm)(batch)
    assert pred.shape == (1, S, S, 3) and torch.isnan(pred[..., 2]).all()
    interior = torch.zeros(1, S, S, dtype=torch.bool)
    interior[:, 24:-24, 24:-24] = True
    gt = torch.tensor([3.0, -2.0, 0.0]).expand(1, S, S, 3)
    assert metrics.aepe(pred, gt, interior, dims=2) < 0.25
    # the sign convention matters: the backward flow would be 7 px off
    assert metrics.aepe(-pred, gt, interior, dims=2) > 5


def test_photometric_error_zero_for_true_translation():
    i1, i2 = translated_pair(3, -2, seed=3)
    mask = disk_mask(80)[None]
    true = torch.tensor([3.0, -2.0]).expand(1, S, S, 2)
    s, n = fb.photometric_error(i1[None], i2[None], true, mask)
    assert n.item() == mask.sum().item()  # every warped position is inside the image
    assert s.item() / n.item() < 1e-3
    s0, n0 = fb.photometric_error(i1[None], i2[None], torch.zeros(1, S, S, 2), mask)
    assert s0.item() / n0.item() > 5  # 0-255 scale: the texture visibly moved


def test_photometric_error_subpixel_on_linear_ramp():
    # bilinear interpolation is exact on an affine image, so a fractional shift warps back exactly
    d = torch.tensor([0.4, -1.3])
    yy, xx = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    ramp = lambda x, y: torch.stack([0.2 + x / 400, 0.3 + y / 500, 0.5 + (x - y) / 1000])
    i1, i2 = ramp(xx, yy), ramp(xx - d[0], yy - d[1])  # I2(p + d) = I1(p)
    mask = disk_mask(90)[None]
    s, n = fb.photometric_error(i1[None], i2[None], d.expand(1, S, S, 2), mask)
    assert s.item() / n.item() < 1e-3
    s0, n0 = fb.photometric_error(i1[None], i2[None], torch.zeros(1, S, S, 2), mask)
    assert s0.item() / n0.item() > 0.2


def test_warp_backward_inside_mask():
    img = torch.rand(1, 3, 16, 16)
    flow = torch.zeros(1, 16, 16, 2)
    flow[..., 0] = 3.0  # x + 3: the three rightmost columns sample beyond the last pixel centre
    warped, inside = fb.warp_backward(img, flow)
    assert inside[0, :, :13].all() and not inside[0, :, 13:].any()
    assert torch.allclose(warped[..., :13], img[..., 3:], atol=1e-6)
    flow[0, 0, 0] = float("nan")
    assert not fb.warp_backward(img, flow)[1][0, 0, 0]


# ---------------------------------------------------------------------- evaluation, tables, resume

def _expected(ds, kinds=None):
    """Independent pooled / per-pair zero-flow AEPE of FakePairs (3D)."""
    s, n, per = 0.0, 0, []
    for k in range(len(ds)):
        if kinds is not None and ds.pair_kind[k] not in kinds:
            continue
        it = ds[k]
        m = int(it["mask"].sum())
        mag = float(np.linalg.norm(FakePairs.shifts[k % 5]))
        s, n = s + mag * m, n + m
        per.append(mag)
    return s / n, float(np.mean(per))


def test_evaluate_summarize_and_tables(tmp_path):
    ds = FakePairs(5)
    methods = [Oracle(), ZeroFlow(), OpenCVFlow("dis")]
    state = fb.open_state(tmp_path, {"test": 1}, overwrite=False)
    recs = fb.evaluate_dataset(ds, methods, "real", None, batch_size=2, photometric=True, state=state,
                               progress=False)
    summary = fb.summarize({"real": recs, "synthetic": recs})
    m = summary["metrics"]
    pooled, per_pair = _expected(ds)
    assert m["zero"]["real"]["all"]["aepe3d"]["pixel_pooled"] == pytest.approx(pooled, rel=1e-6)
    assert m["zero"]["real"]["all"]["aepe3d"]["per_pair"] == pytest.approx(per_pair, rel=1e-6)
    assert m["zero"]["real"]["gap"]["aepe3d"]["pixel_pooled"] == pytest.approx(_expected(ds, {1})[0], rel=1e-6)
    assert m["oracle"]["real"]["all"]["aepe3d"]["pixel_pooled"] == 0
    assert m["dis"]["real"]["all"]["aepe3d"] is None and m["dis"]["real"]["all"]["aepe2d"]["pixel_pooled"] < 0.5
    ph = summary["photometric"]
    assert ph["oracle"]["pairs_used"] == "consecutive" and ph["oracle"]["pairs"] == 3
    assert ph["oracle"]["error"] < 0.05 < 5 < ph["zero"]["error"]
    assert ph["gt_pseudo_flow"]["error"] == pytest.approx(ph["oracle"]["error"])

    # resume: a second run with the same state computes nothing
    calls = methods[0].calls
    fb.evaluate_dataset(ds, methods, "real", None, 2, True, fb.open_state(tmp_path, {"test": 1}, False), False)
    assert methods[0].calls == calls
    with pytest.raises(FaceflowError, match="overwrite"):
        fb.open_state(tmp_path, {"test": 2}, overwrite=False)

    results = {"config": {"device": "cpu", "batch_size": 2},
               "datasets": {d: {"path": "/x", "pairs": 5, "pairs_total": 9, "kinds": {"consecutive": 3, "gap": 2},
                                "clips": None} for d in ("synthetic", "real")},
               "methods": {x.name: {"label": x.label, "dims": x.dims, "meta": x.meta()} for x in methods},
               "skipped": {"dffnet": "no --dffnet weights given"}, "weights": {}, **summary}
    text = fb.format_markdown(results)

    def section(title):
        block = text.split(title, 1)[1].split("\n## ", 1)[0]
        return [ln for ln in block.splitlines() if ln.startswith("|")]

    t1, t2 = section("## Table 1"), section("## Table 2")
    header = [c.strip() for c in t1[0].strip("|").split("|")]
    assert header[0] == "Method" and header[1].startswith("Synthetic test") and header[2].startswith("Real test")
    assert len(header) == 3
    rows1 = {ln.split("|")[1].strip(): ln for ln in t1[2:]}
    rows2 = {ln.split("|")[1].strip(): ln for ln in t2[2:]}
    assert set(rows1) == {"Oracle", "Zero flow"}  # 2D methods only in Table 2
    assert set(rows2) == {"Oracle", "Zero flow", "DIS optical flow (OpenCV, medium)"}
    assert f"{pooled:.3f} ({per_pair:.3f})" in rows1["Zero flow"]
    photo = section("## Photometric check")
    assert any("Ground-truth pseudo-flow" in ln for ln in photo) and len(photo) == 2 + 4
    assert "skipped `dffnet`" in text
    out = tmp_path / "out"
    assert fb.write_outputs(results, out) == text
    assert (out / "flow_benchmark.md").read_text() == text
    assert re.search(r'"pixel_pooled"', (out / "results.json").read_text())


def test_cli_errors_for_missing_or_incomplete_data(tmp_path, capsys):
    out = str(tmp_path / "o")
    assert flow_cmd.main(["--synthetic", str(tmp_path / "missing"), "--methods", "zero", "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "half").mkdir()
    assert flow_cmd.main(["--synthetic", str(tmp_path / "half"), "--methods", "zero", "--out", out]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert flow_cmd.main(["--methods", "zero", "--out", str(tmp_path / "o")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


# ---------------------------------------------------------------------- DFFNet wrapper

@pytest.mark.skipif(importlib.util.find_spec("faceflow.engine.weights") is None,
                    reason="faceflow.engine.weights (save_weights/load_weights) is not available yet")
@pytest.mark.slow
def test_dffnet_methods_with_random_weights(tmp_path, skin_model):
    from faceflow.engine.weights import save_weights
    from faceflow.estimate import FaceFlow
    from faceflow.nets import DFFNet, MeshReg
    from faceflow.render.pncc import pncc

    reg = skin_model.subset("meshreg")
    mean = skin_model.mean[reg.indices].float()
    template = torch.stack([112 + 7 * mean[:, 0], 120 - 7 * mean[:, 1], -7 * mean[:, 2]], 1)  # a face in the crop
    meshreg = MeshReg(len(reg), backbone="resnet18")
    with torch.no_grad():
        meshreg.template.copy_(template)
    paths = {}
    nets = {}
    for key, use in (("dffnet", "full"), ("dffnet_depth", "depth"), ("dffnet_nopncc", "none")):
        nets[key] = DFFNet(use_pncc=use, width=0.125).eval()
        paths[key] = save_weights(nets[key], "dffnet", {"use_pncc": use, "width": 0.125}, tmp_path / f"{key}.pt",
                                  half=False, meta={"test": key})
    paths["meshreg"] = save_weights(meshreg, "meshreg", {"num_vertices": len(reg), "backbone": "resnet18"},
                                    tmp_path / "meshreg.pt", half=False, meta={"test": "meshreg"})
    cfg = fb.BenchmarkConfig(out=str(tmp_path), methods=("dffnet", "dffnet_gt_pncc", "dffnet_depth", "dffnet_nopncc"),
                             **paths)
    methods, skipped = fb.build_methods(cfg, model=skin_model)
    assert [m.name for m in methods] == list(cfg.methods) and not skipped
    ds = FakePairs(2)
    batch = {k: torch.stack([ds[0][k], ds[1][k]]) for k in ds[0]}
    meshreg.eval()
    with torch.no_grad():
        code, mask = pncc(meshreg(batch["i1"]), reg.triangles, (S, S), cull_backfaces=True)
        assert mask.float().mean() > 0.1  # the regressed face covers the crop
        p = code.permute(0, 3, 1, 2)
        want = {"dffnet": nets["dffnet"](batch["i1"], batch["i2"], p)[-1],
                "dffnet_gt_pncc": nets["dffnet"](batch["i1"], batch["i2"], batch["pncc"])[-1],
                "dffnet_depth": nets["dffnet_depth"](batch["i1"], batch["i2"], p)[-1],
                "dffnet_nopncc": nets["dffnet_nopncc"](batch["i1"], batch["i2"], None)[-1]}
    for m in methods:
        out = m(batch)
        assert out.shape == (2, S, S, 3) and torch.isfinite(out).all()
        assert torch.allclose(out, want[m.name].permute(0, 2, 3, 1), atol=1e-4), m.name
        assert m.meta()["weights"]["dffnet" if m.name.startswith("dffnet_gt") else
                                   m.name]["meta"] == {"test": m.name.replace("_gt_pncc", "")}
    assert not torch.allclose(methods[0](batch), methods[1](batch))  # the PNCC source matters
    # every row runs FaceFlow's inference path; without triangles in the 3DMeshReg file (as here)
    # those of the model's 'meshreg' subset are used
    assert all(isinstance(m.flow, FaceFlow) for m in methods)
    assert torch.equal(methods[0].flow.triangles.cpu(), reg.triangles) and methods[3].flow.meshreg is None

    # a 3DMeshReg file carrying triangles (as exported by training): the PNCC is rendered with those
    half = reg.triangles[: len(reg.triangles) // 2]
    p2 = save_weights(meshreg, "meshreg", {"num_vertices": len(reg), "backbone": "resnet18"}, tmp_path / "m2.pt",
                      half=False, meta={"triangles": half.tolist()})
    (m2,), _ = fb.build_methods(fb.BenchmarkConfig(out=str(tmp_path), dffnet=paths["dffnet"], meshreg=p2,
                                                   methods=("dffnet",)))
    assert torch.equal(m2.flow.triangles.cpu(), half)
    with torch.no_grad():
        code2, _ = pncc(meshreg(batch["i1"]), half, (S, S), cull_backfaces=True)
        want2 = nets["dffnet"](batch["i1"], batch["i2"], code2.permute(0, 3, 1, 2))[-1].permute(0, 2, 3, 1)
    assert torch.allclose(m2(batch), want2, atol=1e-4) and not torch.allclose(want2, want["dffnet"].permute(0, 2, 3, 1))

    # a full-PNCC file passed as the depth-only network is refused; no 3DMeshReg: skipped with a note
    bad = fb.BenchmarkConfig(out=str(tmp_path), dffnet_depth=paths["dffnet"], meshreg=paths["meshreg"],
                             methods=("dffnet_depth",))
    with pytest.raises(FaceflowError, match="use_pncc='depth'"):
        fb.build_methods(bad, model=skin_model)
    _, skipped = fb.build_methods(fb.BenchmarkConfig(out=str(tmp_path), dffnet=paths["dffnet"], methods=("dffnet",)),
                                  model=skin_model)
    assert "meshreg" in skipped["dffnet"]


# ---------------------------------------------------------------------- the 3DMM baseline on real frames

@pytest.mark.slow
def test_fit_difference_on_real_consecutive_frames(skin_model):
    from _media import media

    from faceflow import io as vio
    from faceflow.face.correspondence import load_correspondence
    from faceflow.face.landmarks import MediapipeDetector, detect_image
    from faceflow.face.registration import register_image

    frames = list(vio.read_frames(media("videos/EDTalk_uncrop_Obama.mp4"), max_frames=2))
    with MediapipeDetector(static_image_mode=True) as det:
        lmk = detect_image(frames[0], det).lmk68
        i1, _ = register_image(frames[0], lmk)  # both frames in frame 0's registration
        i2, _ = register_image(frames[1], lmk)
        corr = load_correspondence()
        flow, mask, v1, v2 = fit_difference_flow(i1, i2, skin_model, det, corr)
        assert mask.sum() > 8000  # the inner face covers a good part of the 224 crop
        assert torch.isfinite(flow[mask]).all()
        mag = flow[mask][:, :2].norm(dim=-1)
        assert mag.median() < 6 and mag.max() < 12  # consecutive frames move little (the head turns ~1.8 deg)
        # the 2D part agrees with an independent estimate, DIS optical flow, to a few pixels
        dis = OpenCVFlow("dis")({"i1": torch.from_numpy(i1).permute(2, 0, 1)[None] / 255.0,
                                 "i2": torch.from_numpy(i2).permute(2, 0, 1)[None] / 255.0})[0]
        assert (flow[mask][:, :2] - dis[mask][:, :2]).norm(dim=-1).median() < 2.5
        # the same image twice: identical fits, no flow
        same, same_mask, _, _ = fit_difference_flow(i1, i1, skin_model, det, corr)
        assert torch.equal(same_mask, mask) and same.abs().max() == 0

    fd = FitDifference(skin_model, dense=True)
    try:
        t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 255
        batch = {"i1": torch.stack([t(i1), t(i1)]), "i2": torch.stack([t(i2), torch.zeros(3, S, S)]),
                 "mask": torch.stack([mask, mask])}
        out = fd(batch)
        assert fd.failures == 1 and fd.last_failed == [False, True]
        assert out[1].abs().max() == 0  # the failed pair (no face in a black I2) scores zero flow
        assert torch.isfinite(out[0]).all()
        assert torch.allclose(out[0][mask], flow[mask], atol=1e-4)  # covered pixels keep the fitted flow
        assert fd.last_coverage[0] == pytest.approx(1.0)
    finally:
        fd.close()


def test_results_hold_no_absolute_paths_and_hash_the_weights(tmp_path, monkeypatch):
    import hashlib
    import os

    from _portable import assert_portable

    from faceflow.engine.weights import save_weights
    from faceflow.nets import DFFNet

    syn = tmp_path / "data" / "syn"
    syn.mkdir(parents=True)
    (syn / "manifest.json").write_text("{}")
    monkeypatch.setattr(fb, "open_synthetic", lambda p: FakePairs(2))
    (tmp_path / "w").mkdir()
    w = save_weights(DFFNet(width=0.125), "dffnet", {"use_pncc": "full", "width": 0.125}, tmp_path / "w" / "dff.pt",
                     half=False, meta={"run_dir": str(tmp_path / "runs" / "r")})
    out = tmp_path / "bench"
    cfg = fb.BenchmarkConfig(out=str(out), synthetic=str(syn), dffnet=w, methods=("zero", "dffnet_gt_pncc"),
                             batch_size=2)
    fb.write_outputs(fb.run_benchmark(cfg, progress=False, say=lambda m: None), out)
    r = assert_portable(out / "results.json", tmp_path)
    assert r["config"]["synthetic"] == "../data/syn" and r["datasets"]["synthetic"]["path"] == "../data/syn"
    sha = hashlib.sha256(open(w, "rb").read()).hexdigest()
    assert r["weights"]["dffnet"]["path"] == "dff.pt" and r["weights"]["dffnet"]["sha256"] == sha
    assert r["weights"]["dffnet"]["meta"]["run_dir"] == "r"
    assert r["provenance"]["weights"]["dffnet"] == {"file": "dff.pt", "bytes": os.path.getsize(w), "sha256": sha}
    assert str(tmp_path) not in (out / "flow_benchmark.md").read_text()


# ---------------------------------------------------------------------- anyone's footage

@pytest.mark.slow
def test_the_real_table_on_any_annotated_clips(tmp_path, capsys):
    import json

    from _media import media

    from faceflow.annotate.pipeline import AnnotateConfig, annotate

    root = tmp_path / "mine"
    clip = root / "my_own_clip"  # a training person: never in the published (test-person) table
    annotate(media("extra/DPE_d.mp4"), clip, AnnotateConfig(size=128, max_frames=8, previews=0),
             say=lambda m: None)
    (root / "half_done").mkdir()  # an interrupted annotation: no manifest.json

    # the published default keeps to the test persons, and says how to score other clips
    assert flow_cmd.main(["--real-root", str(root), "--methods", "zero", "--out", str(tmp_path / "o0")]) == 2
    assert "--clips" in capsys.readouterr().err

    out = tmp_path / "o1"
    assert flow_cmd.main(["--clips", str(clip), "--methods", "zero", "dis", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    real = res["datasets"]["real"]
    assert real["clips"] == ["my_own_clip"] and real["pairs"] == real["pairs_total"] > 0
    assert res["config"]["clips"] == ["../mine/my_own_clip"]  # portable: relative to OUT
    dis, zero = res["metrics"]["dis"]["real"]["all"], res["metrics"]["zero"]["real"]["all"]
    assert dis["pairs"] == zero["pairs"] == real["pairs"]
    assert res["photometric"]["dis"]["error"] < res["photometric"]["zero"]["error"]  # DIS aligns the frames
    assert "my_own_clip" in (out / "flow_benchmark.md").read_text()

    # every complete annotation under the root: the same clip, the same numbers
    out2 = tmp_path / "o2"
    assert flow_cmd.main(["--real-root", str(root), "--all-clips", "--methods", "zero", "dis", "--out", str(out2)]) == 0
    res2 = json.loads((out2 / "results.json").read_text())
    assert res2["datasets"]["real"]["clips"] == ["my_own_clip"]
    assert res2["metrics"]["dis"]["real"] == res["metrics"]["dis"]["real"]

    # bad requests are named
    for argv, said in ((["--clips", str(root / "half_done")], "incomplete"),
                       (["--clips", str(clip), "--real-root", str(root)], "without --real-root"),
                       (["--all-clips"], "--all-clips needs --real-root"),
                       (["--clips", str(clip), str(clip)], "twice")):
        assert flow_cmd.main([*argv, "--methods", "zero", "--out", str(tmp_path / "o3")]) == 2
        assert said in capsys.readouterr().err


def test_hybrid_takes_xy_from_dis_and_z_from_dffnet():
    from evaluation.flow_methods import HybridMethod

    class _Net:
        weights = {"dffnet": {"sha256": "x"}}

        def __call__(self, batch):
            return torch.full((len(batch["i1"]), S, S, 3), 7.0)

        def meta(self):
            return {"use_pncc": "full"}

        def close(self):
            self.closed = True

    net = _Net()
    h = HybridMethod("dis_dffnet_z", "hybrid", net, OpenCVFlow("dis"))
    g = torch.Generator().manual_seed(0)
    img = torch.from_numpy(gaussian_filter(torch.rand(S, S, generator=g).numpy(), 3)).float()
    i1 = img.expand(3, S, S)[None]
    i2 = torch.roll(i1, shifts=2, dims=-1)  # moved 2 px right
    out = h({"i1": i1, "i2": i2})
    dis = OpenCVFlow("dis")({"i1": i1, "i2": i2})
    assert out.shape == (1, S, S, 3) and h.dims == 3
    assert torch.equal(out[..., :2], dis[..., :2].float()) and (out[..., 2] == 7).all()
    assert h.weights is net.weights and set(h.meta()) == {"xy", "z"}
    h.close()
    assert net.closed


class _PairsWithHeadFlow(FakePairs):
    """FakePairs whose head-motion flow is known (its x, y part; the expression flow: its z) on
    every other pair."""

    def __getitem__(self, k):
        item = super().__getitem__(k)
        item["head_flow"] = item["flow"] * torch.tensor([1.0, 1.0, 0.0])
        item["has_head_flow"] = torch.tensor(k % 2 == 0)
        return item


class _DecomposedOracle(Oracle):
    """The whole flow exact, its head-motion part off by 0.3 px in x (so the expression part too)."""

    name, label = "decomposed", "Decomposed"

    def __call__(self, batch):
        self.last_head_flow = batch["head_flow"] + torch.tensor([0.3, 0.0, 0.0]) * batch["mask"][..., None]
        return super().__call__(batch)


def test_the_parts_of_a_decomposed_flow_are_scored():
    ds = _PairsWithHeadFlow(5)
    recs = fb.evaluate_dataset(ds, [_DecomposedOracle(), ZeroFlow()], "synthetic", None, batch_size=2,
                               progress=False)
    cells = fb.summarize({"synthetic": recs})["metrics"]
    dec = cells["decomposed"]["synthetic"]["all"]
    assert dec["aepe3d"]["pixel_pooled"] == 0
    for part in ("aepe3d_head", "aepe3d_expression"):
        assert dec[part]["pixel_pooled"] == pytest.approx(0.3, abs=1e-6) and dec[part]["pairs"] == 3
    assert dec["aepe3d_head"]["pixels"] == sum(int(ds[k]["mask"].sum()) for k in (0, 2, 4))
    assert "aepe3d_head" not in cells["zero"]["synthetic"]["all"]  # not a decomposed method
    results = {"config": {"device": "cpu", "batch_size": 2},
               "datasets": {"synthetic": {"path": "x", "pairs": 5, "pairs_total": 5, "kinds": None, "clips": None}},
               "methods": {"decomposed": {"label": "Decomposed", "dims": 3, "meta": {}},
                           "zero": {"label": "Zero flow", "dims": 3, "meta": {}}},
               "skipped": {}, "weights": {}, **fb.summarize({"synthetic": recs})}
    text = fb.format_markdown(results)
    assert "## Decomposed flow" in text and "| Decomposed, Synthetic test | 0.300 (0.300) | 0.300 (0.300) |" in text
