"""Tests of reenact.conditioning and reenact.drive, the driving side of reenactment.

A real 24-frame target annotation (DPE_d, crop 128) is built once per module. Rendering its own
fitted parameters must reproduce its stored NMFC, face mask and eye sketches; head reenactment
with the target video as its own source must leave the cameras (and so the conditioning)
unchanged; face reenactment from another clip must keep the target's cameras and eyes (in
ping-pong order from its test part) and take only the source's expressions. Mouth boxes,
ping-pong indexing and the camera adaptation are checked against brute force and analytic
answers; a clip without a face, a face lost midway and the analysis cache are covered too.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _media import media

from faceflow.annotate import pipeline as ann
from faceflow.annotate.pipeline import AnnotateConfig, annotate
from faceflow.errors import FaceflowError
from reenact.conditioning import mouth_boxes, render_conditioning
from reenact.drive import adapt_cameras, analyse_source, drive_from_source, drive_self, held_out_start, pingpong_indices
from vid2vid.discriminators import mouth_size as mouth_side

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # slow: tracks and fits real clips

TARGET = "extra/DPE_d.mp4"  # 256 x 256, 25 fps, no audio
OTHER = "extra/EDTalk_mouth_source.mp4"  # another person, 256 x 256
AUDIO = "videos/EDTalk_uncrop_Obama.mp4"  # has an audio track
S, N = 128, 24
quiet = lambda s: None


def load(out, name):
    return np.load(out / "data" / f"{name}.npy")


@pytest.fixture(scope="module")
def target(tmp_path_factory, skin_model):
    out = tmp_path_factory.mktemp("target") / "dpe"
    annotate(media(TARGET), out, AnnotateConfig(size=S, max_frames=N, pairs=(), previews=0), say=quiet)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture(scope="module")
def head_self(target, work, skin_model):
    """Head reenactment of the target by its own video (same frames as the annotation)."""
    return drive_from_source(target, media(TARGET), "head", work, max_frames=N, model=skin_model, say=quiet)


@pytest.fixture(scope="module")
def face_other(target, work, skin_model):
    """Face reenactment of the target by another person's 30 frames (longer than the 8-frame test part)."""
    return drive_from_source(target, media(OTHER), "face", work, max_frames=30, model=skin_model, say=quiet)


def render_target(model, out, idx=slice(None), exp=None, **kw):
    return render_conditioning(model, load(out, "id"), load(out, "exp")[idx] if exp is None else exp,
                               load(out, "camera_rotation")[idx], load(out, "camera_translation")[idx],
                               load(out, "camera_scale")[idx], size=S, **kw)


# ---------------------------------------------------------------------------- conditioning

def test_render_conditioning_reproduces_the_annotation(target, skin_model):
    out = render_target(skin_model, target, lmk68=load(target, "lmk68"), pupils=load(target, "pupils"), batch=5)
    cond = out["cond"]
    assert cond.shape == (N, S, S, 6) and cond.dtype == np.uint8
    nmfc, fmask = load(target, "nmfc"), load(target, "face_mask")
    diff = np.abs(cond[..., :3].astype(int) - nmfc)
    assert (diff > 1).mean() < 1e-4, (diff > 1).sum()  # same colours, same rasteriser: (near-)exact
    assert (out["face_mask"] != fmask).mean() < 1e-4 and fmask.mean() > 0.1
    np.testing.assert_array_equal(cond[..., 3:], load(target, "eyes"))  # eye sketches drawn the same way
    # the projected model landmarks lie on the detected ones (a good fit): mouth and eyes within 4% of the crop
    lmk = load(target, "lmk68")
    err = np.linalg.norm(out["lmk68_model"][:, 36:68] - lmk[:, 36:68], axis=-1)
    assert np.median(err) < 0.02 * S and err.max() < 0.06 * S, (np.median(err), err.max())


def test_render_conditioning_eye_inputs(target, skin_model):
    from faceflow.face.eyes import eye_sketch

    eyes = np.zeros((3, S, S, 3), np.uint8)
    eyes[:, 10:20, 30:40] = (1, 2, 3)
    out = render_target(skin_model, target, idx=slice(0, 3), eyes=eyes)
    np.testing.assert_array_equal(out["cond"][..., 3:], eyes)  # given eye images are used verbatim
    lmk = load(target, "lmk68")[:3]
    out = render_target(skin_model, target, idx=slice(0, 3), lmk68=lmk)  # no pupils: outlines only
    for k in range(3):
        np.testing.assert_array_equal(out["cond"][k, ..., 3:], eye_sketch(lmk[k], np.full((2, 2), np.nan), (S, S)))
    assert not (out["cond"][..., 3:] == (255, 0, 0)).all(-1).any()
    with pytest.raises(FaceflowError, match="eye"):
        render_target(skin_model, target, idx=slice(0, 3))
    with pytest.raises(FaceflowError, match="eyes must be uint8"):
        render_target(skin_model, target, idx=slice(0, 3), eyes=eyes[:2])
    with pytest.raises(FaceflowError, match=r"R \(camera rotations\)"):
        render_conditioning(skin_model, load(target, "id"), load(target, "exp")[:3], np.eye(3)[None], np.zeros((3, 3)),
                            np.ones(3), size=S, eyes=eyes)


def test_mouth_boxes_brute_force_and_border():
    rng = np.random.default_rng(0)
    for size in (64, 128, 256):
        side = mouth_side(size)
        assert side == round(72 * size / 256)
        lmk = rng.uniform(-10, size + 10, (200, 68, 2))
        lmk[:, 48:68] = lmk[:, 48:68] * 0.05 + rng.uniform(-5, size + 5, (200, 1, 2))  # small mouths anywhere
        boxes = mouth_boxes(lmk, size)
        assert boxes.dtype == np.int64 and boxes.shape == (200, 4)
        assert (boxes[:, 2] - boxes[:, 0] == side).all() and (boxes[:, 3] - boxes[:, 1] == side).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= size).all()  # inside, also at the border
        c = lmk[:, 48:68].mean(1)
        # brute force: the integer box nearest the mouth centre among those inside the image
        for k in range(0, 200, 7):
            for ax in (0, 1):
                cands = np.arange(0, size - side + 1)
                best = cands[np.argmin(np.abs(cands + side / 2 - c[k, ax]))]
                assert abs(boxes[k, ax] - best) <= 1 and abs(boxes[k, ax] + side / 2 - c[k, ax]) <= abs(
                    best + side / 2 - c[k, ax]) + 1e-9
    corner = np.zeros((2, 68, 2))
    corner[0, 48:68] = (1.0, 2.0)
    corner[1, 48:68] = (63.5, 63.0)
    np.testing.assert_array_equal(mouth_boxes(corner, 64), [[0, 0, 18, 18], [46, 46, 64, 64]])
    t = mouth_boxes(torch.from_numpy(corner), 64, box=10)
    assert torch.is_tensor(t) and t.dtype == torch.int64 and t.tolist() == [[0, 0, 10, 10], [54, 54, 64, 64]]
    with pytest.raises(ValueError):
        mouth_boxes(corner, 64, box=65)
    with pytest.raises(ValueError):
        mouth_boxes(corner[:, :60], 64)


def test_mouth_boxes_contain_the_real_mouths(target):
    lmk = load(target, "lmk68")
    boxes = mouth_boxes(lmk, S)
    m = lmk[:, 48:68]
    assert (m[..., 0] >= boxes[:, None, 0]).all() and (m[..., 0] <= boxes[:, None, 2]).all()
    assert (m[..., 1] >= boxes[:, None, 1]).all() and (m[..., 1] <= boxes[:, None, 3]).all()


def test_pingpong_indices_brute_force():
    def walk(T, lo, hi):
        out, i, step = [], lo, 1
        for _ in range(T):
            out.append(i)
            if hi - lo == 1:
                continue
            if not lo <= i + step < hi:
                step = -step
            i += step
        return out

    for lo, hi in ((0, 1), (3, 4), (0, 2), (5, 8), (16, 24), (0, 11)):
        for T in (0, 1, 5, 17, 40):
            np.testing.assert_array_equal(pingpong_indices(T, lo, hi), walk(T, lo, hi))
    assert pingpong_indices(7, 2, 5).tolist() == [2, 3, 4, 3, 2, 3, 4]
    with pytest.raises(ValueError):
        pingpong_indices(3, 4, 4)
    assert held_out_start(24) == 16 and held_out_start(300) == 200 and held_out_start(2) == 1
    assert held_out_start(25) == 17 and held_out_start(26) == 17  # round(2N / 3)


def test_adapt_cameras_analytic(skin_model):
    from faceflow.geometry.camera import project

    rng = np.random.default_rng(1)
    f_s, t_s = rng.uniform(8, 12, 10), rng.normal(60, 5, (10, 3))
    f_t, t_t = rng.uniform(14, 16, 7), rng.normal(70, 3, (7, 3))
    f, t, r, shift = adapt_cameras(f_s, t_s, f_t, t_t)
    assert np.isclose(r, f_t.mean() / f_s.mean())
    np.testing.assert_allclose(f.mean(), f_t.mean())  # the target's mean scale and position
    np.testing.assert_allclose(t.mean(0), t_t.mean(0), atol=1e-9)
    np.testing.assert_allclose(f / f_s, r)  # per-frame changes of the source are kept, scaled
    np.testing.assert_allclose(t - t[0], r * (t_s - t_s[0]), atol=1e-9)
    # every projected point moves by the same 2D similarity p -> r p + shift (which maps the eyes)
    R = torch.from_numpy(np.linalg.qr(rng.normal(size=(10, 3, 3)))[0])
    X = torch.randn(10, 5, 3, dtype=torch.float64)
    p = project(X, R, torch.from_numpy(t_s), torch.from_numpy(f_s))[..., :2].numpy()
    q = project(X, R, torch.from_numpy(t), torch.from_numpy(f))[..., :2].numpy()
    np.testing.assert_allclose(q, r * p + shift, atol=1e-9)


# ---------------------------------------------------------------------------- self reenactment

def test_drive_self(target):
    a = held_out_start(N)
    d = drive_self(target, a, N)
    assert d.mode == "self" and len(d) == N - a and d.size == S and d.audio is None and d.fps == 25
    np.testing.assert_array_equal(d.cond, np.concatenate([load(target, "nmfc"), load(target, "eyes")], -1)[a:])
    np.testing.assert_array_equal(d.real, load(target, "crops")[a:])
    np.testing.assert_array_equal(d.source, d.real)
    np.testing.assert_array_equal(d.face_mask, load(target, "face_mask")[a:])
    np.testing.assert_array_equal(d.mouth, mouth_boxes(load(target, "lmk68")[a:], S))
    np.testing.assert_array_equal(d.frame_index, np.arange(a, N))
    for bad in ((5, 5), (-1, 3), (0, N + 1)):
        with pytest.raises(FaceflowError, match="start"):
            drive_self(target, *bad)


# ---------------------------------------------------------------------------- source-driven

def test_head_mode_with_the_target_as_source_is_the_identity(head_self, target, skin_model):
    d = head_self
    assert d.mode == "head" and len(d) == N and d.real is None and d.fps == 25 and d.audio is None
    np.testing.assert_array_equal(d.frame_index, np.arange(N))
    np.testing.assert_allclose(d.params["scale"], load(target, "camera_scale"), rtol=1e-4)
    np.testing.assert_allclose(d.params["translation"], load(target, "camera_translation"), atol=1e-2)
    np.testing.assert_allclose(d.params["rotation"], load(target, "camera_rotation"), atol=1e-5)
    np.testing.assert_allclose(d.params["exp"], load(target, "exp"), atol=1e-5)
    stored = np.concatenate([load(target, "nmfc"), load(target, "eyes")], -1)
    assert (np.abs(d.cond.astype(int) - stored) > 1).mean() < 1e-3
    assert (d.face_mask != load(target, "face_mask")).mean() < 1e-3
    # the source frames, uncropped, as read
    from faceflow.io import read_video
    frames, _ = read_video(media(TARGET), max_frames=N)
    np.testing.assert_array_equal(d.source, frames)
    # mouth boxes around the rendered face's (model) mouth
    lm = render_conditioning(skin_model, load(target, "id"), d.params["exp"], d.params["rotation"],
                             d.params["translation"], d.params["scale"], size=S, eyes=d.cond[..., 3:])["lmk68_model"]
    np.testing.assert_array_equal(d.mouth, mouth_boxes(lm, S))
    m = lm[:, 48:68]
    assert (m[..., 0] >= d.mouth[:, None, 0]).all() and (m[..., 0] <= d.mouth[:, None, 2]).all()
    assert (m[..., 1] >= d.mouth[:, None, 1]).all() and (m[..., 1] <= d.mouth[:, None, 3]).all()


def test_face_mode_keeps_the_target_cameras_and_changes_only_expression(face_other, target, work, skin_model):
    d = face_other
    src = analyse_source(media(OTHER), work, S, 30, model=skin_model, say=quiet)  # cached
    assert src.reused and d.mode == "face" and len(d) == 30 and d.audio is None
    idx = d.params["target_index"]
    np.testing.assert_array_equal(idx, pingpong_indices(30, held_out_start(N), N))
    assert idx[0] == 16 and idx[8] == 22  # from the test part on, turning at its end
    np.testing.assert_array_equal(d.params["rotation"], load(target, "camera_rotation")[idx])
    np.testing.assert_array_equal(d.params["translation"], load(target, "camera_translation")[idx])
    np.testing.assert_array_equal(d.params["scale"], load(target, "camera_scale")[idx])
    np.testing.assert_array_equal(d.params["exp"], src.exp)
    np.testing.assert_array_equal(d.cond[..., 3:], load(target, "eyes")[idx])
    mine = render_target(skin_model, target, idx=idx, exp=src.exp, eyes=load(target, "eyes")[idx])
    np.testing.assert_array_equal(d.cond, mine["cond"])  # target identity + cameras, source expression
    own = load(target, "nmfc")[idx]
    changed = (np.abs(d.cond[..., :3].astype(int) - own) > 8).any(-1).mean((1, 2))
    assert changed.max() > 0.002  # the expression did change the render ...
    inter = (d.face_mask & load(target, "face_mask")[idx]).sum((1, 2))
    union = (d.face_mask | load(target, "face_mask")[idx]).sum((1, 2))
    assert (inter / union).min() > 0.85  # ... but not the pose
    assert any("ping-pong" in n for n in d.notes)


def test_head_mode_from_another_person(target, work, skin_model):
    from faceflow.face.eyes import eye_sketch

    d = drive_from_source(target, media(OTHER), "head", work, max_frames=30, model=skin_model, say=quiet)
    src = analyse_source(media(OTHER), work, S, 30, model=skin_model, say=quiet)
    f_t, t_t = load(target, "camera_scale"), load(target, "camera_translation")
    np.testing.assert_allclose(d.params["scale"].mean(), f_t.mean(), rtol=1e-5)
    np.testing.assert_allclose(d.params["translation"].mean(0), t_t.mean(0), atol=1e-3)
    np.testing.assert_allclose(d.params["scale"] / src.scale, f_t.mean() / src.scale.mean(), rtol=1e-5)
    np.testing.assert_array_equal(d.params["rotation"], src.rotation)
    np.testing.assert_array_equal(d.params["exp"], src.exp)
    _, _, r, shift = adapt_cameras(src.scale, src.translation, f_t, t_t)
    for k in (0, 29):
        # map in float64 as drive_from_source does: float32 lmk * r would round differently and the
        # exact (sub-pixel) rasterisation could then flip a pixel at an outline or disc edge
        ref = eye_sketch(src.lmk68[k].astype(np.float64) * r + shift, src.pupils[k].astype(np.float64) * r + shift,
                         (S, S))
        np.testing.assert_array_equal(d.cond[k, ..., 3:], ref)
    # the adapted face sits where the target's does on average
    cy = lambda m: (m * np.arange(S)[:, None]).sum((1, 2)) / m.sum((1, 2))
    assert abs(cy(d.face_mask).mean() - cy(load(target, "face_mask")).mean()) < 0.05 * S


def test_bad_calls(target, work, tmp_path, skin_model):
    with pytest.raises(FaceflowError, match="crop size 256 asked.*crop size 128"):
        drive_from_source(target, media(OTHER), "head", work, size=256, model=skin_model, say=quiet)
    with pytest.raises(FaceflowError, match="mode"):
        drive_from_source(target, media(OTHER), "self", work, model=skin_model, say=quiet)
    with pytest.raises(FaceflowError, match="manifest"):
        drive_from_source(tmp_path, media(OTHER), "face", work, model=skin_model, say=quiet)
    with pytest.raises(FaceflowError, match="not found|does not exist|missing"):
        analyse_source(tmp_path / "nothing.mp4", work, S, say=quiet)


def test_source_without_a_face_raises(tmp_path, skin_model):
    import cv2

    from faceflow.face.landmarks import NoFaceError
    from faceflow.io import write_video

    rng = np.random.default_rng(0)
    frames = [(cv2.resize(rng.random((6, 8, 3)).astype(np.float32), (160, 120)) * 255).clip(0, 255).astype(np.uint8)
              for _ in range(12)]
    clip = write_video(tmp_path / "noface.mp4", frames, 25)
    with pytest.raises(NoFaceError, match="noface.mp4"):
        analyse_source(clip, tmp_path / "work", S, model=skin_model, say=quiet)
    assert not list((tmp_path / "work").glob("*.json"))  # nothing cached


def test_analysis_cache_is_reused(target, work, skin_model, monkeypatch):
    from faceflow.io import read_video

    npz = work / "EDTalk_mouth_source.source.npz"
    first = analyse_source(media(OTHER), work, S, 30, model=skin_model, say=quiet)  # made by face_other or now
    stamp = npz.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("the cached analysis was not reused")

    monkeypatch.setattr(ann, "track_landmarks", boom)
    monkeypatch.setattr(ann, "fit_landmarks", boom)
    said = []
    again = analyse_source(media(OTHER), work, S, 30, model=skin_model, say=said.append)
    assert again.reused and any("reusing" in s for s in said)
    assert npz.stat().st_mtime_ns == stamp
    for k in ("frame_index", "lmk68", "pupils", "id", "exp", "rotation", "translation", "scale"):
        np.testing.assert_array_equal(getattr(again, k), getattr(first, k))
    with pytest.raises(AssertionError, match="not reused"):  # other options: analysed again
        analyse_source(media(OTHER), work, S, 20, model=skin_model, say=quiet)
    with pytest.raises(AssertionError, match="not reused"):  # overwrite: analysed again
        analyse_source(media(OTHER), work, S, 30, model=skin_model, overwrite=True, say=quiet)
    # the pupils are those of the source crops (eq. (7.3)), in crop pixels
    from faceflow.face.eyes import pupil_centres
    from faceflow.face.registration import CropBox, crop_image
    frames, _ = read_video(media(OTHER), max_frames=3)
    box = CropBox.from_dict(first.crop_box)
    for k in range(3):
        np.testing.assert_allclose(first.pupils[k], pupil_centres(crop_image(frames[k], box, S), first.lmk68[k]))


def test_face_lost_midway_frames_are_dropped(target, tmp_path, skin_model):
    from faceflow.io import read_video, write_video

    frames, _ = read_video(media(TARGET), max_frames=30)
    frames[12:20] = 128
    clip = write_video(tmp_path / "lost.mp4", frames, 25, audio_from=media(AUDIO))
    said = []
    d = drive_from_source(target, clip, "head", tmp_path / "work", model=skin_model, say=said.append)
    fi = d.frame_index
    assert not np.isin(fi, np.arange(12, 20)).any() and len(fi) >= 16 and fi[0] == 0
    assert len(d) == len(fi) == len(d.source) == len(d.mouth)
    np.testing.assert_array_equal(d.source, read_video(clip)[0][fi])  # the kept frames as read
    assert any("dropped" in n and "12-" in n for n in d.notes), d.notes
    assert any("dropped" in s for s in said)
    assert d.audio is not None and d.audio.endswith("lost.mp4")
