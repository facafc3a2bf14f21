"""The two storage forms of an annotation (faceflow.annotate.store): the compact form (JPEG crops +
fits) draws the same PNCC, NMFC, eye sketches, masks and 3D flows the full form stores; conversion
both ways; training pairs from either form; the frame codec."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _media import media

from faceflow.annotate.pipeline import AnnotateConfig, annotate
from faceflow.annotate.store import (
    COMPACT_LAYOUT,
    Annotation,
    convert_annotation,
    decode_frame,
    directory_bytes,
    encode_frame,
    frames_psnr,
)
from faceflow.data.pseudo import AnnotatedPairs
from faceflow.errors import FaceflowError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # annotates a real clip twice

OBAMA = "videos/EDTalk_uncrop_Obama.mp4"
CFG = dict(size=128, max_frames=14, previews=1)


@pytest.fixture(scope="module")
def forms(tmp_path_factory, skin_model):
    """The same 14 frames: (annotated full, annotated compact, the full one converted to compact).
    The two annotate runs fit separately (the fit may differ in its last digits between runs:
    BLAS sums), so the drawn-vs-stored comparisons use the conversion, which shares the fit."""
    root = tmp_path_factory.mktemp("forms")
    annotate(media(OBAMA), root / "full", AnnotateConfig(**CFG), say=lambda m: None)
    annotate(media(OBAMA), root / "compact", AnnotateConfig(**CFG, storage="compact"), say=lambda m: None)
    convert_annotation(root / "full", root / "converted", "compact", model=skin_model, progress=False)
    return root / "full", root / "compact", root / "converted"


def test_compact_layout_and_manifest(forms):
    full, compact = forms[:2]
    m = Annotation(compact).manifest
    assert m["storage"] == "compact" and m["layout"] == COMPACT_LAYOUT
    assert m["frames"] == {"codec": "jpeg", "quality": 95}
    names = {p.name for p in (compact / "data").iterdir()}
    assert names == set(COMPACT_LAYOUT)  # nothing drawn is stored, no chunk folder left
    assert Annotation(full).manifest["storage"] == "full"
    # the compact form is a small fraction of the full one (crops are ~1/10 of the full form's bytes)
    assert directory_bytes(compact) < 0.05 * directory_bytes(full)


def test_compact_draws_what_full_stores(forms, skin_model):
    full, compact = Annotation(forms[0]), Annotation(forms[2], model=skin_model)
    assert full.N == compact.N == 14
    for name, arr in full.small.items():  # the source of truth is stored identically
        np.testing.assert_array_equal(arr, compact.small[name], err_msg=name)
    for i in range(full.N):
        for name in ("pncc", "nmfc", "eyes"):
            a, ma = getattr(full, name)(i)
            b, mb = getattr(compact, name)(i)
            assert (ma != mb).mean() < 1e-3, (name, i)  # a pixel or two on an edge at most
            both = ma & mb
            d = np.abs(a.astype(np.float32) - b.astype(np.float32))[both]
            assert d.max() <= (1.0 if name != "pncc" else 2e-3), (name, i, d.max())
        # crops: JPEG at quality 95 of the very crops the full form stores
        np.testing.assert_array_equal(decode_frame(encode_frame(full.crop(i))), compact.crop(i))
    for m in range(len(full.pairs)):
        fa, ma = full.flow(m)
        fb, mb = compact.flow(m)
        assert (ma != mb).mean() < 1e-3
        assert np.abs(fa - fb)[ma & mb].max() < 0.01  # float16 storage of the same flow


def test_jpeg_crops_are_close_and_png_is_lossless(forms, tmp_path, skin_model):
    full = Annotation(forms[0])
    assert 40 < frames_psnr(Annotation(forms[1]), full) < 60
    convert_annotation(forms[0], tmp_path / "png", "compact", frames="png", progress=False)
    png = Annotation(tmp_path / "png")
    for i in range(full.N):
        np.testing.assert_array_equal(png.crop(i), full.crop(i))


def test_convert_round_trip_and_refusals(forms, tmp_path, skin_model):
    full = Annotation(forms[0])
    m = convert_annotation(forms[0], tmp_path / "c", "compact", model=skin_model, progress=False)
    assert m["storage"] == "compact" and m["converted_from"]["storage"] == "full"
    np.testing.assert_array_equal(np.load(tmp_path / "c" / "data" / "crops_encoded.npy"),
                                  np.load(forms[1] / "data" / "crops_encoded.npy"))  # = annotate's own compact form
    back = convert_annotation(tmp_path / "c", tmp_path / "f", "full", model=skin_model, progress=False)
    assert back["storage"] == "full" and not (tmp_path / "f.partial").exists()
    again = Annotation(tmp_path / "f")
    for i in range(full.N):
        a, ma = full.pncc(i)
        b, mb = again.pncc(i)
        assert (ma != mb).mean() < 1e-3 and np.abs(a.astype(np.float32) - b)[ma & mb].max() <= 2e-3
    with pytest.raises(FaceflowError, match="exists"):
        convert_annotation(forms[0], tmp_path / "c", "compact", progress=False)
    with pytest.raises(FaceflowError, match="unknown storage"):
        convert_annotation(forms[0], tmp_path / "x", "zip", progress=False)
    with pytest.raises(FaceflowError, match="incomplete annotation"):
        Annotation(tmp_path)  # a folder without manifest.json


def test_training_pairs_from_either_form(forms, skin_model):
    a = AnnotatedPairs([forms[0]], model=skin_model)
    b = AnnotatedPairs([forms[2]], model=skin_model, cache=4)
    assert len(a) == len(b) > 0
    for k in (0, len(a) // 2, len(a) - 1):
        x, y = a[k], b[k]
        for key in ("mesh1", "mesh2", "identity", "kind"):
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=1e-3)
        assert (x["mask"] != y["mask"]).float().mean() < 1e-3
        m = x["mask"] & y["mask"]
        assert (x["flow"] - y["flow"]).abs()[m].max() < 0.01
        assert (x["pncc"] - y["pncc"]).abs().amax(0)[m].max() < 2e-3
        assert (x["i1"] - y["i1"]).abs().mean() < 0.01 and (x["i2"] - y["i2"]).abs().mean() < 0.01  # JPEG
    uncached = AnnotatedPairs([forms[2]], model=skin_model)
    for k in (0, 1, 0):  # item 0 again: from the cache, equal to a fresh drawing, and the cache unharmed by writes
        y = b[k]
        for key in ("flow", "pncc", "mask", "i1"):
            torch.testing.assert_close(y[key], uncached[k][key], rtol=0, atol=0)
        y["i1"].fill_(0.5)  # i1 shares memory with the array the store handed out


def test_frame_codec_round_trip_and_errors():
    rng = np.random.default_rng(0)
    img = (rng.random((32, 48, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(decode_frame(encode_frame(img, "png")), img)
    smooth = np.zeros((64, 64, 3), np.uint8)
    smooth[..., 0] = np.arange(64)[None] * 3
    smooth[..., 2] = np.arange(64)[:, None] * 2
    jpg = decode_frame(encode_frame(smooth, "jpeg", 95))
    assert jpg.shape == smooth.shape and np.abs(jpg.astype(int) - smooth).mean() < 2  # RGB order kept
    assert len(encode_frame(smooth, "jpeg", 30)) < len(encode_frame(smooth, "jpeg", 95))
    with pytest.raises(FaceflowError, match="codec"):
        encode_frame(img, "gif")
    with pytest.raises(FaceflowError, match="decoded"):
        decode_frame(np.frombuffer(b"not an image", np.uint8))


def test_synthetic_data_sources_read_the_compact_form(forms):
    """The synthetic-data generator's backgrounds and face masks come from either form."""
    from faceflow.data.synth_sources import load_clip

    full, compact = load_clip(forms[0], "train"), load_clip(forms[2], "train")
    assert compact.crops.shape == full.crops.shape and len(compact.crops) == 14 and compact.crops.ndim == 4
    np.testing.assert_array_equal(compact.crops[3], Annotation(forms[2]).crop(3))
    assert full.face_mask is not None and compact.face_mask is None  # optional; drawing it would need the model
    np.testing.assert_array_equal(compact.exp, full.exp)


def test_compact_render_resumes_after_a_kill_and_a_lost_chunk(forms, tmp_path, monkeypatch):
    """Interrupted after 10 frames (checkpoint at 8), a chunk before the checkpoint lost and a
    temporary file left half-written: the rerun re-encodes and ends with the crops of an
    uninterrupted run, byte for byte."""
    import faceflow.annotate.pipeline as P

    cfg = AnnotateConfig(**CFG, storage="compact", batch=1)
    out = tmp_path / "ann"
    real_render, calls = P._RenderJob.render, []

    def dying(self, batch):
        calls.append(1)
        if len(calls) > 10:
            raise KeyboardInterrupt  # as a kill would stop it
        real_render(self, batch)

    monkeypatch.setattr(P._RenderJob, "render", dying)
    with pytest.raises(KeyboardInterrupt):
        annotate(media(OBAMA), out, cfg, say=lambda m: None)
    monkeypatch.setattr(P._RenderJob, "render", real_render)
    chunks = out / "data" / "crops_chunks"
    assert len(list(chunks.glob("[0-9]*.npz"))) == 10
    (chunks / "0000002.npz").unlink()  # lost before the checkpoint at frame 8
    (chunks / ".0000011.tmp.partial.npz").write_bytes(b"PK\x03\x04 half a zip")
    said: list[str] = []
    annotate(media(OBAMA), out, cfg, say=said.append)
    assert any("resuming at 8" in m for m in said) and any("encoding every frame again" in m for m in said)
    assert not chunks.exists()
    np.testing.assert_array_equal(np.load(out / "data" / "crops_encoded.npy"),
                                  np.load(forms[1] / "data" / "crops_encoded.npy"))
    np.testing.assert_array_equal(np.load(out / "data" / "crops_offsets.npy"),
                                  np.load(forms[1] / "data" / "crops_offsets.npy"))
