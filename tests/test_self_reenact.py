"""Self-reenactment error tables (evaluation.self_reenact): the metrics against hand computations,
LPIPS without its weights, the Table 3 layout, and one real end-to-end run (64 px, 30 frames, 3
training steps, dis2d and no flow) that is resumed without recomputing."""

from __future__ import annotations

import csv
import io
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evaluation import self_reenact as sr
from evaluation.commands import self_reenact as sr_cmd
from faceflow import io as vio
from faceflow.errors import FaceflowError
from tests._media import media

pytestmark = pytest.mark.usefixtures("one_thread")

VIDEO = "videos/EDTalk_uncrop_Obama.mp4"
NAME = "EDTalk_uncrop_Obama"
SIZE, FRAMES, ITERS = 64, 30, 3


def _rot(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _csv(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


# ------------------------------------------------------------------ metrics by hand
def test_apd_mapd_and_mouth_apd_on_constructed_images():
    real = np.zeros((2, 8, 8, 3), np.uint8)
    fake = real.copy()
    fake[0, 1, 2] = (3, 4, 0)     # distance 5 at frame 0, row 1, column 2
    fake[1, 5, 5] = (0, 0, 12)    # distance 12 at frame 1, row 5, column 5
    assert sr.apd(fake, real) == pytest.approx(17 / 128)
    mask = np.zeros((2, 8, 8), bool)
    mask[0, 1, 2] = mask[0, 0, 0] = mask[1, 5, 5] = True
    assert sr.apd(fake, real, mask) == pytest.approx(17 / 3)           # pooled over the 3 mask pixels
    assert math.isnan(sr.apd(fake, real, np.zeros_like(mask)))
    boxes = np.array([[2, 1, 4, 3], [0, 0, 2, 2]])                    # x0, y0, x1, y1 half-open
    assert sr.mouth_apd(fake, real, boxes) == pytest.approx(5 / 8)     # 4 + 4 box pixels, one of them at 5
    clipped = np.array([[-3, -3, 3, 2], [4, 4, 99, 99]])              # 3x2 and 4x4 pixels inside the image
    assert sr.mouth_apd(fake, real, clipped) == pytest.approx(17 / 22)
    em = sr.error_map(fake, real)
    assert em.shape == (8, 8) and em[1, 2] == pytest.approx(2.5) and em[5, 5] == pytest.approx(6) and em.sum() == 8.5
    with pytest.raises(ValueError, match="T, H, W, 3"):
        sr.apd(fake, real[:1])


def test_psnr_of_known_noise_and_ssim_of_identical_frames():
    rng = np.random.default_rng(0)
    real = rng.integers(20, 236, (3, 32, 32, 3)).astype(np.uint8)
    noise = np.where(rng.random(real.shape) < 0.5, -10, 10)
    fake = (real.astype(int) + noise).astype(np.uint8)               # MSE exactly 100
    assert sr.psnr(fake, real) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    assert sr.psnr(real, real) == math.inf
    assert sr.ssim(real, real) == pytest.approx(1.0)
    assert sr.ssim(fake, real) < 0.99


def _still_crop(size=256) -> np.ndarray:
    import cv2
    img = vio.read_image(media("stills/deepface_img32.jpg"))
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def test_grid_score_finds_a_periodic_dot_pattern():
    from evaluation.self_reenact_metrics import grid_score

    real = _still_crop()[None]
    base = grid_score(real)
    assert 0.3 < base < 2.0                                            # a natural image: no lattice peak
    dots = real.astype(np.float64)
    dots[:, ::8, ::8] += 40.0                                          # a faint period-8 dot grid
    assert grid_score(np.clip(dots, 0, 255)) > 5 * base
    shifted = np.roll(np.clip(dots, 0, 255), (3, 5), axis=(1, 2))      # where the grid sits does not matter
    assert grid_score(shifted) == pytest.approx(grid_score(np.clip(dots, 0, 255)), rel=1e-6)
    with pytest.raises(ValueError, match="multiples of 8"):
        grid_score(real[:, :250, :250])


def test_an_untrained_transposed_conv_decoder_shows_the_grid_and_resize_conv_does_not():
    from evaluation.self_reenact_metrics import grid_score
    from vid2vid.generator import Generator, GeneratorConfig
    from vid2vid.generator import presets as g_presets

    scores = {}
    for how in ("transpose", "resize"):
        torch.manual_seed(0)
        g = Generator(GeneratorConfig(**{**g_presets()["tiny"].__dict__, "upsample": how}))
        with torch.no_grad():
            y = g(torch.rand(2, 18, 128, 128) * 2 - 1, torch.rand(2, 6, 128, 128) * 2 - 1)["image"]
        scores[how] = grid_score(((y.permute(0, 2, 3, 1) + 1) * 127.5).numpy())
    assert scores["transpose"] > 5 and scores["resize"] < 2, scores


def test_sharpness_is_one_for_the_real_frames_and_falls_with_blur():
    import cv2

    from evaluation.self_reenact_metrics import sharpness

    real = _still_crop(128)[None]
    assert sharpness(real, real) == pytest.approx(1.0)
    b3, b7 = (cv2.GaussianBlur(real[0], (0, 0), s)[None] for s in (1.0, 2.5))
    assert 0 < sharpness(b7, real) < sharpness(b3, real) < 0.8


def _eyes(T=3):
    lmk = np.zeros((T, 68, 2))
    lmk[:, 36], lmk[:, 39] = (10.0, 50.0), (30.0, 50.0)               # right eye, 20 px wide
    lmk[:, 42], lmk[:, 45] = (60.0, 50.0), (80.0, 50.0)               # left eye
    pup = np.array([[[20.0, 50.0], [70.0, 50.0]]] * T)                # both centred
    return lmk, pup


def test_gaze_offsets_by_hand_and_under_a_similarity():
    from evaluation.self_reenact_metrics import gaze_error, gaze_offsets

    lmk, pup = _eyes()
    assert np.allclose(gaze_offsets(lmk, pup), 0)
    moved = pup.copy()
    moved[:, 0] += (5.0, 2.0)                                         # a quarter eye right, a tenth down
    off = gaze_offsets(lmk, moved)
    assert np.allclose(off[:, 0], (0.25, 0.1)) and np.allclose(off[:, 1], 0)
    assert gaze_error(lmk, moved, lmk, pup) == pytest.approx(100 * np.hypot(0.25, 0.1) / 2)  # mean over both eyes
    # scale, rotate and shift the whole picture: the offsets stay
    th = 0.4
    Rm = 1.7 * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    t = np.array([12.0, -3.0])
    assert np.allclose(gaze_offsets(lmk @ Rm.T + t, moved @ Rm.T + t), off)
    closed = moved.copy()
    closed[:, 1] = np.nan                                              # a closed eye is left out
    assert gaze_error(lmk, closed, lmk, pup) == pytest.approx(100 * np.hypot(0.25, 0.1))


def test_motion_transfer_compares_the_refit_with_what_was_driven():
    from evaluation.cross_reenact import motion_transfer

    T = 5
    rng = np.random.default_rng(0)
    exp = rng.normal(size=(T, 53))
    rot = np.stack([np.eye(3)] * T)
    lmk, pup = _eyes(T)
    drive = SimpleNamespace(params={"exp": exp, "rotation": rot}, frame_index=np.arange(100, 100 + T))
    # the re-fit found frames 1, 2 and 4 of the generated video; expressions off by 0.1 each
    c = np.cos(np.radians(3.0))
    s_ = np.sin(np.radians(3.0))
    tilted = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]])
    gen = SimpleNamespace(frame_index=np.array([1, 2, 4]), exp=exp[[1, 2, 4]] + 0.1, rotation=np.stack([tilted] * 3),
                          lmk68=lmk[:3], pupils=pup[:3] + np.array([[[5.0, 0.0], [0.0, 0.0]]]))
    src = SimpleNamespace(frame_index=np.arange(100, 100 + T), lmk68=lmk, pupils=pup)
    m = motion_transfer(gen, drive, src)
    assert m["frames"] == 3 and m["aed"] == pytest.approx(5.3) and m["ard"] == pytest.approx(3.0)
    assert m["gaze"] == pytest.approx(100 * 0.25 / 2)
    assert np.isnan(motion_transfer(gen, drive)["gaze"])          # face mode: no gaze


def test_rotation_expression_and_eye_landmark_distances():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = q * np.sign(np.linalg.det(q))                                 # a random rotation
    Ra = np.stack([_rot("z", 30) @ R, _rot("x", -45) @ R, R, _rot("y", 180) @ R])
    Rb = np.stack([R, R, R, R])
    assert np.allclose(sr.rotation_difference(Ra, Rb), [30, 45, 0, 180], atol=1e-4)
    assert np.allclose(sr.rotation_difference(Rb, Ra), [30, 45, 0, 180], atol=1e-4)
    assert np.allclose(sr.expression_distance([[1.0, -2.0, 0.5]], [[0.0, 0.0, 0.0]]), [3.5])
    la = rng.normal(size=(2, 68, 2)) * 50
    lb = la.copy()
    lb[:, 36:48] += (3.0, 4.0)                                        # eye points moved by 5 px
    lb[:, :36] += 100.0                                               # other points do not count
    assert np.allclose(sr.eye_landmark_distance(la, lb), [5.0, 5.0])


def _analysis(pts, box, size, index, exp, rot):
    """A fake analysis whose 68 landmarks are the video points ``pts`` (T, 68, 2) seen in ``box``."""
    s = size / box["side"]
    return SimpleNamespace(frame_index=np.asarray(index), exp=np.asarray(exp, np.float32), rotation=np.asarray(rot),
                           lmk68=((pts - (box["x0"], box["y0"])) * s).astype(np.float32), crop_box=box, size=size)


def test_compare_fits_on_common_frames_in_target_pixels():
    rng = np.random.default_rng(2)
    video_pts = rng.uniform(50, 200, (5, 68, 2))                     # analysed-video pixels of frames 0..4
    exp = rng.normal(size=(5, 53))
    rot = np.stack([_rot("y", 10 * k) for k in range(5)])
    gen = _analysis(video_pts[[0, 1, 2, 3]], {"x0": 0.0, "y0": 0.0, "side": 128.0}, 256, [0, 1, 2, 3],
                    exp[[0, 1, 2, 3]] + 0.5, rot[[0, 1, 2, 3]] @ _rot("z", 20))
    moved = video_pts.copy()
    moved[:, 36:48, 0] += 8.0                                         # real eyes 8 video px to the right
    real = _analysis(moved[[1, 2, 3, 4]], {"x0": 10.0, "y0": 20.0, "side": 256.0}, 256, [1, 2, 3, 4],
                     exp[[1, 2, 3, 4]], rot[[1, 2, 3, 4]])
    c = sr.compare_fits(gen, real, scale=4.0)                         # video upscaled 4x from the target crop
    assert c["frames"] == 3
    assert c["aed"] == pytest.approx(53 * 0.5, rel=1e-5)
    assert c["ard"] == pytest.approx(20, abs=1e-3)
    assert c["aeld"] == pytest.approx(2.0, abs=1e-3)                  # 8 analysed px / 4
    none = sr.compare_fits(gen, _analysis(moved[[4]], real.crop_box, 256, [4], exp[[4]], rot[[4]]))
    assert none["frames"] == 0 and math.isnan(none["aed"])


def test_warping_error_is_zero_for_a_perfectly_warped_sequence():
    from vid2vid.warp import warp

    rng = np.random.default_rng(3)
    T, H, W = 4, 16, 16
    flow = np.zeros((T, H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.5, -0.75                          # F_{t->t-1}, sub-pixel
    frames = [rng.uniform(0, 255, (H, W, 3)).astype(np.float32)]
    for t in range(1, T):
        prev = torch.from_numpy(frames[-1]).permute(2, 0, 1)[None]
        f = torch.from_numpy(flow[t]).permute(2, 0, 1)[None]
        frames.append(warp(prev, f)[0].permute(1, 2, 0).numpy())
    frames = np.stack(frames)
    conf = np.ones((T, H, W), np.float32)
    assert sr.warping_error(frames, flow, conf) == pytest.approx(0.0, abs=1e-4)
    bumped = frames.copy()
    bumped[T - 1] += 6.0                                              # only the last pair is off, by 6
    assert sr.warping_error(bumped, flow, conf) == pytest.approx(6.0 / (T - 1), abs=1e-4)
    conf2 = conf.copy()
    conf2[1:T - 1] = 0                                                # untrusted pairs are skipped
    assert sr.warping_error(bumped, flow, conf2) == pytest.approx(6.0, abs=1e-4)
    half = conf.copy()
    half[:, :, W // 2:] = 0                                           # weights restrict the mean to trusted pixels
    bumped[T - 1][:, W // 2:] += 50.0
    assert sr.warping_error(bumped, flow, half) == pytest.approx(6.0 / (T - 1), abs=1e-4)
    assert math.isnan(sr.warping_error(frames, flow, np.zeros_like(conf)))
    assert sr.reference_flow({"faceflow3d": {}, "dis2d": {}}) == "dis2d"
    assert sr.reference_flow({"faceflow3d": {}, "none": {}}) == "faceflow3d" and sr.reference_flow({"none": {}}) is None


# ------------------------------------------------------------------ LPIPS
def test_lpips_without_weights_is_na_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("FACEFLOW_ALEXNET", raising=False)
    lp = sr.LPIPSMetric()
    assert not lp.available
    assert sr.ALEXNET_FILENAME in lp.reason and str(tmp_path / "torch") in lp.reason and "download" in lp.reason
    x = np.zeros((1, 32, 32, 3), np.uint8)
    assert math.isnan(lp(x, x))
    s = sr.score_frames(x, x + 1, mask=np.ones((1, 32, 32), bool), mouth=np.array([[0, 0, 8, 8]]), lpips_metric=lp)
    assert s["metrics"]["lpips"] is None and s["metrics"]["apd"] == pytest.approx(math.sqrt(3))
    assert s["metrics"]["temporal"] is None and s["metrics"]["aed"] is None and s["metrics"]["csim"] is None
    assert len(s["notes"]) == 3 and any(n.startswith("CSIM: n/a") for n in s["notes"])
    assert not tmp_path.joinpath("torch").exists()                   # nothing was downloaded


def test_lpips_loads_a_local_alexnet_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    sd = {}
    for i, shp in shapes.items():
        sd[f"features.{i}.weight"] = torch.randn(shp, generator=g) * 0.05
        sd[f"features.{i}.bias"] = torch.zeros(shp[0])
    torch.save(sd, tmp_path / "alex.pth")
    lp = sr.LPIPSMetric(tmp_path / "alex.pth")
    assert lp.available and lp.reason == ""
    assert torch.equal(getattr(lp.net.net.slice2, "3").weight, sd["features.3.weight"])
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    y = rng.integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    assert lp(x, x) == pytest.approx(0.0, abs=1e-7) and lp(x, y) > 0
    torch.save({"features.0.weight": sd["features.0.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(FaceflowError, match="AlexNet"):
        sr.LPIPSMetric(tmp_path / "bad.pth")


# ------------------------------------------------------------------ tables
def _record(video, method, apd, temporal=None, lpips=None):
    m = {k: None for k in sr.METRICS}
    m.update(apd=apd, ssim=0.5, temporal=temporal, lpips=lpips)
    return {"metrics": m, "frames": 10, "test_range": [20, 30], "reference_flow": "dis2d", "temporal_real": 1.0,
            "lpips_reason": "" if lpips is not None else "no AlexNet file", "notes": [],
            "train": {"step": 3, "elapsed_s": 1.0, "budget": "3 steps", "seed": 0}}


def test_tables_have_the_table3_layout(tmp_path):
    recs = {("vidA", "faceflow3d", 0): _record("vidA", "faceflow3d", 10.0, 2.0),
            ("vidB", "faceflow3d", 0): _record("vidB", "faceflow3d", 20.0, 4.0),
            ("vidA", "dis2d", 0): _record("vidA", "dis2d", 12.0, 3.0)}       # dis2d on vidB missing
    tables = sr.write_tables(tmp_path, recs, ["vidA", "vidB"], ["faceflow3d", "dis2d"])
    rows = _csv(tmp_path / "table.csv")
    assert rows[0] == ["method", "vidA", "vidB", "mean", "vidA std", "vidB std", "mean std"]
    assert [r[0] for r in rows[1:]] == ["faceflow3d", "dis2d"]
    assert [float(x) for x in rows[1][1:4]] == [10.0, 20.0, 15.0] and rows[1][4:] == ["n/a"] * 3  # one seed
    assert rows[2][1:4] == ["12.0", "n/a", "12.0"]                     # mean over the videos it has
    md = (tmp_path / "table.md").read_text()
    assert "| Method (APD ↓) | vidA | vidB | Mean |" in md
    assert md.index("`faceflow3d`") < md.index("`dis2d`")
    assert "| **10.00** | 20.00 | 15.00 |" in md                        # best of its column in bold
    assert "LPIPS n/a: no AlexNet file" in md
    for metric in sr.METRICS:
        assert (tmp_path / "tables" / f"{metric}.md").is_file() and (tmp_path / "tables" / f"{metric}.csv").is_file()
    t = _csv(tmp_path / "tables" / "temporal.csv")
    assert [r[0] for r in t[1:]] == ["faceflow3d", "dis2d", sr.REAL_ROW] and t[3][1:4] == ["1.0", "1.0", "1.0"]
    assert _csv(tmp_path / "tables" / "lpips.csv")[1][1:4] == ["n/a", "n/a", "n/a"]
    assert tables["ssim"][0]["mean"] == 0.5
    assert "no AlexNet file" in (tmp_path / "tables" / "lpips.md").read_text()


def test_seeds_give_mean_std_and_a_paired_comparison(tmp_path):
    from scipy import stats

    a = {("v1", 0): 10.0, ("v1", 1): 11.0, ("v1", 2): 12.5, ("v2", 0): 20.0, ("v2", 1): 19.0, ("v2", 2): 21.0}
    b = {("v1", 0): 10.5, ("v1", 1): 11.2, ("v1", 2): 12.0, ("v2", 0): 21.0, ("v2", 1): 19.5}   # no (v2, 2)
    recs = {(v, "faceflow3d", s): _record(v, "faceflow3d", x) for (v, s), x in a.items()}
    recs.update({(v, "dis2d", s): _record(v, "dis2d", x) for (v, s), x in b.items()})
    sr.write_tables(tmp_path, recs, ["v1", "v2"], ["faceflow3d", "dis2d"])
    row = _csv(tmp_path / "table.csv")[1]
    v1, v2 = [10.0, 11.0, 12.5], [20.0, 19.0, 21.0]
    assert float(row[1]) == pytest.approx(np.mean(v1)) and float(row[4]) == pytest.approx(np.std(v1, ddof=1))
    assert float(row[3]) == pytest.approx((np.mean(v1) + np.mean(v2)) / 2)
    per_seed = [(x + y) / 2 for x, y in zip(v1, v2)]                   # the mean over videos, seed by seed
    assert float(row[6]) == pytest.approx(np.std(per_seed, ddof=1))
    md = (tmp_path / "table.md").read_text()
    assert f"{np.mean(v1):.2f} ± {np.std(v1, ddof=1):.2f}" in md and "seeds: 0, 1, 2" in md
    # paired: the five (video, seed) cells both providers have
    keys = [("v1", 0), ("v1", 1), ("v1", 2), ("v2", 0), ("v2", 1)]
    c = sr.paired_comparison(sr.seed_groups(recs), "apd", "faceflow3d", "dis2d", ["v1", "v2"])
    d = [a[k] - b[k] for k in keys]
    assert c["n"] == 5 and c["mean_diff"] == pytest.approx(np.mean(d))
    assert c["std_diff"] == pytest.approx(np.std(d, ddof=1))
    assert c["a_better"] == 4                                          # lower APD in 4 of the 5 pairs
    assert c["p"] == pytest.approx(stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue)
    assert "## Paired comparison: `faceflow3d` against `dis2d`" in md and "| 4 of 5 |" in md
    paired = _csv(tmp_path / "tables" / "paired.csv")
    assert paired[0][:3] == ["a", "b", "metric"] and ["faceflow3d", "dis2d", "apd"] == paired[1][:3]
    # SSIM is 0.5 everywhere: no difference, no p-value
    s = sr.paired_comparison(sr.seed_groups(recs), "ssim", "faceflow3d", "dis2d", ["v1", "v2"])
    assert s["mean_diff"] == 0 and s["p"] is None


def test_heatmap_image_panels_share_one_scale():
    a = np.zeros((16, 16), np.float32)
    b = np.full((16, 16), 10.0, np.float32)
    img = sr.heatmap_image({"x": a, "y": b}, vmax=10.0, display=32)
    assert img.dtype == np.uint8 and img.shape[1] == 2 * 32 + 2        # two panels and a 2 px gap
    top = 14                                                          # caption band
    pa, pb = img[top + 5, 5].astype(int), img[top + 5, 32 + 2 + 5].astype(int)
    assert pa[2] > 100 and pa[0] < 50                                 # 0 -> blue end of JET
    assert pb[0] > 100 and pb[2] < 50                                 # vmax -> red end
    twice = sr.heatmap_image({"x": a, "y": b}, vmax=20.0, display=32)
    assert pb[1] < 50 and twice[top + 5, 32 + 2 + 5, 1] > 200         # half way up the scale: green


# ------------------------------------------------------------------ end to end on a real clip
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    video = media(VIDEO)
    out = tmp_path_factory.mktemp("selfreenact") / "out"
    argv = [str(video), "--out", str(out), "--flows", "dis2d", "none", "--iterations", str(ITERS), "--size", str(SIZE),
            "--max-frames", str(FRAMES), "--device", "cpu", "--quiet", "--sample-frames", "6"]
    assert sr_cmd.main(argv) == 0
    return out, video, argv


@pytest.mark.slow
def test_end_to_end_tables_figures_and_cells(run_dir):
    out, video, argv = run_dir
    rows = _csv(out / "table.csv")
    assert rows[0] == ["method", NAME, "mean", f"{NAME} std", "mean std"]
    assert [r[0] for r in rows[1:]] == ["dis2d", "none"]
    md = (out / "table.md").read_text()
    assert "`dis2d`" in md and "`none`" in md and "temporal reference flow: dis2d" in md
    manifest = json.loads((out / "data" / NAME / "manifest.json").read_text())
    assert set(manifest["flows"]) == {"dis2d", "none"}
    lo, hi = manifest["split"]["test"]
    for i, flow in enumerate(("dis2d", "none")):
        rec = json.loads((out / "cells" / NAME / flow / "seed0" / "metrics.json").read_text())
        m = rec["metrics"]
        assert rec["test_range"] == [lo, hi] and rec["frames"] == hi - lo == len(rec["per_frame_apd"])
        assert rec["train"]["step"] == ITERS and rec["train"]["status"] == "done" and rec["reference_flow"] == "dis2d"
        assert m["apd"] == pytest.approx(np.mean(rec["per_frame_apd"]))
        assert float(rows[i + 1][1]) == pytest.approx(m["apd"])
        assert 0 < m["apd"] < 255 * math.sqrt(3) and 0 < m["mapd"] and 0 < m["mouth_apd"] and -1 < m["ssim"] < 1
        assert m["temporal"] > rec["temporal_real"] >= 0
        assert -1 <= m["csim"] < 0.95                                 # 3 steps: not the target's face yet
        assert 0 < m["sharpness"] and m["grid"] > 0 and 0 < rec["grid_real"] < 3
        # an untrained generator makes no face: the re-fit metrics are n/a with the reason
        assert (m["aed"] is None) == any("AED/ARD/AELD: n/a" in n for n in rec["notes"])
        em = np.load(out / "cells" / NAME / flow / "seed0" / "error_map.npy")
        assert em.shape == (SIZE, SIZE) and em.mean() == pytest.approx(m["apd"], rel=1e-5)
    assert vio.read_image(out / "heatmaps" / f"{NAME}.png").shape[1] == 3 * 192 + 2 * 2
    info = vio.probe(out / "samples" / f"{NAME}.mp4", exact=True)
    assert info.num_frames == 6 and info.width == 3 * SIZE                    # real | dis2d | none
    cmd = (out / "commands.md").read_text()
    typed = [video.name, "--out", out.name] + argv[3:]  # the words as typed, absolute paths shortened
    assert "python -m evaluation.self_reenact " + " ".join(typed) in cmd
    assert "torch:" in cmd and "git commit" in cmd and "device: cpu" in cmd
    assert str(out.parent) not in cmd and "/work/" not in cmd and "/root/" not in cmd
    # metrics.json: no absolute paths; data and model relative to the cell, the generator's checkpoint hashed
    import hashlib

    from _portable import assert_portable

    from faceflow.runtime.provenance import resolve_recorded
    cell = out / "cells" / NAME / "dis2d" / "seed0"
    rec = assert_portable(cell / "metrics.json", out.parent)
    assert resolve_recorded(rec["data_dir"], cell).resolve() == (out / "data" / NAME).resolve()
    ck = out / "models" / NAME / "dis2d" / "seed0" / "checkpoints" / "last.pt"
    assert rec["provenance"]["weights"]["generator"] == {"file": f"models/{NAME}/dis2d/seed0/checkpoints/last.pt",
                                                         "bytes": ck.stat().st_size,
                                                         "sha256": hashlib.sha256(ck.read_bytes()).hexdigest()}
    assert_portable(cell / "train.json", out.parent)
    assert_portable(out / "data" / NAME / "manifest.json", out.parent)


@pytest.mark.slow
def test_rerun_recomputes_nothing_and_refuses_other_options(run_dir):
    out, video, argv = run_dir
    paths = [out / "cells" / NAME / f / "seed0" / "metrics.json" for f in ("dis2d", "none")]
    ckpt = out / "models" / NAME / "dis2d" / "seed0" / "checkpoints" / "last.pt"
    before = [p.stat().st_mtime_ns for p in paths] + [ckpt.stat().st_mtime_ns]
    table = (out / "table.csv").read_text()
    msgs = []
    res = sr.evaluate([video], out, sr.SelfReenactConfig(iters=ITERS, size=SIZE, max_frames=FRAMES,
                                                         flows=("dis2d", "none"), device="cpu", progress=False,
                                                         sample_frames=6), say=msgs.append)
    assert res["computed"] == [] and set(res["records"]) == {(NAME, "dis2d", 0), (NAME, "none", 0)}
    assert [p.stat().st_mtime_ns for p in paths] + [ckpt.stat().st_mtime_ns] == before
    assert sum("finished earlier" in m for m in msgs) == 2
    assert (out / "table.csv").read_text() == table                    # rebuilt from the same cells
    with pytest.raises(FaceflowError, match="other options"):
        sr.evaluate([video], out, sr.SelfReenactConfig(iters=ITERS + 1, size=SIZE, max_frames=FRAMES,
                                                       flows=("none",), device="cpu", progress=False))


@pytest.mark.slow
def test_another_seed_adds_cells_beside_the_first(run_dir):
    out, video, _ = run_dir
    res = sr.evaluate([video], out, sr.SelfReenactConfig(iters=ITERS, size=SIZE, max_frames=FRAMES, flows=("none",),
                                                         seeds=(0, 1), device="cpu", progress=False, sample_frames=6),
                      say=lambda m: None)
    assert res["computed"] == [(NAME, "none", 1)]                      # seed 0 was there
    r0, r1 = res["records"][(NAME, "none", 0)], res["records"][(NAME, "none", 1)]
    assert r1["seed"] == 1 and r1["train"]["seed"] == 1 and (out / "models" / NAME / "none" / "seed1").is_dir()
    w0 = torch.load(out / "models" / NAME / "none" / "seed0" / "checkpoints" / "last.pt", weights_only=True)
    w1 = torch.load(out / "models" / NAME / "none" / "seed1" / "checkpoints" / "last.pt", weights_only=True)
    assert any(not torch.equal(w0["models"]["G"][k], w1["models"]["G"][k]) for k in w0["models"]["G"])
    rows = {r[0]: r for r in _csv(out / "table.csv")[1:]}
    x = [r0["metrics"]["apd"], r1["metrics"]["apd"]]
    assert float(rows["none"][1]) == pytest.approx(np.mean(x))
    assert float(rows["none"][3]) == pytest.approx(np.std(x, ddof=1))
    assert rows["dis2d"][3] == "n/a"                                   # one seed: no std
    paired = {(r[0], r[1], r[2]): r for r in _csv(out / "tables" / "paired.csv")[1:]}
    assert paired[("dis2d", "none", "apd")][5] == "1"                  # the one (video, seed) both have


@pytest.mark.slow
def test_a_perfect_generator_scores_zero_and_a_shift_is_measured(run_dir, tmp_path):
    out, _, _ = run_dir
    data = out / "data" / NAME
    lo, hi = json.loads((data / "manifest.json").read_text())["split"]["test"]
    d = data / "annotation" / "data"
    real = np.load(d / "crops.npy")[lo:hi]
    kw = dict(mask=np.load(d / "face_mask.npy")[lo:hi], mouth=np.load(data / "mouth.npy")[lo:hi],
              flows=np.load(data / "flows" / "dis2d.npy")[lo:hi],
              conf=np.load(data / "flows" / "dis2d_conf.npy")[lo:hi],
              real_refit_dir=tmp_path / "real")
    s = sr.score_frames(real.copy(), real, refit_dir=tmp_path / "same", **kw)
    m = s["metrics"]
    assert m["apd"] == m["mapd"] == m["mouth_apd"] == 0 and m["psnr"] == math.inf and m["ssim"] == pytest.approx(1)
    assert m["temporal"] == pytest.approx(s["temporal_real"]) and s["fit_frames"] == hi - lo
    assert m["aed"] == pytest.approx(0, abs=1e-6) and m["ard"] == pytest.approx(0, abs=1e-6)
    assert m["aeld"] == pytest.approx(0, abs=1e-6)
    shifted = np.roll(real, 2, axis=2)                                 # the face 2 px to the right
    m2 = sr.score_frames(shifted, real, refit_dir=tmp_path / "shift", **kw)["metrics"]
    assert 1.5 < m2["aeld"] < 2.5 and m2["ard"] < 2 and m2["apd"] > 0


@pytest.mark.slow
def test_a_prepared_data_directory_is_used_in_place(run_dir, tmp_path):
    out, _, _ = run_dir
    data = out / "data" / NAME
    before = (data / "manifest.json").stat().st_mtime_ns
    res = sr.evaluate([data], tmp_path / "o", sr.SelfReenactConfig(iters=1, flows=("none",), device="cpu",
                                                                   progress=False, sample_frames=2),
                      say=lambda m: None)
    rec = res["records"][(NAME, "none", 0)]
    from faceflow.runtime.provenance import resolve_recorded
    cell = tmp_path / "o" / "cells" / NAME / "none" / "seed0"
    assert res["computed"] == [(NAME, "none", 0)] and rec["train"]["step"] == 1
    assert resolve_recorded(rec["data_dir"], cell).resolve() == data.resolve()  # relative to its metrics.json
    assert (data / "manifest.json").stat().st_mtime_ns == before and not (tmp_path / "o" / "data").exists()
    assert [r[0] for r in _csv(tmp_path / "o" / "table.csv")[1:]] == ["none"]


@pytest.mark.slow
def test_minutes_budget_is_shared_by_resumed_runs(run_dir, tmp_path):
    out, _, _ = run_dir
    data = out / "data" / NAME
    cfg = sr.SelfReenactConfig(minutes=1e-6, seeds=(0,), device="cpu", progress=False)
    cell, model = tmp_path / "cell", tmp_path / "model"
    cell.mkdir()
    rec = sr._train_cell(data, model, "none", cell, cfg, "test", lambda m: None)
    assert rec["status"] == "time budget" and rec["step"] == 1 and rec["budget"] == "1e-06 min"
    (cell / "train.json").unlink()                                     # as if killed before the record
    msgs = []
    rec2 = sr._train_cell(data, model, "none", cell, cfg, "test", msgs.append)
    assert rec2["step"] == 1 and any("already used" in m for m in msgs)


def test_bad_inputs(tmp_path):
    cfg = sr.SelfReenactConfig(iters=1, size=SIZE, flows=("none",), device="cpu", progress=False)
    with pytest.raises(FaceflowError, match="not found"):
        sr.evaluate([tmp_path / "missing.mp4"], tmp_path / "o1", cfg)
    with pytest.raises(FaceflowError, match="flow provider"):
        sr.evaluate([media(VIDEO)], tmp_path / "o2", sr.SelfReenactConfig(flows=("flownet2",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceflowError, match="not a prepared target"):
        sr.evaluate([tmp_path / "empty"], tmp_path / "o3", cfg)
    assert sr_cmd.main([str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "o4")]) == 2
    noise = np.random.default_rng(5).integers(0, 256, (6, 64, 64, 3)).astype(np.uint8)
    vio.write_video(tmp_path / "noise.mp4", noise, fps=25)
    with pytest.raises(FaceflowError, match="face"):
        sr.evaluate([tmp_path / "noise.mp4"], tmp_path / "o5", cfg, say=lambda m: None)


def test_out_directory_is_tied_to_its_fixed_options(tmp_path):
    """OUT/config.json (faceflow.io.rundir.RunState): the video order grows run by run; other fixed
    options or another file format are refused with what differs."""
    cfg = sr.SelfReenactConfig(iters=3)
    assert sr._check_out(tmp_path, cfg, ["b", "a"]) == ["b", "a"]
    assert sr._check_out(tmp_path, sr.SelfReenactConfig(iters=3, flows=("none",)), ["c", "a"]) == ["b", "a", "c"]
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored == {"format": sr.FORMAT, "options": cfg.fixed(), "videos": ["b", "a", "c"]}
    with pytest.raises(FaceflowError, match="other options \\(iters: 3 there, 4 now\\)"):
        sr._check_out(tmp_path, sr.SelfReenactConfig(iters=4, seeds=(1,)), ["a"])
    assert sr._check_out(tmp_path, sr.SelfReenactConfig(iters=3, seeds=(0, 1, 2)), ["a"]) == ["b", "a", "c"]
    (tmp_path / "config.json").write_text(json.dumps({"format": "self-reenact/1"}))
    with pytest.raises(FaceflowError, match="older layout 'self-reenact/1'"):
        sr._check_out(tmp_path, cfg, ["a"])
    (tmp_path / "config.json").write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(FaceflowError, match="not a self-reenactment evaluation \\('other/1'\\)"):
        sr._check_out(tmp_path, cfg, ["a"])
