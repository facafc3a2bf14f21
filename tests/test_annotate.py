"""Tests of faceflow.annotate.pipeline, the dataset maker (``python -m faceflow annotate VIDEO OUT``).

One real annotation (the first 20 frames of a talking-head clip, shared by the module) is
checked against independent recomputations of its storage conventions: the crop with the
manifest's box, the registration to the 68-point template, the PNCC decoding and the 3D flow
re-derived from the stored coefficients and cameras (DeepFaceFlow eqs. (2)-(3)); the gap-pair
rule is checked on synthetic mean-flow sequences, on the clip and on a slowed copy of it (each
frame repeated, so that gap pairs must appear). Resuming after a simulated
interruption must give the uninterrupted result without redoing finished stages. Bad inputs
go through the CLI (exit code 2, one readable line on stderr, no manifest). Synthetic clips
built from real frames cover a face lost midway (two segments) and two faces (the larger is
followed).

Real media come from ``$FACEFLOW_MEDIA`` or ``<repo>/../shared/media``; those tests skip when
it is absent (fail with FACEFLOW_REQUIRE_ASSETS=1).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _media import MEDIA, REPO, media

from faceflow.annotate.pipeline import LAYOUT, TEMPLATE, AnnotateConfig, annotate, gap_pairs_rule
from faceflow.errors import FaceflowError

pytestmark = pytest.mark.slow  # annotates real clips

OBAMA = "videos/EDTalk_uncrop_Obama.mp4"  # 450 x 450, 25 fps, one frontal talking face
STILL = "stills/deepface_img32.jpg"
REAL_CFG = AnnotateConfig(size=128, max_frames=20, previews=1)  # consecutive + gap pairs

# name -> (symbolic shape, dtype); N kept frames, S crop size, M pairs. The symbolic shape is
# also how LAYOUT documents it.
EXPECTED = {
    "frame_index.npy": (("N",), "int64"),
    "segment.npy": (("N",), "int32"),
    "crops.npy": (("N", "S", "S", 3), "uint8"),
    "aligned.npy": (("N", 224, 224, 3), "uint8"),
    "aligned_transform.npy": (("N", 2, 3), "float64"),
    "lmk68.npy": (("N", 68, 2), "float32"),
    "dense.npy": (("N", 478, 3), "float32"),
    "pupils.npy": (("N", 2, 2), "float32"),
    "exp.npy": (("N", 53), "float32"),
    "id.npy": ((100,), "float32"),
    "camera_rotation.npy": (("N", 3, 3), "float32"),
    "camera_translation.npy": (("N", 3), "float32"),
    "camera_scale.npy": (("N",), "float32"),
    "pncc.npy": (("N", 224, 224, 3), "float16"),
    "pncc_mask.npy": (("N", 224, 224), "bool"),
    "nmfc.npy": (("N", "S", "S", 3), "uint8"),
    "face_mask.npy": (("N", "S", "S"), "bool"),
    "eyes.npy": (("N", "S", "S", 3), "uint8"),
    "eye_mask.npy": (("N", "S", "S"), "bool"),
    "pairs.npy": (("M", 2), "int64"),
    "pair_kind.npy": (("M",), "uint8"),
    "flow.npy": (("M", 224, 224, 3), "float16"),
}
BIG = ("crops", "aligned", "pncc", "pncc_mask", "nmfc", "face_mask", "eyes", "eye_mask", "pupils")


def load_data(out: Path) -> dict[str, np.ndarray]:
    """Every ``data/*.npy`` of an annotation, name without .npy -> array (memory-mapped)."""
    return {p.stem: np.load(p, mmap_mode="r") for p in sorted((out / "data").glob("*.npy"))}


def check_layout(out: Path, N: int, S: int, M: int) -> None:
    """Every LAYOUT file exists, memory-maps, and has the documented shape and dtype."""
    assert set(LAYOUT) == set(EXPECTED)
    dims = {"N": N, "S": S, "M": M}
    for name, (sym, dtype) in EXPECTED.items():
        doc = "(" + ", ".join(map(str, sym)) + ("," if len(sym) == 1 else "") + ")"
        assert LAYOUT[name].startswith(doc) and dtype in LAYOUT[name], (name, LAYOUT[name])
        path = out / "data" / name
        assert path.is_file(), f"{name} missing"
        arr = np.load(path, mmap_mode="r")
        assert arr.shape == tuple(dims.get(d, d) for d in sym), (name, arr.shape)
        assert arr.dtype == np.dtype(dtype), (name, arr.dtype)


@pytest.fixture(scope="module")
def obama_frames():
    from faceflow.io import read_frames
    return list(read_frames(media(OBAMA), max_frames=40))


@pytest.fixture(scope="module")
def real(tmp_path_factory, skin_model):
    """The shared real annotation: (out dir, manifest, messages)."""
    out = tmp_path_factory.mktemp("ann") / "obama"
    msgs: list[str] = []
    manifest = annotate(media(OBAMA), out, REAL_CFG, say=msgs.append)
    return out, manifest, msgs


# ---------------------------------------------------------------------------- independent geometry

def template_meshes(model, d, frames, ref: int) -> torch.Tensor:
    """Face meshes (B, Vf, 3) of kept frames ``frames`` from the stored id, exp and crop-space
    cameras, mapped into the template of frame ``ref`` (x, y by the similarity, z times its scale)."""
    from faceflow.face.registration import Similarity
    from faceflow.geometry.camera import Camera

    frames = np.asarray(frames)
    face = model.subset("face")
    exp = torch.from_numpy(np.array(d["exp"][frames]))
    ident = torch.from_numpy(np.array(d["id"]))[None].expand(len(frames), -1)
    verts = model.shape(ident, exp, face.indices)
    cam = Camera(torch.from_numpy(np.array(d["camera_rotation"][frames])),
                 torch.from_numpy(np.array(d["camera_translation"][frames])),
                 torch.from_numpy(np.array(d["camera_scale"][frames])))
    img = cam.project(verts).double()
    return Similarity(np.array(d["aligned_transform"][ref])).apply_3d(img).float()


def independent_flow(model, d, a: int, b: int):
    """DeepFaceFlow eq. (2) for kept frames (a, b) in a's template: (flow (224, 224, 3), mask, points of a)."""
    from faceflow.render.flow import flow_ground_truth
    from faceflow.render.rasterize import interpolate, rasterize

    v = template_meshes(model, d, [a, b], a)
    tris = model.subset("face").triangles
    frags = rasterize(v[:1], tris, (TEMPLATE, TEMPLATE), cull_backfaces=True)
    flow, mask = flow_ground_truth(v[:1], v[1:], tris, (TEMPLATE, TEMPLATE), frags1=frags)
    pts = interpolate(v[:1], tris, frags)
    return flow[0].numpy().astype(np.float64), mask[0].numpy(), pts[0].numpy().astype(np.float64)


def mean_flow(flow: np.ndarray, mask: np.ndarray) -> float:
    """DeepFaceFlow's gap criterion: mean 3D flow magnitude per face pixel."""
    return float(np.linalg.norm(np.asarray(flow, np.float64)[mask], axis=-1).mean())


# ---------------------------------------------------------------------------- 1. manifest and layout

def test_real_clip_manifest_and_layout(real):
    out, m, msgs = real
    assert (out / "manifest.json").is_file() and json.loads((out / "manifest.json").read_text()) == json.loads(
        json.dumps(m, default=float))
    assert m["complete"] is True
    assert m["frames_read"] == 20 and m["frames_kept"] == 20
    assert m["segments"] == [[0, 20]]
    assert m["image_size"] == [450, 450] and m["crop_size"] == 128 and m["template_size"] == 224
    rep = m["fit"]["reprojection"]
    assert 0 < rep["median_iod"] < 0.05, rep  # landmark reprojection below 5% of the inter-ocular distance
    ident = m["fit"]["identity"]
    assert ident["plausible"] is True and ident["id_norm2"] <= ident["chi2_threshold"]
    assert m["timings"]["landmarks_and_fit_fps"] > 0
    assert m["layout"] == LAYOUT
    M = m["pairs"]["pairs"]
    assert M == m["pairs"]["consecutive"] + m["pairs"]["gap"] and m["pairs"]["consecutive"] == 19
    check_layout(out, N=20, S=128, M=M)
    d = load_data(out)
    assert set(d) == {n[:-4] for n in LAYOUT}  # nothing undocumented
    np.testing.assert_array_equal(d["frame_index"], np.arange(20))
    np.testing.assert_array_equal(d["segment"], np.zeros(20))
    assert m["previews"] and all((out / "previews" / p).is_file() for p in m["previews"])
    from faceflow import io as vio
    frame = vio.read_image(out / "previews" / next(p for p in m["previews"] if p.startswith("frame")))
    assert frame.shape == (128 + 14, 4 * 128, 3) and frame[:14].max() > 200      # four panels under titles
    fig = vio.read_image(out / "previews" / "flow_example.png")
    assert fig.shape[0] > 128 + 60                                               # titled, legend below


def test_real_clip_manifest_records_the_source_and_provenance(real, skin_model):
    import hashlib

    from _portable import assert_portable

    out, m, _ = real
    assert assert_portable(out / "manifest.json", out.parent) == json.loads(json.dumps(m, default=float))
    video = media(OBAMA)
    assert m["source_file"] == {"file": video.name, "bytes": video.stat().st_size,
                                "sha256": hashlib.sha256(video.read_bytes()).hexdigest()}
    assert Path(m["source"]).name == video.name                # relative to OUT, or the bare name
    prov = m["provenance"]
    assert {"faceflow", "python", "torch", "numpy", "cv2", "mediapipe"} <= set(prov["versions"])
    w = prov["weights"]["morphable_model"]
    assert w["sha256"] == hashlib.sha256(Path(skin_model.path).read_bytes()).hexdigest()
    assert prov["command"] and "git_commit" in prov


# ---------------------------------------------------------------------------- 2. storage conventions

def test_crops_use_the_manifest_box(real, obama_frames):
    from faceflow.face.registration import CropBox, crop_image

    out, m, _ = real
    d = load_data(out)
    box = CropBox.from_dict(m["crop_box"])
    S = m["crop_size"]
    for i in (0, 7, 19):
        ref = crop_image(obama_frames[int(d["frame_index"][i])], box, S)
        diff = np.abs(ref.astype(int) - d["crops"][i].astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01, (i, diff.max(), diff.mean())
    # the stored landmarks are crop pixels: a fresh detection on the original frame, mapped by
    # x' = (x - x0) S / side, lands on them
    from faceflow.face.landmarks import detect_image
    face = detect_image(obama_frames[0])
    mapped = (face.lmk68 - [box.x0, box.y0]) * S / box.side
    iod = np.linalg.norm(d["lmk68"][0, 45] - d["lmk68"][0, 36])
    assert np.linalg.norm(mapped - d["lmk68"][0], axis=1).mean() < 0.05 * iod


def test_aligned_images_and_template_registration(real):
    from faceflow.face.registration import Similarity, template_landmarks, warp_image

    out, _, _ = real
    d = load_data(out)
    tmpl = template_landmarks(224)
    tiod = np.linalg.norm(tmpl[45] - tmpl[36])
    for i in range(len(d["crops"])):
        T = Similarity(np.array(d["aligned_transform"][i]))
        if i in (0, 11, 19):
            ref = warp_image(np.array(d["crops"][i]), T, 224, border="border")
            diff = np.abs(ref.astype(int) - d["aligned"][i].astype(int))
            assert diff.max() <= 1 and diff.mean() < 0.01, (i, diff.max())
        p = d["lmk68"][i].astype(np.float64)
        r = T.apply(p) - tmpl
        assert np.sqrt((r ** 2).sum(1).mean()) < 0.16 * tiod  # close to the frontal template
        # least-squares optimal: the residual is orthogonal to the similarity's 4 directions
        # (x' = a x - b y + tx, y' = b x + a y + ty)
        grads = np.stack([r.sum(0)[0], r.sum(0)[1], (r * p).sum(), (r[:, 1] * p[:, 0] - r[:, 0] * p[:, 1]).sum()])
        assert np.abs(grads).max() < 1e-6 * np.abs(r).sum() * max(1.0, np.abs(p).max())


def test_crop_cameras_project_model_onto_landmarks(real, skin_model):
    """The stored crop-space cameras (p = f C R S + t) put the model's inner-face landmarks on lmk68."""
    from faceflow.geometry.camera import Camera

    out, _, _ = real
    d = load_data(out)
    n = len(d["exp"])
    ident = torch.from_numpy(np.array(d["id"]))[None].expand(n, -1)
    verts = skin_model.shape(ident, torch.from_numpy(np.array(d["exp"])))
    cam = Camera(*(torch.from_numpy(np.array(d[k])) for k in ("camera_rotation", "camera_translation", "camera_scale")))
    lm = cam.project(skin_model.landmarks(verts))[..., :2].numpy()
    err = np.linalg.norm(lm[:, 17:] - d["lmk68"][:, 17:], axis=-1).mean(1)
    iod = np.linalg.norm(d["lmk68"][:, 45] - d["lmk68"][:, 36], axis=-1)
    assert (err / iod).max() < 0.08, err / iod


def check_flow_and_pncc(out: Path, model, check) -> None:
    """Stored flow of pairs ``check`` (indices into pairs.npy) = DeepFaceFlow eq. (2) recomputed
    from the stored coefficients, cameras and registrations; PNCC of frame a = eq. (3)."""
    from faceflow.render.pncc import pncc_to_points

    d = load_data(out)
    pairs = np.array(d["pairs"])
    for mi in check:
        a, b = (int(v) for v in pairs[mi])
        flow, mask, pts = independent_flow(model, d, a, b)
        pmask = np.array(d["pncc_mask"][a])
        assert pmask.sum() > 2000  # the face covers a good part of the template
        assert (mask != pmask).sum() <= 1e-3 * pmask.sum(), (a, (mask != pmask).sum())
        both = mask & pmask
        stored = np.asarray(d["flow"][mi], np.float64)
        np.testing.assert_allclose(stored[both], flow[both], atol=0.02, rtol=2e-3)
        assert not stored[~pmask].any()  # zero off the face
        # PNCC (eq. (3)) decodes to the surface point seen at each pixel: x, y are the pixel
        # centres, z the depth of the template-space mesh
        dec = pncc_to_points(torch.from_numpy(np.asarray(d["pncc"][a], np.float32))[None], (224, 224))[0].numpy()
        jj, ii = np.meshgrid(np.arange(224) + 0.5, np.arange(224) + 0.5)
        assert np.abs(dec[..., 0][pmask] - jj[pmask]).max() < 0.15
        assert np.abs(dec[..., 1][pmask] - ii[pmask]).max() < 0.15
        assert np.abs(dec[..., 2][both] - pts[..., 2][both]).max() < 0.3
        assert not np.asarray(d["pncc"][a])[~pmask].any()


def check_pairs(out: Path, m: dict, model) -> None:
    """Pairs stay in a segment; every consecutive pair is there; each gap pair is where the gap
    rule stops (mean flow of (a, a + g - 1) <= 1 px < that of (a, a + g), unless capped or at
    the segment end), and frames without one already moved > 1 px (or have no room)."""
    d = load_data(out)
    pairs, kinds, seg = np.array(d["pairs"]), np.array(d["pair_kind"]), np.array(d["segment"])
    N, max_gap = len(seg), m["options"]["max_gap"]
    assert (seg[pairs[:, 0]] == seg[pairs[:, 1]]).all()
    assert (pairs[:, 1] > pairs[:, 0]).all()
    cons = {(int(a), int(b)) for (a, b), k in zip(pairs, kinds) if k == 0}
    assert cons == {(a, a + 1) for a in range(N - 1) if seg[a + 1] == seg[a]}
    gap = {int(a): int(b) - int(a) for (a, b), k in zip(pairs, kinds) if k == 1}
    assert len(gap) == (kinds == 1).sum() and all(g > 1 for g in gap.values())
    assert m["pairs"]["gap_histogram"] == {str(g): c for g, c in sorted(
        {g: list(gap.values()).count(g) for g in set(gap.values())}.items())}
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(pairs)}

    def mflow(a, g):
        if (a, a + g) in index:  # stored flow (checked against recomputation above)
            i = index[(a, a + g)]
            return mean_flow(d["flow"][i], np.array(d["pncc_mask"][a]))
        flow, mask, _ = independent_flow(model, d, a, a + g)
        return mean_flow(flow, mask)

    def in_seg(a, b):
        return b < N and seg[b] == seg[a]

    tol = 0.01
    for a in range(N - 1):
        if a in gap:
            g = gap[a]
            assert all(mflow(a, h) <= 1 + tol for h in range(1, g))  # it only advanced past small flows
            assert mflow(a, g) > 1 - tol or g == max_gap or not in_seg(a, a + g + 1)
        elif in_seg(a, a + 1) and in_seg(a, a + 2):
            assert mflow(a, 1) > 1 - tol  # no gap pair: the next frame already moved > 1 px
    assert m["pairs"]["mean_flow_px"] > 0


def test_flow_and_pncc_match_independent_recomputation(real, skin_model):
    out, _, _ = real
    kinds = np.load(out / "data" / "pair_kind.npy")
    check_flow_and_pncc(out, skin_model, sorted({0, 9, len(kinds) - 1} | set(np.flatnonzero(kinds == 1)[:2].tolist())))


def test_pairs_respect_segments_and_gap_rule(real, skin_model):
    out, m, _ = real
    check_pairs(out, m, skin_model)


def test_gap_pairs_on_a_slowed_clip(obama_frames, tmp_path, skin_model):
    """Each real frame shown 3 times: the face barely moves between repeats, so DeepFaceFlow's
    rule must make gap pairs (the real clip at full speed moves > 1 px per frame)."""
    from faceflow.io import write_video

    clip = write_video(tmp_path / "slow.mp4", [f for f in obama_frames[:8] for _ in range(3)], 25)
    out = tmp_path / "slow"
    m = annotate(clip, out, AnnotateConfig(size=64, previews=0), say=lambda s: None)
    assert m["frames_kept"] == 24
    kinds = np.load(out / "data" / "pair_kind.npy")
    assert m["pairs"]["gap"] == (kinds == 1).sum() >= 5
    check_pairs(out, m, skin_model)
    check_flow_and_pncc(out, skin_model, [0] + np.flatnonzero(kinds == 1)[:3].tolist())


# ---------------------------------------------------------------------------- 3. gap rule

class Seq:
    """A mean-flow callable from a list (index g - 1), None past its end; records the calls."""

    def __init__(self, values):
        self.values, self.calls = list(values), []

    def __call__(self, g):
        self.calls.append(g)
        return self.values[g - 1] if g <= len(self.values) else None


def test_gap_rule_advances_until_flow_exceeds_one_pixel():
    s = Seq([0.3 * g for g in range(1, 20)])  # 0.3, 0.6, 0.9, 1.2, ...
    assert gap_pairs_rule(s, 10) == 4
    assert s.calls == [1, 2, 3, 4]
    assert gap_pairs_rule(Seq([0.5, 1.0, 1.0001]), 10) == 3  # exactly 1 px still advances


def test_gap_rule_stops_at_segment_end():
    assert gap_pairs_rule(Seq([0.2, 0.4]), 10) == 2
    assert gap_pairs_rule(Seq([0.2]), 10) == 1
    assert gap_pairs_rule(Seq([]), 10) == 0  # no next frame at all


def test_gap_rule_caps_at_max_gap():
    s = Seq([0.1] * 50)
    assert gap_pairs_rule(s, 7) == 7
    assert max(s.calls) == 7  # never looks past the cap
    assert gap_pairs_rule(Seq([0.1] * 50), 1) == 1


def test_gap_rule_first_flow_already_large():
    s = Seq([1.5, 0.1, 0.1])
    assert gap_pairs_rule(s, 10) == 1
    assert s.calls == [1]


# ---------------------------------------------------------------------------- 4. resumability

def test_resume_after_interrupted_render(real, tmp_path):
    out, ref_manifest, _ = real
    work = tmp_path / "resume"
    shutil.copytree(out, work)
    ref = {k: np.array(v) for k, v in load_data(out).items()}
    stamps = {n: (work / n).stat().st_mtime_ns for n in ("track.npz", "fit.npz")}
    # interrupted while rendering frame 16: later rows never written, no pairs, no manifest
    state = json.loads((work / "state.json").read_text())
    state["stages"]["render"] = {"frames_done": 16}
    state["stages"].pop("pairs", None)
    (work / "state.json").write_text(json.dumps(state))
    for name in ("manifest.json", "data/flow.npy", "data/pairs.npy", "data/pair_kind.npy"):
        (work / name).unlink()
    for name in BIG:
        arr = np.load(work / "data" / f"{name}.npy", mmap_mode="r+")
        arr[16:] = 0
        arr.flush()
        del arr
    eyes = np.load(work / "data" / "eyes.npy", mmap_mode="r+")
    eyes[3] = 77  # a finished row: must be kept, not recomputed
    eyes.flush()
    del eyes

    msgs: list[str] = []
    m = annotate(media(OBAMA), work, REAL_CFG, say=msgs.append)
    assert any("resuming at 16" in s for s in msgs), msgs
    assert not any(s.startswith(("tracking", "fitting")) for s in msgs), msgs
    assert {n: (work / n).stat().st_mtime_ns for n in stamps} == stamps
    assert (work / "manifest.json").is_file()
    got = {k: np.array(v) for k, v in load_data(work).items()}
    assert set(got) == set(ref)
    assert (got["eyes"][3] == 77).all()
    got["eyes"][3] = ref["eyes"][3]
    for k in ref:
        assert got[k].shape == ref[k].shape and np.array_equal(got[k], ref[k], equal_nan=got[k].dtype.kind == "f"), k

    def untimed(x):
        return json.loads(json.dumps({k: v for k, v in x.items() if k != "timings"}, default=float))
    assert untimed(m) == untimed(ref_manifest)


def test_other_options_refused_then_overwrite(real, tmp_path):
    out, _, _ = real
    work = tmp_path / "other"
    shutil.copytree(out, work)
    with pytest.raises(FaceflowError, match="overwrite"):
        annotate(media(OBAMA), work, AnnotateConfig(size=96, max_frames=20, previews=1), say=lambda s: None)
    # refusing must leave the complete annotation as it was
    assert (work / "manifest.json").is_file(), "a refused run deleted the manifest of a complete annotation"
    assert np.load(work / "data" / "crops.npy", mmap_mode="r").shape == (20, 128, 128, 3)

    cfg = AnnotateConfig(size=64, max_frames=8, pairs=(), previews=0)
    m = annotate(media(OBAMA), work, cfg, overwrite=True, say=lambda s: None)
    assert m["frames_kept"] == 8 and m["crop_size"] == 64 and m["pairs"]["pairs"] == 0
    check_layout(work, N=8, S=64, M=0)
    assert {p.name for p in (work / "data").iterdir()} == set(LAYOUT)  # nothing stale left
    assert m["previews"] == [] and not any((work / "previews").glob("*"))
    assert json.loads((work / "state.json").read_text())["signature"]["options"]["size"] == 64


def test_bad_options_refused_before_any_work(tmp_path):
    video = tmp_path / "never_read.mp4"  # options are checked before the video is even opened
    for cfg, words in ((AnnotateConfig(size=16), "--size"), (AnnotateConfig(max_frames=1), "--max-frames"),
                       (AnnotateConfig(pairs=("consecutive", "random")), "random")):
        with pytest.raises(FaceflowError, match=words):
            annotate(video, tmp_path / "out", cfg, say=lambda s: None)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- 5. bad input (CLI)

@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """Run the CLI on every bad input at once (in parallel); name -> (returncode, stderr, out dir, input)."""
    from faceflow.io import write_video

    tmp = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    one = Path(write_video(tmp / "one_frame.mp4", [np.full((120, 160, 3), 90, np.uint8)], 25))
    noise = []
    for _ in range(15):  # smooth colour noise and gradients: no face anywhere
        n = cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (160, 120), interpolation=cv2.INTER_CUBIC)
        noise.append((np.clip(n * 0.7 + np.linspace(0, 0.3, 160)[None, :, None], 0, 1) * 255).astype(np.uint8))
    noface = Path(write_video(tmp / "no_face.mp4", noise, 25))
    inputs = {"corrupt": corrupt, "one_frame": one, "no_face": noface, "missing": tmp / "does_not_exist.mp4"}
    if (MEDIA / STILL).is_file():
        inputs["still"] = MEDIA / STILL
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = {}
    for name, video in inputs.items():
        cmd = [sys.executable, "-m", "faceflow", "annotate", str(video), str(tmp / f"out_{name}"),
               "--max-frames", "15", "--pairs", "consecutive", "--previews", "0"]
        procs[name] = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    res = {}
    for name, p in procs.items():
        _, err = p.communicate(timeout=300)
        res[name] = (p.returncode, err, tmp / f"out_{name}", inputs[name])
    return res


@pytest.mark.parametrize("name, words", [
    ("still", ("still image",)), ("corrupt", ("corrupt",)), ("one_frame", ("1 frame",)),
    ("no_face", ("no", "face")), ("missing", ("not found",))])
def test_cli_bad_input(bad_runs, name, words, request):
    if name == "still":
        media(STILL)  # skip (or fail) without the real media
    if name == "no_face":
        request.getfixturevalue("skin_model")  # gets as far as loading the model: skip without it
    rc, err, out, video = bad_runs[name]
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [ln.strip() for ln in err.replace("\r", "\n").split("\n") if ln.strip()]
    lines = [ln for ln in lines if not re.match(r"[IWEF]\d{4} |WARNING: ", ln)]  # mediapipe's own logging
    errs = [ln for ln in lines if ln.startswith("error:")]
    assert len(errs) == 1 and lines[-1] == errs[0], err[-2000:]  # one line, the last thing said
    assert all(w in errs[0].lower() for w in words), errs[0]
    if name != "no_face":
        assert video.name in errs[0]  # names the file
    assert not (out / "manifest.json").exists()


# ---------------------------------------------------------------------------- 6. face lost midway

def test_face_lost_midway_gives_two_segments(obama_frames, tmp_path):
    from faceflow.io import write_video

    frames = [f.copy() for f in obama_frames[:40]]
    for t in range(15, 25):
        frames[t] = np.full_like(frames[t], 128)
    clip = write_video(tmp_path / "lost.mp4", frames, 25)
    m = annotate(clip, tmp_path / "lost", AnnotateConfig(size=64, pairs=("consecutive",), previews=0),
                 say=lambda s: None)
    d = load_data(tmp_path / "lost")
    fi, seg = np.array(d["frame_index"]), np.array(d["segment"])
    assert len(m["segments"]) == 2 and m["tracking"]["segments"] == m["segments"]
    (a0, b0), (a1, b1) = m["segments"]
    assert b0 <= 15 and a1 >= 25 and b0 - a0 >= 10 and b1 - a1 >= 10
    assert not np.isin(fi, np.arange(15, 25)).any()
    assert m["frames_kept"] == len(fi) == (b0 - a0) + (b1 - a1)
    np.testing.assert_array_equal(fi, np.r_[a0:b0, a1:b1])
    np.testing.assert_array_equal(seg, np.r_[np.zeros(b0 - a0), np.ones(b1 - a1)])
    pairs = np.array(d["pairs"])
    assert len(pairs) == len(fi) - 2  # consecutive pairs within each segment only
    assert (seg[pairs[:, 0]] == seg[pairs[:, 1]]).all()
    assert (fi[pairs[:, 1]] - fi[pairs[:, 0]] == 1).all()  # never across the grey frames


# ---------------------------------------------------------------------------- 7. two faces

def test_two_faces_follows_the_larger(obama_frames, tmp_path):
    from faceflow.io import write_video

    frames = []
    for f in obama_frames[:10]:
        small = cv2.resize(f, (225, 225), interpolation=cv2.INTER_AREA)
        left = np.full_like(f, 128)
        left[112:337, 112:337] = small
        frames.append(np.concatenate([left, f], 1))  # small face left, large face right (900 x 450)
    clip = write_video(tmp_path / "two.mp4", frames, 25)
    m = annotate(clip, tmp_path / "two", AnnotateConfig(size=64, pairs=(), previews=0), say=lambda s: None)
    tr = m["tracking"]
    assert tr["max_faces"] >= 2 and tr["frames_multiple_faces"] >= 8
    assert m["frames_kept"] == 10
    box = m["crop_box"]
    cx, cy = box["x0"] + box["side"] / 2, box["y0"] + box["side"] / 2
    assert 450 < cx < 900 and 0 < cy < 450  # the crop follows the larger face on the right
    assert box["side"] > 250  # sized for the large face (the small one is half as big)
