"""The reenactment workflow on a real clip: preprocess -> tiny training (resumable) -> self, face
and head reenactment, and its bad inputs. Small sizes (64 px, a few dozen frames) keep it fast."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from faceflow import io as vio
from faceflow.engine.checkpoint import checkpoint_path, load_checkpoint
from faceflow.engine.config import TrainConfig
from faceflow.engine.logbook import read_csv
from faceflow.engine.trainer import train
from faceflow.errors import FaceflowError
from reenact.data import SequenceDataset, TargetData
from reenact.preprocess import PreprocessConfig, preprocess
from reenact.task import ReenactTask
from tests._media import REPO, media

# slow: trains, preprocesses and reenacts real clips
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TARGET = "videos/EDTalk_uncrop_Obama.mp4"
SOURCE = "videos/MimicTalk_Trump_10s.mp4"
SIZE = 64
FRAMES = 30


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    video = media(TARGET)
    out = tmp_path_factory.mktemp("reenact") / "data"
    m = preprocess(video, out, PreprocessConfig(size=SIZE, flows=("dis2d", "faceflow3d", "none"), max_frames=FRAMES,
                                                device="cpu"), say=lambda m: None)
    return out, m


def _task(data, flow="dis2d", **kw):
    return ReenactTask(ReenactTask.make_config("tiny", data, flow, val_len=4, **kw))


def _cfg(out, **kw):
    base = dict(out=str(out), iterations=6, batch_size=1, lr=2e-4, warmup_steps=0, lr_milestones=[0.5],
                val_every=3, val_samples=2, ckpt_every=3, log_every=1, seed=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------ preprocess
def test_preprocess_outputs(target):
    data, m = target
    N = m["frames"]
    assert m["complete"] and N >= 20 and m["size"] == SIZE
    assert m["split"]["train"] == [0, round(2 * N / 3)] and m["split"]["test"][1] == N
    flows = {name: np.load(data / "flows" / f"{name}.npy") for name in ("faceflow3d", "dis2d", "none")}
    assert {k: v.shape[-1] for k, v in flows.items()} == {"faceflow3d": 3, "dis2d": 2, "none": 0}
    seg = np.load(data / "annotation" / "data" / "segment.npy")
    for name in ("faceflow3d", "dis2d"):
        f, c = flows[name], np.load(data / "flows" / f"{name}_conf.npy").astype(np.float32)
        assert f.shape[:3] == (N, SIZE, SIZE) and np.isfinite(f).all()
        assert c.min() >= 0 and c.max() <= 1
        assert not f[0].any() and not c[0].any()            # no previous frame at a segment start
        assert c[1:].mean() > 0.5                           # consecutive frames of a talking head: mostly trusted
        assert len(np.unique(seg)) >= 1
    # the 3D flow lives on the face (DeepFaceFlow's own mask): the background corners stay 0,
    # and it moves where the fitted face is
    f3 = np.abs(flows["faceflow3d"][1:].astype(np.float32)).sum(-1)
    k = SIZE // 8
    assert f3[:, :k, :k].max() == 0 and f3[:, :k, -k:].max() == 0
    fm = np.load(data / "annotation" / "data" / "face_mask.npy")[1:]
    assert (f3[fm] > 0).mean() > 0.5
    # mouth boxes: side 72 * S / 256, inside the image, around the mouth landmarks
    boxes = np.load(data / "mouth.npy")
    lmk = np.load(data / "annotation" / "data" / "lmk68.npy")
    side = round(72 * SIZE / 256)
    assert (boxes[:, 2] - boxes[:, 0] == side).all() and (boxes[:, 3] - boxes[:, 1] == side).all()
    assert boxes.min() >= 0 and boxes[:, 2:].max() <= SIZE
    centre = lmk[:, 48:68].mean(1)
    assert ((centre >= boxes[:, :2]) & (centre <= boxes[:, 2:])).all()
    info = vio.probe(data / "nmfc.mp4", exact=True)
    assert info.num_frames == N and (info.width, info.height) == (SIZE, SIZE)


def test_preprocess_manifest_records_the_source_and_weights_portably(target):
    import hashlib
    import json

    from _portable import assert_portable

    data, m = target
    assert assert_portable(data / "manifest.json", data.parent) == json.loads(json.dumps(m))
    video = media(TARGET)
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert m["source_file"] == {"file": video.name, "bytes": video.stat().st_size, "sha256": sha(video)}
    assert os.path.basename(m["source"]) == video.name
    w = m["provenance"]["weights"]
    from faceflow.estimate import WEIGHTS_DIR
    assert w["dffnet"]["sha256"] == sha(WEIGHTS_DIR / "dffnet.pt")
    assert w["dffnet"]["file"] == "faceflow/weights/dffnet.pt"
    assert "morphable_model" in w and m["provenance"]["device"].startswith("cpu")
    flow_meta = json.loads((data / "flows" / "faceflow3d.json").read_text())
    assert flow_meta["weights"]["meshreg"]["sha256"] == sha(WEIGHTS_DIR / "meshreg.pt")


def test_preprocess_rerun_is_cached_and_rejects_bad_options(target, tmp_path):
    data, m = target
    meta = data / "flows" / "dis2d.json"
    before = meta.stat().st_mtime_ns
    m2 = preprocess(media(TARGET), data, PreprocessConfig(size=SIZE, flows=("dis2d",), max_frames=FRAMES),
                    say=lambda m: None)
    assert meta.stat().st_mtime_ns == before            # not recomputed
    assert set(m2["flows"]) == {"dis2d", "faceflow3d", "none"}  # earlier providers stay listed
    with pytest.raises(FaceflowError, match="flow provider"):
        preprocess(media(TARGET), tmp_path / "x", PreprocessConfig(flows=("flownet2",)))
    with pytest.raises(FaceflowError, match="multiple of 8"):
        preprocess(media(TARGET), tmp_path / "x", PreprocessConfig(size=100))


def test_dataset_items_match_the_stored_conditioning(target):
    data, _ = target
    td = TargetData(data, "faceflow3d")
    ds = SequenceDataset(td, "train", 4)
    item = ds[3]
    s = int(item["start"])
    assert item["cond"].shape == (4, 6, SIZE, SIZE) and item["flow"].shape == (4, 3, SIZE, SIZE)
    nmfc = np.load(data / "annotation" / "data" / "nmfc.npy")[s:s + 4]
    assert np.allclose((item["cond"][:, :3].permute(0, 2, 3, 1).numpy() + 1) * 127.5, nmfc, atol=1e-3)
    assert item["real"].min() >= -1 and item["real"].max() <= 1
    lo, hi = td.part("train")
    assert all(lo <= st and st + 4 <= hi for st in ds.starts)
    with pytest.raises(FaceflowError, match="no cached 'x' flow|unknown"):
        TargetData(data, "x")


# ------------------------------------------------------------------ training
def _state(run):
    return load_checkpoint(checkpoint_path(run, "last"))


def test_training_logs_losses_writes_samples_and_resumes_exactly(target, tmp_path):
    data, _ = target
    ref = tmp_path / "ref"
    s = train(_task(data), _cfg(ref), progress=False)
    assert s["status"] == "done" and s["step"] == 6
    rows = read_csv(ref / "log.csv")
    for name in ("D_image", "D_mouth", "D_dynamics", "G_image", "G_mouth", "G_dynamics", "G_feat", "G_temporal",
                 "G_l1", "G_face", "apd", "seq_len"):
        assert name in rows[0], name
    assert (ref / "samples" / "step_0000003.png").is_file() and (ref / "samples" / "step_0000006.mp4").is_file()
    assert "apd" in read_csv(ref / "val.csv")[0]
    # interrupted by the time budget after step 1, then resumed: the same weights as straight through
    run = tmp_path / "run"
    s1 = train(_task(data), _cfg(run, max_minutes=1e-9), progress=False)
    assert s1["status"] == "time budget" and s1["step"] == 1
    s2 = train(_task(data), _cfg(run), progress=False)
    assert s2["step"] == 6
    a, b = _state(ref)["models"], _state(run)["models"]
    for net in ("G", "D"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    # a different flow provider is a different run
    with pytest.raises(FaceflowError, match="different configuration"):
        train(_task(data, flow="faceflow3d"), _cfg(run), progress=False)


def test_tiny_training_reduces_the_pixel_error(target, tmp_path):
    data, _ = target
    train(_task(data), _cfg(tmp_path / "r", iterations=40, val_every=40), progress=False)
    apd = [float(r["apd"]) for r in read_csv(tmp_path / "r" / "log.csv")]
    assert np.mean(apd[-5:]) < 0.8 * np.mean(apd[:5])


# ------------------------------------------------------------------ reenactment
@pytest.fixture(scope="module")
def model(target, tmp_path_factory):
    data, _ = target
    out = tmp_path_factory.mktemp("model") / "m"
    train(_task(data), _cfg(out, iterations=3), progress=False)
    return out


def test_self_reenactment_writes_the_held_out_frames(model, target, tmp_path):
    from reenact.run import reenact

    _, m = target
    lo, hi = m["split"]["test"]
    s = reenact(model, "self", tmp_path / "self.mp4", progress=False, say=lambda m: None)
    assert s["frames"] == hi - lo and s["apd"] > 0
    info = vio.probe(tmp_path / "self.mp4", exact=True)
    assert info.num_frames == hi - lo and info.width == SIZE
    s = reenact(model, "self", tmp_path / "sbs.mp4", side=True, max_frames=4, progress=False, say=lambda m: None)
    assert s["frames"] == 4 and vio.probe(tmp_path / "sbs.mp4").width == 3 * SIZE
    # OUT.json beside the video: the run, reproducibly, without absolute paths
    import hashlib

    from _portable import assert_portable
    rec = assert_portable(tmp_path / "sbs.json", tmp_path, model)
    assert rec["out"] == "sbs.mp4" and rec["frames"] == 4 and rec["mode"] == "self" and rec["source"] is None
    ck = checkpoint_path(model, "last")
    assert rec["provenance"]["weights"]["generator"]["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()


@pytest.mark.parametrize("mode", ["face", "head"])
def test_cross_reenactment_from_another_person(model, tmp_path, mode):
    from reenact.run import reenact

    src = media(SOURCE)
    s = reenact(model, mode, tmp_path / f"{mode}.mp4", src, max_frames=8, work_dir=tmp_path / "work",
                progress=False, say=lambda m: None)
    info = vio.probe(tmp_path / f"{mode}.mp4", exact=True)
    assert s["frames"] == 8 and info.num_frames == 8
    assert abs(info.fps - vio.probe(src).fps) < 0.01          # the source's frame rate
    assert "apd" not in s                                      # no ground truth


def test_bad_inputs(model, target, tmp_path):
    from faceflow.face.landmarks import NoFaceError
    from reenact.run import reenact

    with pytest.raises(FaceflowError, match="model directory not found"):
        reenact(tmp_path / "nope", "self", tmp_path / "o.mp4", progress=False)
    # the checkpoint file instead of the run directory: says which directory to give
    with pytest.raises(FaceflowError, match=f"is a file: give the model's run directory.*{model.name}"):
        reenact(checkpoint_path(model, "last"), "self", tmp_path / "o.mp4", progress=False)
    with pytest.raises(FaceflowError, match="tpu"):
        reenact(model, "self", tmp_path / "o.mp4", progress=False, device="tpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceflowError, match="no trained model"):
        reenact(tmp_path / "empty", "self", tmp_path / "o.mp4", progress=False)
    with pytest.raises(FaceflowError, match="needs --source"):
        reenact(model, "head", tmp_path / "o.mp4", progress=False, say=lambda m: None)
    # a source without a face
    flat = tmp_path / "flat.mp4"
    vio.write_video(flat, np.full((12, 96, 96, 3), 128, np.uint8), fps=25)
    with pytest.raises(NoFaceError):
        reenact(model, "head", tmp_path / "o.mp4", flat, work_dir=tmp_path / "w", progress=False, say=lambda m: None)
    assert not (tmp_path / "o.mp4").exists()
    # mismatched resolution: the model's target data re-made at another size
    ck = load_checkpoint(checkpoint_path(model, "last"))
    ck["config"]["task_config"]["size"] = SIZE * 2
    bad = tmp_path / "bad"
    (bad / "checkpoints").mkdir(parents=True)
    torch.save(ck, bad / "checkpoints" / "last.pt")
    with pytest.raises(FaceflowError, match="resolution mismatch"):
        reenact(bad, "self", tmp_path / "o.mp4", progress=False, say=lambda m: None)


def test_cli_reports_errors_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "reenact", "run", str(tmp_path / "nope"), "--mode", "self", "--out",
                        str(tmp_path / "o.mp4")], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 2 and "model directory not found" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "reenact", "train", str(tmp_path), str(tmp_path / "m")],
                       capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 2 and "not a prepared target" in r.stderr
    # a missing --flow-weights is refused before the annotation stage (which would take minutes)
    clip = tmp_path / "clip.mp4"
    vio.write_video(clip, np.full((4, 64, 64, 3), 128, np.uint8), fps=25)
    r = subprocess.run([sys.executable, "-m", "reenact", "preprocess", str(clip),
                        str(tmp_path / "d"), "--flow-weights", str(tmp_path / "nowhere")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "--flow-weights" in r.stderr and "meshreg.pt not found" in r.stderr, r.stderr
    assert not (tmp_path / "d" / "annotation").exists()
    r = subprocess.run([sys.executable, "-m", "reenact", "train", "--help"], capture_output=True, text=True, env=env,
                       cwd=REPO)
    assert "--ckpt-every" in r.stdout                               # the checkpoint interval is an option


def test_ddp_two_processes_match_one_process(target, tmp_path):
    """torchrun with 2 gloo processes (batch 1 each) learns what one process learns with batch 2
    (flow 'none': every loss term is a per-sample mean, instance norm keeps samples apart)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    data, _ = target
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    args = ["--flow", "none", "--preset", "tiny", "--max-iters", "1", "--batch-size", "2", "--val-every", "1",
            "--quiet", "--device", "cpu"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "reenact", "train", str(data), str(tmp_path / "ddp"), *args],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "reenact", "train", str(data), str(tmp_path / "one"), *args],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _state(tmp_path / "one"), _state(tmp_path / "ddp")
    assert a["step"] == b["step"] == 1 and len(b["rng"]) == 2
    # one Adam step moves a weight by ~lr * sign(gradient) whatever the gradient's size, so the
    # rare near-zero gradient entries, whose sign depends on summation order, may differ by up
    # to 2 lr; every other weight agrees
    diffs = torch.cat([(v.float() - b["models"][net][k].float()).abs().flatten()
                       for net in ("G", "D") for k, v in a["models"][net].items() if v.is_floating_point()])
    assert diffs.max() <= 2 * 2e-4 + 1e-6
    assert (diffs > 1e-5).float().mean() < 0.002


# ------------------------------------------------------------------ packages, cycle, cross tables
def test_face_mode_draws_the_target_eyes_as_stored(model, target, tmp_path):
    # face mode draws the target's eye sketches from its stored landmarks and pupils (a package
    # carries no eyes.npy): the same images as the annotation's eyes.npy
    from reenact.drive import drive_from_source, held_out_start, pingpong_indices

    data, m = target
    d = drive_from_source(data / "annotation", media(SOURCE), "face", tmp_path / "w", max_frames=6, say=lambda s: None)
    N = m["frames"]
    stored = np.load(data / "annotation" / "data" / "eyes.npy")[pingpong_indices(6, held_out_start(N), N)]
    drawn = d.cond[..., 3:]
    assert drawn.shape == stored.shape
    assert (drawn == stored).mean() > 0.999                           # anti-aliased edges may differ by a pixel


def test_a_packed_model_drives_like_its_run_and_refuses_self_mode(model, target, tmp_path):
    from reenact.package import is_package, load_package, pack_model, resolve_model
    from reenact.run import load_model, reenact

    r = pack_model(model, tmp_path / "pkg", say=lambda m: None)
    pkg = tmp_path / "pkg"
    assert is_package(pkg) and r["bytes"] < 3e6 and not list(tmp_path.glob(".pkg*"))  # no partial folder left
    assert set(r["files"]) >= {"generator.pt", "model_card.md", "target/manifest.json",
                               "target/annotation/data/camera_rotation.npy"}
    card = (pkg / "model_card.md").read_text()
    assert "EDTalk_uncrop_Obama.mp4" in card and "float16" in card and "/tmp" not in card
    G0, tc0, step0 = load_model(model)
    G1, tc1, step1 = load_package(pkg)
    assert step0 == step1 and tc1.flow == tc0.flow
    for (k, a), b in zip(G0.state_dict().items(), G1.state_dict().values()):
        assert torch.allclose(a.float(), b, atol=2e-3, rtol=1e-3), k   # float16 storage
    from reenact.run import drive_model

    kw = dict(max_frames=6, progress=False, say=lambda m: None)
    a = drive_model(model, "head", media(SOURCE), work_dir=tmp_path / "w", **kw)
    b = drive_model(pkg, "head", media(SOURCE), work_dir=tmp_path / "w", **kw)
    assert np.array_equal(a.drive.cond, b.drive.cond)                 # the same conditioning from the package
    diff = np.abs(a.fake.astype(int) - b.fake.astype(int))
    assert diff[0].mean() < 1.0 and diff.mean() < 6.0                  # float16 weights; fed-back frames drift a little
    s = reenact(pkg, "head", tmp_path / "pkg.mp4", media(SOURCE), work_dir=tmp_path / "w", **kw)
    assert s["frames"] == 6 and vio.probe(tmp_path / "pkg.mp4", exact=True).num_frames == 6
    with pytest.raises(FaceflowError, match="packed model.*self"):
        reenact(pkg, "self", tmp_path / "s.mp4", **kw)
    (pkg / "generator.pt").write_bytes(b"not a torch file")
    with pytest.raises(FaceflowError, match="not a readable reenactment package"):
        load_package(pkg)
    assert resolve_model(tmp_path / "x") == tmp_path / "x"
    # packing never replaces a folder that is not a package (a run, a models folder)
    with pytest.raises(FaceflowError, match="not a package"):
        pack_model(model, model, say=lambda m: None)
    assert checkpoint_path(model, "last").is_file()


def test_the_shipped_demo_model_is_a_package():
    from reenact.package import DEMO_DIR, is_package, load_package

    assert is_package(DEMO_DIR), f"the demo package is missing from {DEMO_DIR}"
    G, tc, step = load_package(DEMO_DIR)
    assert step > 0 and tc.size == 256 and tc.generator["upsample"] == "resize"
    assert sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file()) < 5e6
    assert "Held-out self-reenactment" in (DEMO_DIR / "model_card.md").read_text()


def test_cycle_maps_the_source_onto_the_result_and_reports_the_round_trip(model, tmp_path):
    # the round trip needs a model that draws a face the back leg can track: the shipped demo
    # (Obama) both ways, driven by its own clip
    from reenact.cycle import cycle, source_in_result_crop
    from reenact.package import DEMO_DIR

    # the composite map: a point's crop position under both legs, by hand
    first = {"crop_box": {"x0": 10.0, "y0": 20.0, "side": 100.0}, "size": 50, "adapt": [2.0, 3.0, -4.0]}
    second = {"crop_box": {"x0": 0.0, "y0": 0.0, "side": 100.0}, "size": 64, "adapt": [1.0, 0.0, 0.0]}
    img = np.zeros((1, 200, 200, 3), np.uint8)
    img[0, 45, 35] = 255                                              # source pixel (x 35, y 45)
    out = source_in_result_crop(img, first, second, 64)
    # first: crop (35 - 10) / 2 = 12.5, (45 - 20) / 2 = 12.5 -> x 2 + (3, -4) = (28, 21); second: x 0.64
    y, x = np.unravel_index(out[0, ..., 0].argmax(), out.shape[1:3])
    assert abs(x - 28 * 0.64) <= 1 and abs(y - 21 * 0.64) <= 1
    s = cycle("demo", DEMO_DIR, media(TARGET), tmp_path / "cyc.mp4", side=True, max_frames=6, device="cpu",
              work_dir=tmp_path / "w", progress=False, say=lambda m: None)
    assert s["mode"] == "cycle" and s["frames"] == 6 and 0 < s["round_trip_apd"] < 40   # the source came back
    assert s["round_trip_csim"] > 0.85 and s["forward_csim_to_source"] > 0.85         # Obama to Obama
    assert vio.probe(tmp_path / "cyc.mp4").width == 3 * 256 and (tmp_path / "w" / "forward.mp4").is_file()
    rec = __import__("json").loads((tmp_path / "cyc.json").read_text())
    assert rec["round_trip_apd"] == pytest.approx(s["round_trip_apd"])
    with pytest.raises(FaceflowError, match="back-model"):
        cycle(model, None, media(TARGET), tmp_path / "c2.mp4", work_dir=tmp_path / "w2", say=lambda m: None)


def test_cross_reenactment_tables(model, tmp_path):
    from evaluation.cross_reenact import CrossReenactConfig, evaluate

    cfg = CrossReenactConfig(modes=("head", "face"), max_frames=6, device="cpu", sample_frames=4, progress=False)
    out = tmp_path / "cross"
    res = evaluate([model], [media(SOURCE), media(TARGET)], out, cfg, say=lambda m: None)
    # the target's own video is skipped; the other driver gives a head and a face cell
    assert sorted(c[2] for c in res["computed"]) == ["face", "head"] and all(c[1] != "EDTalk_uncrop_Obama"
                                                                            for c in res["computed"])
    rows = [r for r in res["rows"] if not r["driver"].startswith("mean")]
    assert len(rows) == 2 and all(r["frames"] == 6 for r in rows)
    for r in res["records"]:
        m = r["metrics"]
        assert m["csim_source"] is not None and -1 <= m["csim_source"] <= 1
        assert m["csim_target"] is not None
        # three steps of training make no face: the re-fit metrics are n/a, and the notes say why
        assert (m["aed"] is None) == any("n/a" in n for n in r["notes"])
    md = (out / "table.md").read_text()
    assert "CSIM target ↑" in md and "mean of 1" in md and (out / "commands.md").is_file()
    assert len(list((out / "samples").glob("*.mp4"))) == 2
    again = evaluate([model], [media(SOURCE)], out, cfg, say=lambda m: None)
    assert again["computed"] == []                                    # resumable: nothing recomputed
