"""The flow benchmark's precision rows (evaluation.flow_precision): pairs with an exactly known flow
from a still (the image twice; the image and its copy moved by a known in-plane rigid motion)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from _media import media

from evaluation.baselines import OpenCVFlow, ZeroFlow
from evaluation.commands import flow as flow_cmd
from evaluation.flow_precision import evaluate_precision, face_mask, precision_pairs, random_motions, score_flow
from faceflow.face.landmarks import MediapipeDetector
from faceflow.ops.sampling import sample

STILL = "stills/LivePortrait_d12.jpg"


def test_random_motions_are_rigid_bounded_and_reproducible():
    a = random_motions(20, seed=3, centre=(100.0, 80.0), max_shift=4.0, max_angle=3.0)
    assert [m.matrix.tolist() for m in a] == [m.matrix.tolist() for m in random_motions(20, 3, (100.0, 80.0))]
    for m in a:
        assert m.scale == pytest.approx(1.0) and abs(math.degrees(m.angle)) <= 3.0
        # the centre moves by the shift alone: at most 4 px on each axis
        assert np.all(np.abs(m.apply(np.array([[100.0, 80.0]]))[0] - [100.0, 80.0]) <= 4.0 + 1e-9)
    assert len({round(m.angle, 9) for m in a}) == 20


def test_face_mask_matches_a_point_in_polygon_test():
    import cv2

    rng = np.random.default_rng(0)
    pts = rng.uniform(40, 180, (68, 2))
    mask = face_mask(pts, 224)
    hull = cv2.convexHull(pts.astype(np.float32))
    for y, x in rng.integers(0, 224, (300, 2)):
        d = cv2.pointPolygonTest(hull, (x + 0.5, y + 0.5), True)
        if abs(d) > 1e-3:  # off the boundary
            assert mask[y, x] == (d > 0)


@pytest.fixture(scope="module")
def pairs():
    with MediapipeDetector(static_image_mode=True) as det:
        return precision_pairs(media(STILL), motions=3, seed=1, detector=det)


def test_pairs_hold_the_exact_flow(pairs):
    same, moved = pairs[0], pairs[1:]
    assert same.kind == "identical" and torch.equal(same.i1, same.i2) and not same.gt.any()
    assert [p.kind for p in moved] == ["similarity"] * 3 and same.mask.sum() > 10000  # the face fills the crop
    for p in moved:
        gt = p.gt[p.mask]
        assert 0.2 < np.linalg.norm(gt, axis=-1).mean() < 8  # a few pixels
        # I2 sampled at q + F(q) is I1: the flow is the true correspondence (bilinear blur aside)
        back = sample(p.i2[None].double(), torch.from_numpy(_centres() + p.gt)[None])[0]
        err = (back - p.i1.double()).abs().mean(0).numpy()[p.mask]
        assert np.median(err) < 0.01  # of the 0-1 scale


def _centres():
    ys, xs = np.mgrid[0:224, 0:224] + 0.5
    return np.stack([xs, ys], -1)


def test_scores_of_known_flows(pairs):
    p = pairs[1]
    exact = np.concatenate([p.gt, np.zeros((224, 224, 1))], -1)
    s = score_flow(exact, p, dims=3)
    assert s["epe2d"].max() == pytest.approx(0.0, abs=1e-12) and s["absz"].max() == 0
    off = exact.copy()
    off[..., 0] += 0.3
    off[..., 2] = -0.2
    s = score_flow(off, p, dims=3)
    assert np.allclose(s["epe2d"], 0.3) and np.allclose(s["absz"], 0.2)
    assert "absz" not in score_flow(exact[..., :2], p, dims=2)


def test_precision_rows_of_the_baselines():
    rows = evaluate_precision([media(STILL)], [ZeroFlow(), OpenCVFlow("dis")], motions=2, seed=0)["rows"]
    assert rows["zero"]["identical"]["epe2d"] == 0 and rows["zero"]["identical"]["abs_z"] == 0
    assert rows["dis"]["identical"]["epe2d"] == 0  # DIS returns exactly zero on an image and itself
    assert rows["dis"]["similarity"]["epe2d"] < 0.3 * rows["zero"]["similarity"]["epe2d"]
    assert rows["zero"]["similarity"]["pairs"] == 2 and "abs_z" not in rows["dis"]["similarity"]


def test_the_benchmark_command_writes_the_precision_rows(tmp_path):
    out = tmp_path / "o"
    assert flow_cmd.main(["--stills", str(media(STILL)), "--precision-motions", "2", "--methods", "zero", "dis",
                          "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["precision"]["rows"]) == {"zero", "dis"} and len(res["precision"]["pairs"]) == 3
    still = res["config"]["stills"][0]
    assert still.endswith("LivePortrait_d12.jpg") and not still.startswith("/")  # portable
    md = (out / "flow_benchmark.md").read_text()
    assert "## Precision on stills (LivePortrait_d12.jpg)" in md


def test_mask_extent_measures_the_spill_below_the_jaw():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "mask_extent.py"
    spec = importlib.util.spec_from_file_location("mask_extent", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lmk = np.zeros((68, 2))
    lmk[:17, 0] = np.linspace(60, 160, 17)
    lmk[:17, 1] = 140.0  # a flat jaw line at y = 140
    mask = np.zeros((224, 224), bool)
    mask[50:150, 50:170] = True  # lowest row 149: centre 149.5
    d = mod.below_jaw(mask, lmk)
    assert np.allclose(d, 9.5) and len(d) == 96  # columns 62 .. 157 between the jaw ends
    mask[120:150, 100:110] = False  # a notch: those columns end at row 119, above the jaw
    d = mod.below_jaw(mask, lmk)
    assert np.nanmin(d) == pytest.approx(119.5 - 140) and np.nanmax(d) == pytest.approx(9.5)
