"""dlib's face models offline (faceflow.face.landmarks.DlibDetector, faceflow.face.dlib_face) and
the identity metric CSIM (faceflow.face.identity): hand-computed cosines, and real faces (the same
person over a clip scores higher than other persons)."""
from __future__ import annotations

import numpy as np
import pytest
from _media import media

from faceflow import io as vio
from faceflow.errors import FaceflowError, MediaError
from faceflow.face.identity import cosine, csim, embed_frames, identity_reference

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cosine_and_reference_by_hand():
    assert cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert cosine([3, 4], [6, 8]) == pytest.approx(1.0)
    assert cosine([1, 1], [1, 0]) == pytest.approx(1 / np.sqrt(2))
    with pytest.raises(FaceflowError):
        cosine([0, 0], [1, 0])

    class Fixed:  # an embedder returning given vectors, None for a "no face" frame
        def __init__(self, vecs):
            self.vecs = iter(vecs)

        def embed(self, frame, landmarks=None):
            v = next(self.vecs)
            return None if v is None else np.asarray(v, np.float32)

    a, b = np.eye(128)[0] * 2, np.eye(128)[1] * 5
    ref = identity_reference(Fixed([a, b, None]), [0, 0, 0])          # unit vectors averaged, renormalised
    np.testing.assert_allclose(ref, (np.eye(128)[0] + np.eye(128)[1]) / np.sqrt(2), atol=1e-6)
    out = csim(Fixed([a, None, a + b * 0.4]), [0, 0, 0], ref)
    assert out["frames"] == 3 and out["missed"] == 1 and np.isnan(out["per_frame"][1])
    want = [1 / np.sqrt(2), cosine(a + b * 0.4, ref)]
    assert out["csim"] == pytest.approx(np.mean(want))
    with pytest.raises(MediaError, match="no face"):
        identity_reference(Fixed([None, None]), [0, 0])


@pytest.fixture(scope="module")
def embedder():
    from faceflow.face.dlib_face import FaceEmbedder

    return FaceEmbedder()


def _frames(rel: str, start: int, n: int = 6, step: int = 10):
    return list(vio.read_frames(media(rel), start=start, max_frames=n * step))[::step]


def test_csim_same_person_over_a_clip_beats_other_persons(embedder):
    """References from the first seconds of three clips; later frames of each clip score higher
    against their own person than against the others (measured: 0.99 vs 0.77-0.86)."""
    clips = {"obama": "videos/EDTalk_uncrop_Obama.mp4", "trump": "videos/MimicTalk_Trump_10s.mp4",
             "d10": "videos/LivePortrait_d10.mp4"}
    refs = {k: identity_reference(embedder, _frames(v, 0)) for k, v in clips.items()}
    for k, v in clips.items():
        later = _frames(v, 120)
        own = csim(embedder, later, refs[k])
        assert own["missed"] == 0 and own["csim"] > 0.95, (k, own["csim"])
        for other in refs:
            if other != k:
                assert csim(embedder, later, refs[other])["csim"] < own["csim"] - 0.08, (k, other)


def test_embedding_at_given_landmarks_and_no_face(embedder):
    from faceflow.face.landmarks import MediapipeDetector, detect_image

    frame = _frames("videos/EDTalk_uncrop_Obama.mp4", 0, n=1)[0]
    with MediapipeDetector(static_image_mode=True) as det:
        lmk = detect_image(frame, det).lmk68
    found = embedder.embed(frame)
    given = embedder.embed(frame, lmk)                                  # the face at mediapipe's landmarks
    assert found.shape == (128,) and cosine(found, given) > 0.98
    assert embedder.embed(np.full((120, 120, 3), 128, np.uint8)) is None
    embs, ok = embed_frames(embedder, [frame, np.full((120, 120, 3), 128, np.uint8)])
    assert ok.tolist() == [True, False] and not embs[1].any()


def test_dlib_detector_finds_68_points_near_mediapipes(embedder):
    from faceflow.face.landmarks import DlibDetector, MediapipeDetector, detect_image, make_detector

    frame = _frames("videos/EDTalk_uncrop_Obama.mp4", 0, n=1)[0]
    det = make_detector("dlib")
    assert isinstance(det, DlibDetector)
    faces = det.detect(frame)
    assert len(faces) == 1 and faces[0].lmk68.shape == (68, 2) and faces[0].dense is None
    with MediapipeDetector(static_image_mode=True) as mp:
        ref = detect_image(frame, mp).lmk68
    iod = np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0))
    # the two 68-point conventions agree on the inner face (eyes, nose, mouth) to a few % of the IOD
    inner = np.arange(17, 68)
    assert np.linalg.norm(faces[0].lmk68[inner] - ref[inner], axis=1).mean() / iod < 0.08
    assert det.detect(np.full((120, 120, 3), 128, np.uint8)) == []


def test_dlib_models_folder_setting(tmp_path, monkeypatch):
    from faceflow.errors import AssetNotFoundError
    from faceflow.face.landmarks import dlib_model

    assert dlib_model("recognition").is_file()
    monkeypatch.setenv("FACEFLOW_DLIB_MODELS", str(tmp_path))
    with pytest.raises(AssetNotFoundError, match="shape_predictor_68_face_landmarks.dat"):
        dlib_model("landmarks68")
    with pytest.raises(FaceflowError, match="unknown dlib model"):
        dlib_model("nope")
