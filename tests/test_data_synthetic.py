"""Tests of faceflow.data.synthetic: synthetic pairs with exact 3D flow.

The generator is run on small FAKE annotated clips built here (a few crops, identity,
expressions and cameras per clip, named after real clips of the identity split so that
faceflow.data.splits assigns them), which makes the checks independent of the background
annotation job. Train crops are green, validation crops red and test crops blue, so leakage
across the split shows in the pixels. Checks: ground truth against brute force through the
meshes (nearest front-facing triangle at a pixel centre, its barycentric point on both meshes),
exact special cases, registration, PNCC inversion, texture sampling against a linear colour
ramp, determinism and resumption, and the dataset contract.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from faceflow.data import splits
from faceflow.data import synthetic as syn
from faceflow.errors import FaceflowError
from faceflow.face.registration import estimate_similarity, template_landmarks
from faceflow.geometry.camera import frame_face, project
from faceflow.render import pncc_to_points, rasterize, vertex_normals

CROP = 96  # fake crop size (small: fast texture and background sampling)
N_FRAMES = 5
TRAIN, VAL, TEST = (splits.clips(s)[0] for s in ("train", "val", "test"))
COLOUR = {TRAIN: (40, 170, 50), VAL: (200, 40, 40), TEST: (40, 40, 200)}
EXP_LEVEL = {TRAIN: 0.2, VAL: 0.9, TEST: 0.6}


def make_clip(root: Path, stem: str, geom, rng, crops=None) -> Path:
    """A minimal complete annotated clip: crops, identity, expressions, cameras, manifest."""
    d = root / stem
    (d / "data").mkdir(parents=True)
    ident = rng.normal(0, 0.5, 100).astype(np.float32)
    exp = np.clip(EXP_LEVEL[stem] + rng.normal(0, 0.05, (N_FRAMES, 53)), 0, 1).astype(np.float32)
    ang = np.radians(rng.uniform(-15, 15, (N_FRAMES, 3))).astype(np.float32)
    idc = torch.from_numpy(ident)[None]
    centre = geom.shape(idc, torch.zeros(1, 53))[:, geom.lmk68].mean(1)
    cam = frame_face(centre.expand(N_FRAMES, 3), 22.0, (CROP, CROP), torch.from_numpy(ang), fill=0.75)
    if crops is None:
        base = np.array(COLOUR[stem], np.float32)
        crops = base + rng.normal(0, 6, (N_FRAMES, CROP, CROP, 3))
    arrays = {"crops": np.clip(crops, 0, 255).astype(np.uint8), "id": ident, "exp": exp,
              "camera_rotation": cam.rotation.numpy(), "camera_translation": cam.translation.numpy(),
              "camera_scale": cam.scale.numpy(), "segment": np.zeros(N_FRAMES, np.int32)}
    for k, v in arrays.items():
        np.save(d / "data" / f"{k}.npy", v)
    (d / "manifest.json").write_text(json.dumps({"source": f"/nowhere/{stem}.mp4", "frames_kept": N_FRAMES}))
    return d


@pytest.fixture(scope="module")
def geom(full_model):
    return syn.load_geometry()


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, geom):
    root = tmp_path_factory.mktemp("annotated")
    rng = np.random.default_rng(0)
    for stem in (TRAIN, VAL, TEST):
        make_clip(root, stem, geom, rng)
    (root / "incomplete_clip").mkdir()  # no manifest: ignored
    return root


def small_config(**kw) -> syn.SyntheticConfig:
    base = dict(split="train", num_pairs=6, seed=3, textures=3, previews=1, chunk=2, real_exp_prob=0.6)
    base.update(kw)
    return syn.SyntheticConfig(**base)


@pytest.fixture(scope="module")
def generated(tmp_path_factory, annotated):
    out = tmp_path_factory.mktemp("synth") / "set"
    manifest = syn.generate(out, small_config(), annotated, progress=False, say=lambda m: None)
    return out, manifest


def load_arrays(out: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in sorted((out / "data").glob("*.npy"))}


@pytest.fixture(scope="module")
def gen(annotated, geom):
    return syn.prepare(small_config(), annotated)


# ---------------------------------------------------------------------- brute force

class Mesh:
    """Triangles (F, 3, 3) of an image-space mesh with their screen bounding boxes."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray):
        self.P = verts[tris].astype(np.float64)
        self.lo, self.hi = self.P[:, :, :2].min(1), self.P[:, :, :2].max(1)


def brute_hits(mesh: Mesh, x: float, y: float):
    """All front-facing triangles covering the point (x, y) (image space, y down), nearest
    first: list of (triangle id, barycentrics (3,), depth). Same coverage rule as the
    rasteriser's: inside or on the edges; front-facing = negative signed screen area."""
    P, lo, hi = mesh.P, mesh.lo, mesh.hi
    cand = np.flatnonzero((lo[:, 0] <= x) & (hi[:, 0] >= x) & (lo[:, 1] <= y) & (hi[:, 1] >= y))
    if cand.size == 0:
        return []
    Q = P[cand]
    dx, dy = Q[:, :, 0] - x, Q[:, :, 1] - y
    e = np.stack([dx[:, 1] * dy[:, 2] - dx[:, 2] * dy[:, 1], dx[:, 2] * dy[:, 0] - dx[:, 0] * dy[:, 2],
                  dx[:, 0] * dy[:, 1] - dx[:, 1] * dy[:, 0]], 1)
    e1, e2 = Q[:, 1, :2] - Q[:, 0, :2], Q[:, 2, :2] - Q[:, 0, :2]
    area = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]  # twice the signed screen area
    ok = (area < -1e-12) & (e <= 0).all(1)  # front-facing: area < 0, then all edge functions <= 0
    if not ok.any():
        return []
    w = e[ok] / area[ok, None]
    z = (w * Q[ok, :, 2]).sum(1)
    order = np.argsort(z, kind="stable")
    return [(int(cand[ok][i]), w[i], float(z[i])) for i in order]


def special_pair(gen, k: int, **changes):
    p = replace(gen.params(k), **changes)
    return p, gen.render(p)


# ---------------------------------------------------------------------- ground truth

def test_flow_mask_and_head_flow_match_brute_force_at_high_yaw(gen, geom):
    """At 45 degrees of yaw with a pose and expression change: for sampled pixels, the mask is
    'the nearest front-facing triangle is an inner-face triangle', and flow / head_flow move the
    surface point seen there to the same barycentric point of mesh 2 / the head-motion mesh.
    Pixels around the nose, where the far cheek lies behind it, are included."""
    exp2 = gen.params(1).exp1.copy()
    exp2[26] = min(1.0, exp2[26] + 0.4)  # jawOpen
    p, r = special_pair(gen, 1, pose1=np.array([5.0, 45.0, 3.0], np.float32), exp2=exp2,
                        rot_change=np.array([1.0, 5.0, -2.0], np.float32),
                        trans_change=np.array([2.0, -1.5], np.float32), scale_change=0.03)
    v1, v2, vh = (r["verts"][i].astype(np.float64) for i in range(3))
    tris = geom.triangles.numpy()
    mask, flow, head = r["mask"], r["flow"], r["head_flow"]
    rng = np.random.default_rng(0)
    inside = np.argwhere(mask)
    lo, hi = np.floor(v1[:, :2].min(0)).astype(int).clip(0, 223), np.ceil(v1[:, :2].max(0)).astype(int).clip(0, 223)
    box = np.zeros_like(mask)
    box[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
    covered_out = np.argwhere(~mask & box)  # eyes, mouth, ears, hair, background around the head
    nose = v1[geom.lmk68[30].item(), :2]
    around = np.stack(np.meshgrid(np.arange(-12, 13), np.arange(-12, 13)), -1).reshape(-1, 2)
    px = [tuple(inside[i]) for i in rng.choice(len(inside), 120, replace=False)]
    px += [(int(nose[1]) + dy, int(nose[0]) + dx) for dx, dy in around[rng.choice(len(around), 80, replace=False)]]
    px += [tuple(covered_out[i]) for i in rng.choice(len(covered_out), 80, replace=False)]
    # inner-face pixels hidden by other parts (eyeballs through the lids, teeth before the lips):
    # found with the rasteriser, judged by brute force below
    face_only = rasterize(torch.from_numpy(r["verts"][:1]), geom.triangles[:geom.num_face_triangles], (224, 224),
                          cull_backfaces=True).mask[0].numpy()
    hidden = np.argwhere(face_only & ~mask)
    assert len(hidden) > 0
    px += [tuple(x) for x in hidden[:40]]
    occluded, distinct = 0, 0
    mesh = Mesh(v1, tris)
    for (i, j) in px:
        hits = brute_hits(mesh, j + 0.5, i + 0.5)
        is_face = bool(hits) and hits[0][0] < geom.num_face_triangles
        assert mask[i, j] == is_face, (i, j)
        if not is_face:
            assert np.all(flow[i, j] == 0) and np.all(head[i, j] == 0)
            continue
        t, w, _ = hits[0]
        idx = tris[t]
        pt1 = w @ v1[idx]
        assert abs(pt1[0] - (j + 0.5)) < 1e-3 and abs(pt1[1] - (i + 0.5)) < 1e-3
        np.testing.assert_allclose(pt1 + flow[i, j], w @ v2[idx], atol=2e-3)
        np.testing.assert_allclose(pt1 + head[i, j], w @ vh[idx], atol=2e-3)
        behind = [h for h in hits[1:] if h[0] < geom.num_face_triangles and h[2] > hits[0][2] + 1.0]
        if behind:
            occluded += 1
            tb, wb, _ = behind[-1]
            far_flow = wb @ (v2[tris[tb]] - v1[tris[tb]])
            distinct += np.abs(far_flow - flow[i, j]).max() > 0.05
    assert occluded >= 10 and distinct >= 5  # occlusion by the nose was exercised and mattered


def test_still_pair_has_zero_flow_and_same_expression_gives_head_flow(gen):
    p0 = gen.params(2)
    _, r = special_pair(gen, 2, exp2=p0.exp1.copy(), rot_change=np.zeros(3, np.float32),
                        trans_change=np.zeros(2, np.float32), scale_change=0.0)
    assert r["mask"].sum() > 5000
    np.testing.assert_allclose(r["flow"], 0, atol=1e-3)
    np.testing.assert_allclose(r["head_flow"], 0, atol=1e-3)
    np.testing.assert_allclose(r["mesh2"], r["mesh1"], atol=1e-3)
    # a pure translation change moves every point by it, in template pixels
    _, r = special_pair(gen, 2, exp2=p0.exp1.copy(), rot_change=np.zeros(3, np.float32),
                        trans_change=np.array([3.0, -2.0], np.float32), scale_change=0.0)
    np.testing.assert_allclose(r["flow"][r["mask"]], np.tile([3.0, -2.0, 0.0], (int(r["mask"].sum()), 1)), atol=1e-3)
    _, r = special_pair(gen, 2, exp2=p0.exp1.copy(), rot_change=np.array([0.0, 4.0, 1.0], np.float32))
    assert np.abs(r["flow"][r["mask"]]).max() > 1.0
    # frame 2 and the head-motion mesh are different rows of batched shape/projection ops: equal
    # only up to float32 rounding (kernel-dependent), far below the 1e-3 px used above
    np.testing.assert_allclose(r["flow"], r["head_flow"], rtol=0, atol=1e-4)
    _, r = special_pair(gen, 2, exp2=np.clip(p0.exp1 + 0.3, 0, 1).astype(np.float32))
    diff = np.abs(r["flow"] - r["head_flow"])[r["mask"]]
    assert diff.max() > 0.5  # an expression change is not head motion


def test_head_is_closed_eyes_and_mouth_never_show_the_background(gen, geom):
    """With the eyes and the mouth wide open, at several poses, the rendered head's coverage
    has no holes (eyeballs, teeth and mouth socket fill the openings)."""
    from scipy.ndimage import binary_fill_holes

    exp = np.zeros(53, np.float32)
    for name, w in (("jawOpen", 1.0), ("eyeWide_L", 1.0), ("eyeWide_R", 1.0), ("mouthFunnel", 0.5)):
        exp[syn_exp_index(name)] = w
    for pose in ((0.0, 0.0, 0.0), (20.0, -40.0, 10.0), (-25.0, 30.0, -10.0)):
        _, r = special_pair(gen, 0, exp1=exp, exp2=exp, pose1=np.array(pose, np.float32))
        cover = rasterize(torch.from_numpy(r["verts"][:2]), geom.triangles, (224, 224), cull_backfaces=True).mask
        for c in cover.numpy():
            assert c.sum() > 10000
            assert np.array_equal(binary_fill_holes(c), c), pose


def syn_exp_index(name: str) -> int:
    from faceflow.geometry.morphable import MorphableModel

    return MorphableModel.load("skin").exp_names.index(name)


def test_registration_mesh_subset_and_pncc(gen, geom):
    """Frame 1's 68 landmarks are already optimally aligned to the template (the fitted
    similarity from them to the template is the identity); mesh1/mesh2 are the 'meshreg'
    vertices of the render meshes; PNCC inverts to the rasterised 'meshreg' surface and lies
    close to the full head's visible surface inside the mask."""
    p, r = special_pair(gen, 3, pose1=np.array([-10.0, 30.0, 8.0], np.float32))
    v1 = r["verts"][0]
    lmk = v1[geom.lmk68.numpy(), :2]
    fit = estimate_similarity(lmk, template_landmarks(224))
    np.testing.assert_allclose(fit.matrix, np.eye(2, 3), atol=1e-4)
    assert np.abs(lmk - template_landmarks(224)).max() > 1  # (a turned head does not fit the template exactly)
    np.testing.assert_array_equal(r["mesh1"], v1[geom.meshreg_idx.numpy()])
    np.testing.assert_array_equal(r["mesh2"], r["verts"][1][geom.meshreg_idx.numpy()])
    assert r["mesh1"].shape == (2713, 3)

    code = torch.from_numpy(r["pncc"].astype(np.float16).astype(np.float32))[None]
    pts = pncc_to_points(code, (224, 224))[0].numpy()
    frags = rasterize(torch.from_numpy(r["mesh1"])[None], geom.meshreg_triangles, (224, 224), cull_backfaces=True)
    m = frags.mask[0].numpy()
    assert m.sum() > 5000 and np.all(r["pncc"][~m] == 0)
    ii, jj = np.nonzero(m)
    np.testing.assert_allclose(pts[m][:, 0], jj + 0.5, atol=0.15)
    np.testing.assert_allclose(pts[m][:, 1], ii + 0.5, atol=0.15)
    np.testing.assert_allclose(pts[m][:, 2], frags.depth[0].numpy()[m], atol=0.25)
    # against the full head's z-buffer: the decimated mesh is close to the dense surface
    full = rasterize(torch.from_numpy(v1)[None], geom.triangles, (224, 224), cull_backfaces=True)
    both = r["mask"] & m
    dz = np.abs(full.depth[0].numpy()[both] - pts[both][:, 2])
    assert both.sum() > 5000 and np.median(dz) < 0.5 and np.percentile(dz, 95) < 2.0


def test_texture_sampling_reads_visible_vertices(geom):
    """On a linear colour ramp (R = x / S, G = y / S) bilinear sampling is exact, so every seen
    vertex's colour encodes where it projects; seen vertices face the camera and nothing is in
    front of them; the fill of unseen vertices stays within the seen colours."""
    S = 128
    yy, xx = np.mgrid[0:S, 0:S] + 0.5
    crop = np.stack([xx / S * 255, yy / S * 255, np.full_like(xx, 128)], -1).round().astype(np.uint8)
    ident = np.random.default_rng(1).normal(0, 0.7, 100).astype(np.float32)
    exp = np.zeros(53, np.float32)
    exp[26] = 0.4
    idc = torch.from_numpy(ident)[None]
    centre = geom.shape(idc, torch.zeros(1, 53))[:, geom.lmk68].mean(1)
    cam = frame_face(centre, 22.0, (S, S), torch.tensor([[0.1, math.radians(35), 0.05]]), fill=1.1)
    col, seen = syn.sample_texture(geom, crop, ident, exp, cam.rotation[0].numpy(), cam.translation[0].numpy(),
                                   cam.scale[0].item())
    v = project(geom.shape(idc, torch.from_numpy(exp)[None]), cam.rotation, cam.translation, cam.scale)[0].numpy()
    ns = geom.num_skin
    assert col.shape == (ns, 3) and seen.shape == (ns,) and 0.2 < seen.mean() < 0.7
    p = v[:ns][seen]
    np.testing.assert_allclose(col[seen][:, 0], np.clip(p[:, 0], 0.5, S - 0.5) / S, atol=1.5 / 255)
    np.testing.assert_allclose(col[seen][:, 1], np.clip(p[:, 1], 0.5, S - 0.5) / S, atol=1.5 / 255)
    # seen vertices are not hidden: nothing (front-facing) lies more than the tolerance in front
    n = vertex_normals(torch.from_numpy(v)[None], geom.triangles)[0, :ns].numpy()
    assert np.all(n[seen, 2] < -0.3)
    tris = geom.triangles.numpy()
    idx = np.flatnonzero(seen)
    mesh = Mesh(v, tris)
    for i in np.random.default_rng(2).choice(idx, 60, replace=False):
        hits = brute_hits(mesh, v[i, 0], v[i, 1])
        assert hits and hits[0][2] >= v[i, 2] - 0.3 * cam.scale.item() - 1e-3
    # at 35 degrees of yaw, the far side of the nose and the back of the head are hidden
    back = v[:ns, 2] > np.percentile(v[:ns, 2], 80)
    assert not seen[back].any()
    lo, hi = col[seen].min(0), col[seen].max(0)
    assert np.all(col[~seen] >= lo - 1e-5) and np.all(col[~seen] <= hi + 1e-5)


# ---------------------------------------------------------------------- storage, determinism

def test_layout_manifest_and_no_cross_split_leakage(generated, annotated):
    out, man = generated
    a = load_arrays(out)
    cfg = json.loads((out / "config.json").read_text())
    assert man["kind"] == "synthetic" and man["split"] == "train" and man["num_pairs"] == 6
    assert set(man["layout"]) == set(syn.LAYOUT) and (out / "state.json").is_file()
    assert cfg["sources"] == [TRAIN] and [s["stem"] for s in man["sources"]] == [TRAIN]
    # no absolute path of this machine; the clips relative to the set, the model files hashed
    from _portable import assert_portable

    from faceflow.runtime.provenance import resolve_recorded
    assert assert_portable(out / "manifest.json", out.parent, annotated) == json.loads(json.dumps(man))
    assert resolve_recorded(man["sources"][0]["dir"], out).resolve() == (annotated / TRAIN).resolve()
    assert {"morphable_model_skin", "morphable_model_full"} <= set(man["provenance"]["weights"])
    for name, desc in syn.LAYOUT.items():
        assert a[name[:-4]].shape[0] == 6, name
    assert a["i1"].dtype == np.uint8 and a["pncc"].dtype == np.float16 and a["mask"].dtype == bool
    assert a["flow"].shape == (6, 224, 224, 3) and a["mesh1"].shape == (6, 2713, 3)
    np.testing.assert_array_equal(a["identity"], np.arange(6))
    # provenance: textures, backgrounds and real expressions all come from the train clip
    bank = np.load(out / "textures.npz")
    assert list(bank["stems"]) == [TRAIN] and set(bank["clip"].tolist()) == {0}
    assert set(a["background"][:, 0].tolist()) == {0}
    train_exp = np.load(annotated / TRAIN / "data" / "exp.npy")
    real = a["exp_source"][:, 0] >= 0
    assert real.any() and (~real).any()
    for k in np.flatnonzero(real):
        c, t, g = a["exp_source"][k]
        assert c == 0 and 1 <= g <= 6
        pair = {tuple(train_exp[t]), tuple(train_exp[t + g])}
        assert {tuple(a["exp1"][k]), tuple(a["exp2"][k])} <= pair
    # pixels: train crops are green, val red, test blue; skin and background are sampled from crops
    for k in range(6):
        img = a["i1"][k].astype(int)
        border = np.concatenate([img[:6].reshape(-1, 3), img[-6:].reshape(-1, 3), img[:, :6].reshape(-1, 3),
                                 img[:, -6:].reshape(-1, 3)])
        for px in (img[a["mask"][k]], border):
            assert (px[:, 1] > px[:, 0]).mean() > 0.995 and (px[:, 1] > px[:, 2]).mean() > 0.995
    assert (out / "previews").is_dir() and man["previews"]


@pytest.mark.slow
def test_pairs_are_reproducible_alone_after_resume_and_after_interruption(generated, annotated, tmp_path,
                                                                          monkeypatch):
    out, _ = generated
    ref = load_arrays(out)
    g = syn.prepare(small_config(), annotated, bank_path=out / "textures.npz")
    alone = g.pair(4)
    for name in ("i1", "i2", "flow", "head_flow", "pncc", "mask", "mesh1", "mesh2", "exp2", "transform"):
        np.testing.assert_array_equal(alone[name], ref[name][4], err_msg=name)
    # half, then all
    half = tmp_path / "half"
    syn.generate(half, small_config(num_pairs=3), annotated, progress=False, say=lambda m: None)
    assert json.loads((half / "state.json").read_text())["done"] == 3
    syn.generate(half, small_config(num_pairs=6), annotated, progress=False, say=lambda m: None)
    got = load_arrays(half)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
    # interrupted in the middle (after two chunks of 2), then resumed
    cut = tmp_path / "cut"
    real_pair = syn.Generator.pair

    def failing(self, k):
        if k == 4:
            raise KeyboardInterrupt
        return real_pair(self, k)

    monkeypatch.setattr(syn.Generator, "pair", failing)
    with pytest.raises(KeyboardInterrupt):
        syn.generate(cut, small_config(), annotated, progress=False, say=lambda m: None)
    monkeypatch.setattr(syn.Generator, "pair", real_pair)
    assert json.loads((cut / "state.json").read_text())["done"] == 4 and not (cut / "manifest.json").exists()
    with pytest.raises(FaceflowError, match="manifest"):
        syn.SyntheticPairs(cut)
    syn.generate(cut, small_config(), annotated, progress=False, say=lambda m: None)
    got = load_arrays(cut)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


@pytest.mark.slow
def test_other_config_is_refused_unless_overwrite(generated, annotated, tmp_path):
    out, _ = generated
    with pytest.raises(FaceflowError, match="seed"):
        syn.generate(out, small_config(seed=4), annotated, progress=False, say=lambda m: None)
    assert (out / "manifest.json").is_file()  # the refusal left the set intact
    d = tmp_path / "ow"
    syn.generate(d, small_config(num_pairs=1), annotated, progress=False, say=lambda m: None)
    with pytest.raises(FaceflowError, match="overwrite"):
        syn.generate(d, small_config(num_pairs=1, pairs_per_identity=2), annotated, progress=False,
                     say=lambda m: None)
    syn.generate(d, small_config(num_pairs=1, seed=4), annotated, progress=False, say=lambda m: None,
                 overwrite=True)
    assert json.loads((d / "config.json").read_text())["seed"] == 4
    with pytest.raises(FaceflowError, match="already holds 6 pairs"):
        syn.generate(out, small_config(num_pairs=3), annotated, progress=False, say=lambda m: None)
    assert (out / "manifest.json").is_file()


def test_output_of_another_generator_or_other_content_is_refused(tmp_path):
    """The output directory's checks (state.json through faceflow.io.rundir.RunState): another
    generator version or a foreign non-empty directory is refused; --overwrite clears the set."""
    old = tmp_path / "old"
    (old / "data").mkdir(parents=True)
    (old / "state.json").write_text(json.dumps({"done": 2, "num_pairs": 2, "format": "faceflow-synthetic/0"}))
    with pytest.raises(FaceflowError, match="another version of the generator.*faceflow-synthetic/0.*overwrite"):
        syn._open_output(old, small_config(), overwrite=False)
    state = syn._open_output(old, small_config(), overwrite=True)
    assert state.data == {"done": 0, "num_pairs": 6, "format": syn.FORMAT} and not (old / "data").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FaceflowError, match="not empty and holds no synthetic pairs"):
        syn._open_output(other, small_config(), overwrite=False)
    assert (other / "notes.txt").read_text() == "mine"


def test_sampling_is_per_pair_and_identities_can_be_shared(gen):
    """Pair k's draws depend on (seed, k) only; with pairs_per_identity = 2, pairs 2j and 2j + 1
    share identity, texture and eye colour, and nothing else is forced equal."""
    cfg2 = replace(gen.config, pairs_per_identity=2)
    a, b, c = (syn.sample_params(cfg2, gen.clips, 3, k) for k in (2, 3, 4))
    assert a.identity == b.identity == 1 and c.identity == 2
    np.testing.assert_array_equal(a.id, b.id)
    assert a.texture == b.texture and a.iris == b.iris
    assert not np.array_equal(a.id, c.id) and not np.array_equal(a.pose1, b.pose1)
    p1, p2 = syn.sample_params(gen.config, gen.clips, 3, 5), syn.sample_params(gen.config, gen.clips, 3, 5)
    np.testing.assert_array_equal(p1.exp2, p2.exp2)
    assert p1.bg_box == p2.bg_box and p1.noise_seed == p2.noise_seed
    ps = [syn.sample_params(gen.config, gen.clips, 3, k) for k in range(200)]
    yaw = np.array([p.pose1[1] for p in ps])
    assert np.abs(yaw).max() <= 45 and np.mean(np.abs(yaw) < 20) > 0.5  # favours near-frontal
    for p in ps:
        assert np.all(np.abs(p.rot_change) <= 6) and np.all(np.abs(p.trans_change) <= 6)
        assert abs(p.scale_change) <= 0.05 and 0 <= p.exp1.min() and p.exp2.max() <= 1
    same = np.mean([np.array_equal(p.exp1, p.exp2) for p in ps])
    real = np.mean([p.exp_source[0] >= 0 for p in ps])
    assert 0.08 < same < 0.3 and 0.45 < real < 0.75
    # the wide-pose sets of 3DMeshReg (--yaw-std 35 --yaw-max 60): every bin up to 60 degrees is filled
    wide = replace(gen.config, yaw_std=35.0, yaw_max=60.0)
    wide.validate()
    yaw = np.abs([syn.sample_params(wide, gen.clips, 3, k).pose1[1] for k in range(200)])
    assert yaw.max() <= 60 and np.mean(yaw > 45) > 0.1
    with pytest.raises(FaceflowError, match="yaw_max"):
        replace(gen.config, yaw_max=80.0).validate()


def test_clip_selection_errors(annotated, tmp_path):
    with pytest.raises(FaceflowError, match="annotate"):
        syn.find_clips(tmp_path, "train")  # no clips at all: names the command
    # a clip outside the split table: named explicitly, an error naming its directory; in a root, skipped
    root = tmp_path / "root"
    shutil.copytree(annotated / TRAIN, root / "stranger")
    (root / "stranger" / "manifest.json").write_text(json.dumps({"source": "/x/stranger.mp4"}))
    with pytest.raises(FaceflowError, match=re.escape(str(root / "stranger")) + ".*not in the identity split table"):
        syn.find_clips([root / "stranger"], "train")
    shutil.copytree(annotated / TRAIN, root / TRAIN)
    assert [c.stem for c in syn.find_clips(root, "train")] == [TRAIN]
    with pytest.raises(FaceflowError, match="leak"):
        syn.find_clips([annotated / VAL], "train")  # an explicit clip of another split
    assert [c.stem for c in syn.find_clips(annotated, "val")] == [VAL]
    assert [c.stem for c in syn.find_clips([annotated / TEST], "test")] == [TEST]
    (tmp_path / TRAIN / "data").mkdir(parents=True)
    with pytest.raises(FaceflowError, match="manifest"):
        syn.find_clips([tmp_path / TRAIN], "train")


def test_dataset_contract(generated):
    out, _ = generated
    ds = syn.SyntheticPairs(out)
    assert len(ds) == 6
    a = load_arrays(out)
    item = ds[5]
    shapes = {"i1": (3, 224, 224), "i2": (3, 224, 224), "pncc": (3, 224, 224), "flow": (224, 224, 3),
              "mask": (224, 224), "head_flow": (224, 224, 3), "mesh1": (2713, 3), "mesh2": (2713, 3),
              "has_head_flow": (), "identity": (), "kind": ()}
    assert set(item) == set(shapes)
    for k, s in shapes.items():
        assert tuple(item[k].shape) == s, k
    for k in ("i1", "i2", "pncc", "flow", "head_flow", "mesh1", "mesh2"):
        assert item[k].dtype == torch.float32, k
    assert item["mask"].dtype == torch.bool and item["has_head_flow"].dtype == torch.bool and item["has_head_flow"]
    assert item["identity"].dtype == torch.int64 and item["kind"].item() == 0 and item["identity"].item() == 5
    for k in ("i1", "i2", "pncc"):
        assert 0 <= item[k].min() and item[k].max() <= 1
    np.testing.assert_allclose(item["i2"].permute(1, 2, 0).numpy() * 255, a["i2"][5], atol=1e-3)
    m = item["mask"]
    assert m.sum() > 1000 and torch.all(item["flow"][~m] == 0) and torch.all(item["head_flow"][~m] == 0)
    assert (item["pncc"][:, m].sum(0) > 0).float().mean() > 0.97  # the flow mask lies on the PNCC face
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["i1"].shape == (2, 3, 224, 224) and batch["kind"].tolist() == [0, 0]
    with pytest.raises(IndexError):
        ds[6]


def test_generate_loads_the_clips_once_and_sizes_meshes_by_the_model(generated, annotated, monkeypatch, geom):
    out, _ = generated
    calls = []
    real = syn.find_clips

    def counting(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(syn, "find_clips", counting)
    syn.generate(out, small_config(), annotated, progress=False, say=lambda m: None)  # resume: nothing to do
    assert len(calls) == 1
    nv = int(geom.meshreg_idx.numel())  # the 'meshreg' subset's size, not a constant
    assert syn._array_specs(nv)["mesh1"] == ((nv, 3), np.float32) and syn._array_specs(7)["mesh2"][0] == (7, 3)


def test_public_names_of_the_split_modules():
    """faceflow.data.synthetic still offers every public name of the modules it was split into."""
    from faceflow.data import synth_geometry, synth_render, synth_sampling, synth_sources, synth_texture

    for mod in (synth_geometry, synth_render, synth_sampling, synth_sources, synth_texture):
        for name in dir(mod):
            obj = getattr(mod, name)
            if not name.startswith("_") and getattr(obj, "__module__", None) == mod.__name__:
                assert getattr(syn, name) is obj and name in syn.__all__, name
    assert all(hasattr(syn, n) for n in syn.__all__)


def test_dataset_refuses_incomplete_directory(tmp_path):
    with pytest.raises(FaceflowError, match="manifest"):
        syn.SyntheticPairs(tmp_path)


def test_cli(generated, annotated, capsys):
    from faceflow.commands import data_synth as syn_cmd

    out, _ = generated
    p = argparse.ArgumentParser()
    syn_cmd.add_arguments(p)
    help_text = p.format_help()
    assert "--annotated" in help_text and "--overwrite" in help_text and "--split" in help_text
    with pytest.raises(SystemExit):
        p.parse_args(["--split", "train", "--out", "x"])  # --annotated is required
    args = p.parse_args(["--annotated", str(annotated), "--split", "train", "--pairs", "6", "--seed", "3",
                         "--textures", "3", "--previews", "1", "--out", str(out)])
    # same configuration as the fixture except chunk (bookkeeping): resumes, nothing to do
    assert syn_cmd.run(args) == 0
    assert "6 synthetic train pairs" in capsys.readouterr().out


def test_depth_gauge_is_the_model_origin_in_both_frames(gen):
    """Depth convention shared with the annotation tool and 3DMeshReg's template: the model origin
    lies at depth 0 in each frame (scaled orthography cannot see a depth translation). The mean
    face, frontal, registered by its landmarks, is then exactly ``meshreg_template``; and after a
    head rotation the depths of frame 2 are still a linear function of the model coordinates
    without offset."""
    from faceflow.engine.dff_tasks import meshreg_template
    from faceflow.geometry.morphable import MorphableModel

    model = MorphableModel.load("skin")
    zeros_id, zeros_exp = np.zeros(100, np.float32), np.zeros(53, np.float32)
    _, r = special_pair(gen, 1, id=zeros_id, exp1=zeros_exp, exp2=zeros_exp, pose1=np.zeros(3, np.float32),
                        rot_change=np.array([3.0, 8.0, -2.0], np.float32), trans_change=np.zeros(2, np.float32),
                        scale_change=0.0)
    tpl = meshreg_template(model).numpy()
    np.testing.assert_allclose(r["mesh1"], tpl, atol=0.05)
    S = model.mean[model.subset("meshreg").indices].double().numpy()  # model coordinates (cm)
    A = np.concatenate([S, np.ones((len(S), 1))], 1)
    for mesh in (r["mesh1"], r["mesh2"]):
        coef, *_ = np.linalg.lstsq(A, mesh[:, 2].astype(np.float64), rcond=None)
        assert abs(coef[3]) < 0.05, coef  # no depth offset
