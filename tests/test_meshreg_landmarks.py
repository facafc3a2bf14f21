"""3DMeshReg from mediapipe's dense landmarks: the closed-form fit against a known linear map, its
translation contract, mediapipe's points through forward(), the template where no face is found,
and `faceflow train meshreg-landmarks` on a real annotated clip."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _media import media

from faceflow.errors import FaceflowError
from faceflow.nets.meshreg import LandmarkMeshReg, fit_landmark_meshreg

OBAMA = "videos/EDTalk_uncrop_Obama.mp4"


def _design(points):
    c = points.mean(1, keepdim=True)
    x = (points - c).flatten(1)
    return c, torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)


def test_fit_recovers_a_low_rank_linear_map_and_moves_with_the_points():
    g = torch.Generator().manual_seed(0)
    N, J, V, K = 300, 12, 9, 4
    points = torch.randn(N, J, 3, generator=g, dtype=torch.float64) * 30 + 100
    w_true = torch.randn(3 * J + 1, K, generator=g, dtype=torch.float64) @ torch.randn(K, 3 * V, generator=g,
                                                                                         dtype=torch.float64) * 0.1
    c, x = _design(points)
    meshes = (x @ w_true).view(N, V, 3) + c
    enc, dec = fit_landmark_meshreg(points, meshes, ridge=1e-12, rank=K)
    assert enc.shape == (3 * J + 1, K) and dec.shape == (K, 3 * V) and enc.dtype == torch.float32
    net = LandmarkMeshReg(V, num_points=J, rank=K)
    net.encoder.copy_(enc)
    net.decoder.copy_(dec)
    pred = net.from_points(points.float())
    np.testing.assert_allclose(pred.numpy(), meshes.numpy(), atol=2e-3)
    # moving every point by t moves every vertex by t (the centroid carries translations exactly)
    t = torch.tensor([7.5, -3.25, 11.0])
    moved = net.from_points(points.float() + t)
    np.testing.assert_allclose((moved - pred).numpy(), t.expand(N, V, 3).numpy(), atol=1e-3)
    # a rank-2 fit of the rank-4 map is worse: the rank is really used
    enc2, dec2 = fit_landmark_meshreg(points, meshes, ridge=1e-12, rank=2)
    err2 = ((x.float() @ enc2 @ dec2).view(N, V, 3) + c.float() - meshes.float()).norm(dim=-1).mean()
    assert err2 > 1.0
    with pytest.raises(FaceflowError, match="rank"):
        fit_landmark_meshreg(points, meshes, rank=3 * V + 1)
    with pytest.raises(FaceflowError, match="points"):
        net.from_points(torch.zeros(2, J + 1, 3))


@pytest.fixture(scope="module")
def registered_frame():
    from faceflow import io as vio
    from faceflow.face.landmarks import MediapipeDetector, detect_image
    from faceflow.face.registration import register_image

    frame = next(iter(vio.read_frames(media(OBAMA), max_frames=1)))
    with MediapipeDetector(static_image_mode=True) as det:
        lmk = detect_image(frame, det).lmk68
    return register_image(frame, lmk)[0]


def test_forward_feeds_mediapipes_points_of_the_image(registered_frame):
    """With the identity map (vertices = mediapipe's points) forward() returns exactly what
    mediapipe finds on the same uint8 image; a face-less image gets the template and is counted."""
    from faceflow.face.landmarks import MediapipeDetector

    J = 478
    net = LandmarkMeshReg(J, num_points=J, rank=3 * J, template=torch.full((J, 3), 5.0))
    net.encoder.copy_(torch.eye(3 * J + 1)[:, :3 * J])
    net.decoder.copy_(torch.eye(3 * J))
    image = torch.from_numpy(registered_frame).permute(2, 0, 1).float().div(255)
    blank = torch.full_like(image, 0.5)
    out = net(torch.stack([image, blank]))
    assert out.shape == (2, J, 3) and net.missed == 1
    with MediapipeDetector(static_image_mode=True, max_faces=1) as det:
        ref = det.detect(registered_frame)[0].dense
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-3)
    assert torch.equal(out[1], net.template)
    net(image[None])
    assert net.missed == 0


@pytest.fixture(scope="module")
def annotated_clip(tmp_path_factory):
    from faceflow.annotate.pipeline import AnnotateConfig, annotate

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ann") / "EDTalk_uncrop_Obama"
    annotate(media(OBAMA), out, AnnotateConfig(size=128, max_frames=12, previews=0), say=lambda m: None)
    return out


def test_train_command_fits_and_writes_loadable_weights(annotated_clip, tmp_path, capsys):
    from faceflow.__main__ import main
    from faceflow.engine.weights import load_weights, weights_info

    out = tmp_path / "meshreg.pt"
    rc = main(["train", "meshreg-landmarks", "--data", str(annotated_clip), "--val-data", str(annotated_clip),
               "--val-stride", "2", "--rank", "16", "--out", str(out)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    info = weights_info(out)
    assert info["kind"] == "meshreg_landmarks" and info["config"]["rank"] == 16
    meta = info["meta"]
    assert meta["fit_images"] == printed["fit_images"] > 0 and len(meta["triangles"]) > 1000
    net = load_weights(out)
    assert isinstance(net, LandmarkMeshReg) and net.encoder.dtype == torch.float32  # kept exact, not fp16
    # on the images it was fitted on, it is far better than its fallback, the mean-face template
    from faceflow.engine.landmark_meshreg import evaluate_points, gather

    data = gather(net, [annotated_clip], stride=1)
    fitted = evaluate_points(net, data)
    template = float((net.template - data.meshes).norm(dim=-1).mean())
    assert fitted["vertex_px"] < 0.5 * template, (fitted, template)
    assert meta["metrics"]["val"]["images"] < meta["metrics"]["train"]["images"]  # --val-stride 2
    # the 3DMeshReg benchmark takes the landmark kind, names it and counts images without a face
    from evaluation.meshreg_benchmark import run_benchmark

    table = run_benchmark(str(out), str(tmp_path / "bench"), real_root=str(annotated_clip.parent), max_pairs=6)
    row = next(line for line in table.splitlines() if line.startswith("| 3DMeshReg (meshreg_landmarks)"))
    tpl = next(line for line in table.splitlines() if line.startswith("| template"))
    assert float(row.split("|")[2].split("/")[0]) < 0.5 * float(tpl.split("|")[2].split("/")[0])
    assert "found no face" in table and "real test 0" in table


def test_train_command_refuses_a_missing_dataset(tmp_path, capsys):
    from faceflow.__main__ import main

    rc = main(["train", "meshreg-landmarks", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt")])
    assert rc != 0
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
