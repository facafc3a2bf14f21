"""The Gradio front-end (apps.gradio_app), served in-process on a free port and driven with
gradio_client like a user would: the flow tab on real frames (against a direct FaceFlow call),
readable errors, the model list, a tiny prepare-and-train then reenact round trip, the
evaluation tables, the upload limits, and a headless-browser look at the page."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _media import REPO, media

pytestmark = pytest.mark.usefixtures("one_thread")
needs_server = pytest.mark.slow  # the tests that start the app (a module-scoped server)

if importlib.util.find_spec("gradio") is None or importlib.util.find_spec("gradio_client") is None:
    pytest.skip("gradio and gradio_client are not installed", allow_module_level=True)

# after the skip above: these need gradio_client
from gradio_client import Client, handle_file  # noqa: E402  (after the skip when gradio is absent)
from gradio_client.exceptions import AppError  # noqa: E402  (after the skip, as above)

from apps import gradio_app as ga  # noqa: E402  (imports gradio lazily, in build_app)
from apps import tab_evaluate  # noqa: E402  (the Evaluate tab's folder checks)
from apps.tab_flow import FLOW_FILES  # noqa: E402  (after the skip, as above)
from faceflow import io as vio  # noqa: E402  (after the skip, with the imports above)

CLIP = "videos/EDTalk_uncrop_Obama.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app, client, workdir, url) of an app launched in this process; GRADIO_TEMP_DIR restored after."""
    old_tmp = os.environ.get("GRADIO_TEMP_DIR")
    root = tmp_path_factory.mktemp("app")
    work = root / "work"
    app = ga.build_app(work, device="cpu")
    _, url, share_url = ga.launch(app, port=_free_port(), block=False, quiet=True)
    client = Client(url, verbose=False, download_files=str(root / "client"), analytics_enabled=False)
    try:
        yield app, client, work, url, share_url
    finally:
        app.close()
        app.faceflow.close()
        if old_tmp is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = old_tmp


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Frames 0 and 8 of the shared clip as PNGs (lossless copies of the decoded frames)."""
    d = tmp_path_factory.mktemp("frames")
    fr = list(vio.read_frames(media(CLIP), max_frames=9))
    paths = []
    for k in (0, 8):
        vio.write_image(d / f"f{k}.png", fr[k])
        paths.append(d / f"f{k}.png")
    return paths, fr[0], fr[8]


# ------------------------------------------------------------------ serving policy
def test_cli_help_and_lazy_gradio_import():
    code = ("import sys, apps.gradio_app as g; assert 'gradio' not in sys.modules; "
            "g.main(['--help'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    for opt in ("--port", "--host", "--workdir", "--models", "--share"):
        assert opt in r.stdout
    assert "default: this machine only" in r.stdout


@needs_server
def test_offline_local_and_one_job_at_a_time(served):
    app, _, work, url, share_url = served
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and app.analytics_enabled is False
    assert url.startswith("http://127.0.0.1:") and share_url is None
    assert app.max_file_size == 200 * 2**20                         # uploads refused above 200 MB
    assert Path(os.environ["GRADIO_TEMP_DIR"]) == work.resolve() / "tmp"
    long_jobs = {"estimate_flow", "video_flow", "reenact", "prepare_and_train"}
    fns = {f.api_name: f for f in app.fns.values()}
    assert long_jobs <= set(fns)
    for name in long_jobs:  # one queue slot shared by every long job
        assert fns[name].concurrency_limit == 1 and fns[name].concurrency_id == "jobs"


@needs_server
def test_api_inputs_are_typed(served):
    """The crop size is a number in the API (it was a dropdown of strings that then refused '128')."""
    _, client, _, _, _ = served
    info = client.view_api(print_info=False, return_format="dict")
    params = info["named_endpoints"]["/prepare_and_train"]["parameters"]
    size = next(p for p in params if "Crop size" in p["label"])
    assert size["python_type"]["type"] in ("float", "int") and size["parameter_default"] == 256
    flow = {p["label"]: p for p in info["named_endpoints"]["/estimate_flow"]["parameters"]}
    assert flow["Colour scale in px (0 = automatic)"]["python_type"]["type"] == "float"


# ------------------------------------------------------------------ tab 1: 3D face flow
@needs_server
def test_flow_tab_matches_direct_estimate(served, frames):
    app, client, work, _, _ = served
    (p0, p8), f0, f8 = frames
    out = client.predict(handle_file(str(p0)), handle_file(str(p8)), None, 0, 8, 0, 0.1, False,
                         api_name="/estimate_flow")
    *files, summary, head, expression = out
    names = list(ga.FLOW_OUTPUTS) + list(FLOW_FILES)
    assert [Path(f).name for f in files] == names
    assert all(Path(f).is_file() and Path(f).stat().st_size > 0 for f in files)
    # the shipped DFFNet decomposes the flow: the tab shows the head-motion and expression pictures
    for pic in (head, expression):
        assert Path(pic).is_file() and vio.read_image(pic).shape[0] > f0.shape[0]   # titled, with a legend
    flow = np.load(files[names.index("flow3d.npy")])
    H, W = f0.shape[:2]
    assert flow.shape == (H, W, 3) and flow.dtype == np.float32
    # the job folder on the server holds the mask: finite flow on it, 0 off it
    jobs = [j for j in (work / "jobs").iterdir() if (j / "mask.npy").is_file()]
    job = max(jobs, key=lambda j: j.stat().st_mtime)
    mask = np.load(job / "mask.npy")
    assert mask.shape == (H, W) and mask.mean() > 0.05
    assert np.isfinite(flow[mask]).all() and not flow[~mask].any()
    assert np.abs(flow[mask]).sum(-1).mean() > 0.1                 # frames 0 and 8 differ: the face moves
    assert f"{int(mask.sum())} face pixels" in summary and "Colour scale 0 .." in summary
    assert "hue is the direction" in summary                        # the two-line explanation
    # the pictures: flows with a title above and the legend below; PNCC and the Fig. 1 panel at 224
    for k in (0, 1):
        fig = vio.read_image(files[k])
        assert fig.shape[0] > H + 60 and fig.shape[1] >= W
    assert vio.read_image(files[2]).shape == (224, 224, 3)
    warp = vio.read_image(files[4])
    assert warp.shape[1] == 3 * 224 + 4 and warp.shape[0] > 224 + 60
    overlay = vio.read_image(files[3]).astype(np.int16)
    assert overlay.shape == f0.shape and (np.abs(overlay - f0).sum(-1) > 30)[mask].mean() > 0.02  # grid drawn
    # the meshes and the zip of everything
    assert Path(files[names.index("mesh.obj")]).read_text().startswith(("#", "v "))
    import zipfile
    with zipfile.ZipFile(files[names.index("outputs.zip")]) as z:
        inside = set(z.namelist())
    assert {"flow3d.npy", "mask.npy", "mesh.obj", "mesh_warped.obj", "flow3d.png", "manifest.json"} <= inside
    # the same numbers as calling the library directly (uploads are decoded losslessly)
    res = app.faceflow.face_flow().estimate(f0, f8)
    np.testing.assert_allclose(flow, res.flow_image, atol=1e-5)
    np.testing.assert_array_equal(mask, res.mask_image)
    np.testing.assert_allclose(res.head_flow + res.expression_flow, res.flow, atol=1e-4)
    assert np.abs(res.expression_flow).sum() > 0 and np.abs(res.head_flow).sum() > 0
    # uploads went to the app's own temp folder
    assert any(p.name == "f0.png" for p in (work / "tmp").rglob("*.png"))


@needs_server
def test_flow_tab_video_frames_equal_image_frames_and_previews(served, frames):
    app, client, work, _, _ = served
    _, f0, f8 = frames
    clip = handle_file(str(media(CLIP)))
    out = client.predict(None, None, clip, 0, 8, 0, 0.1, False, api_name="/estimate_flow")
    res = app.faceflow.face_flow().estimate(f0, f8)
    np.testing.assert_allclose(np.load(out[5]), res.flow_image, atol=1e-5)
    assert "frames 0 and 8 of the video" in out[9]
    with pytest.raises(AppError, match="has about 500 frames"):
        client.predict(None, None, clip, 0, 900, 0, 0.1, False, api_name="/estimate_flow")
    a, b = client.predict(clip, 0, 8, api_name="/preview_frames")
    np.testing.assert_array_equal(vio.read_image(a), f0)
    np.testing.assert_array_equal(vio.read_image(b), f8)


@needs_server
def test_flow_tab_whole_video(served):
    _, client, work, _, _ = served
    video, csv_path, arrays, text = client.predict(handle_file(str(media(CLIP))), 1, 12, 0, 0.1,
                                                   api_name="/video_flow")
    info = vio.probe(video, exact=True)
    assert info.num_frames == 11 and info.fps == pytest.approx(25.0) and info.has_audio
    assert info.width > 3 * 360 - 10                                # frame | 3D flow | 2D flow
    assert len(Path(csv_path).read_text().strip().splitlines()) == 12  # header + 11 pairs
    import zipfile
    with zipfile.ZipFile(arrays) as z:
        assert {"flow3d.npy", "mask.npy", "transforms.npy", "pairs.npy", "summary.csv"} <= set(z.namelist())
    assert "11 pairs" in text and "one colour scale" in text
    with pytest.raises(AppError, match="frames must be a whole number"):
        client.predict(handle_file(str(media(CLIP))), 1, 5000, 0, 0.1, api_name="/video_flow")


@needs_server
def test_flow_tab_readable_errors(served, tmp_path, frames):
    _, client, work, _, _ = served
    blank = tmp_path / "blank.png"
    vio.write_image(blank, np.full((96, 96, 3), 128, np.uint8))
    n_jobs = len(list((work / "jobs").iterdir()))
    with pytest.raises(AppError, match="No face found"):
        client.predict(handle_file(str(blank)), handle_file(str(blank)), None, 0, 8, 0, 0.1, False,
                       api_name="/estimate_flow")
    assert len(list((work / "jobs").iterdir())) == n_jobs           # the failed job left nothing behind
    with pytest.raises(AppError, match="give two images, or a video"):
        client.predict(handle_file(str(blank)), None, None, 0, 8, 0, 0.1, False, api_name="/estimate_flow")
    other = handle_file(str(media("stills/deepface_img11.jpg")))    # another person: refused, unless forced
    (p0, _), _, _ = frames
    with pytest.raises(AppError, match="same face in a comparable position"):
        client.predict(handle_file(str(p0)), other, None, 0, 8, 0, 0.1, False, api_name="/estimate_flow")
    forced = client.predict(handle_file(str(p0)), other, None, 0, 8, 0, 0.1, True, api_name="/estimate_flow")
    assert "pair check skipped" in forced[9]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    with pytest.raises(AppError, match="Cannot use this file"):
        client.predict(None, None, handle_file(str(bad)), 0, 1, 0, 0.1, False, api_name="/estimate_flow")
    # the refused upload is gone from the app's temp folder
    assert not [p for p in (work / "tmp").rglob("broken.mp4")]


@pytest.mark.slow
def test_examples_always_work(tmp_path):
    """The rendered pair (no media needed) and the clip frames give a flow through the tab's function."""
    from apps.app_state import AppConfig, AppContext
    from apps.examples import make_examples
    from apps.tab_flow import estimate_flow

    ex = make_examples(tmp_path)
    assert ex["pairs"] and Path(ex["pairs"][0][0]).name == "render_a.png"
    ctx = AppContext(AppConfig(workdir=tmp_path))
    try:
        for a, b in ex["pairs"]:
            out = estimate_flow(ctx, vio.read_image(a), vio.read_image(b))
            flow = np.load(out[5])
            assert np.isfinite(flow).all() and (np.abs(flow).sum(-1) > 0).mean() > 0.05
    finally:
        ctx.close()
    if ex["videos"]:
        info = vio.probe(ex["videos"][0][0], exact=True)
        assert info.num_frames == 75 and info.has_audio


def test_old_jobs_are_pruned_and_refused_uploads_removed(tmp_path):
    import time

    from apps.app_state import AppConfig, AppContext, discard_upload

    ctx = AppContext(AppConfig(workdir=tmp_path, keep_jobs=3, max_jobs_mb=1.0))
    jobs = []
    for k in range(5):
        j = ctx.new_job()
        (j / "x.bin").write_bytes(b"0" * 1000)
        os.utime(j, (time.time() + k, time.time() + k))
        ctx.end_job(j)                                              # its request returned
        jobs.append(j)
    running = ctx.new_job()                                         # a request in flight is never pruned ...
    os.utime(running, (time.time() - 100, time.time() - 100))       # ... even when it is the oldest
    ctx.new_job()
    assert running.exists()
    assert [j.exists() for j in jobs] == [False, False, False, True, True]   # the newest kept, 3 in all
    sized = AppContext(AppConfig(workdir=tmp_path / "w2", keep_jobs=10, max_jobs_mb=1.0))
    made = []
    for k in range(3):                                              # 3 x 400 KB: over the 1 MB cap
        j = sized.new_job()
        (j / "x.bin").write_bytes(b"0" * 400_000)
        os.utime(j, (time.time() + k, time.time() + k))
        sized.end_job(j)
        made.append(j)
    sized.new_job()                                                 # makes room: the oldest goes first
    assert [j.exists() for j in made] == [False, True, True]
    up = tmp_path / "tmp" / "abc123" / "clip.mp4"
    up.parent.mkdir(parents=True)
    up.write_bytes(b"x")
    discard_upload(ctx.config, up)
    assert not up.exists() and not up.parent.exists()
    keep = tmp_path / "mine.mp4"                                    # not an upload: left alone
    keep.write_bytes(b"x")
    discard_upload(ctx.config, keep)
    assert keep.exists()


def test_published_tables_until_own_results(tmp_path):
    from apps.tab_evaluate import published_tables

    text = published_tables()
    assert text.startswith("## Published tables")
    assert "Table 1: 3D AEPE" in text and "faceflow evaluate flow" in text        # flow tables, with the command
    assert "faceflow evaluate self-reenact" in text                                # Table 3, with its command
    assert "not found" in published_tables(tmp_path / "missing.md")


# ------------------------------------------------------------------ tab 2: reenact (listing, errors)
@needs_server
def test_reenact_tab_lists_models_and_rejects_bad_ones(served):
    app, client, _, _, _ = served
    models = app.faceflow.config.models_dir
    (models / "fake" / "checkpoints").mkdir(parents=True)
    torch.save({"task": "not-reenact"}, models / "fake" / "checkpoints" / "last.pt")
    (models / "untrained").mkdir()                                  # no checkpoint: not listed
    (models / "notes.txt").write_text("a file, not a model")
    assert ga.list_models(models)[:2] == ["demo", "fake"] and "untrained" not in ga.list_models(models)
    update, table = client.predict(api_name="/list_models")
    names = [c[0] if isinstance(c, (list, tuple)) else c for c in update["choices"]]
    assert "fake" in names and "untrained" not in names and "| fake |" in table
    with pytest.raises(AppError, match="not a faceflow training checkpoint"):
        client.predict("fake", None, "self", False, 4, api_name="/reenact")
    with pytest.raises(AppError, match="no trained model named 'ghost'"):  # e.g. deleted since listed
        client.predict("ghost", None, "self", False, 4, api_name="/reenact")
    with pytest.raises(ga.gradio_module().Error, match="pick a trained model first"):
        ga.run_reenact(app.faceflow, None, None, "self")
    with pytest.raises(AppError, match="upload the source video"):
        client.predict("fake", None, "head", False, 4, api_name="/reenact")
    shutil.rmtree(models / "fake")
    shutil.rmtree(models / "untrained")
    # the shipped demo target works out of the box in head mode, and says why self mode cannot
    src = handle_file(str(media("videos/MimicTalk_Trump_10s.mp4")))
    video, summary = client.predict("demo", src, "head", False, 5, api_name="/reenact")
    info = vio.probe(video, exact=True)
    assert info.num_frames == 5 and (info.width, info.height) == (256, 256) and "`demo`" in summary
    with pytest.raises(AppError, match="packed model"):
        client.predict("demo", None, "self", False, 4, api_name="/reenact")


# ------------------------------------------------------------------ tab 3 then 2: prepare, train, reenact
@needs_server
def test_prepare_train_then_reenact(served):
    app, client, _, _, _ = served
    clip = handle_file(str(media(CLIP)))
    with pytest.raises(AppError, match="model name"):
        client.predict(clip, "../evil", "tiny", 64, 24, "none", 2, 0, api_name="/prepare_and_train")
    log = client.predict(clip, "obama", "tiny", 64, 24, "none", 2, 0, api_name="/prepare_and_train")
    assert "prepared 24 frames at 64x64" in log and "done: obama at step 2" in log
    models = app.faceflow.config.models_dir
    assert ga.list_models(models) == ["demo", "obama"]
    assert (models / "obama" / "data" / "manifest.json").is_file()
    update, _ = client.predict(api_name="/list_models")
    assert update["value"] == "obama"
    video, summary = client.predict("obama", None, "self", True, 4, api_name="/reenact")
    info = vio.probe(video, exact=True)
    assert info.num_frames == 4 and info.height == 64 and info.width == 3 * 64   # source | NMFC | result
    assert "**4 frames**" in summary and "APD" in summary
    # head reenactment driven by another person's clip
    src = handle_file(str(media("videos/MimicTalk_Trump_10s.mp4")))
    video, summary = client.predict("obama", src, "head", False, 6, api_name="/reenact")
    info = vio.probe(video, exact=True)
    assert info.num_frames == 6 and (info.width, info.height) == (64, 64) and "head reenactment" in summary
    assert "APD" not in summary                                     # no ground truth for another person
    # another video under the same name is refused
    other = handle_file(str(media("videos/MimicTalk_Trump_10s.mp4")))
    with pytest.raises(AppError, match="already exists for another video"):
        client.predict(other, "obama", "tiny", 64, 24, "none", 2, 0, api_name="/prepare_and_train")


# ------------------------------------------------------------------ tab 4: evaluate
@needs_server
def test_evaluate_tab_reads_tables(served):
    _, client, work, _, _ = served
    ev = work / "results" / "run1"                                  # results live under the workdir
    text, gallery = client.predict(str(ev), api_name="/evaluation")
    assert "No evaluation results" in text and gallery == []
    ev.mkdir(parents=True)
    text, _ = client.predict(str(ev), api_name="/evaluation")
    assert "No evaluation tables" in text
    (ev / "tables").mkdir()
    (ev / "table.md").write_text("| method | APD |\n|---|---|\n| ours | 7.25 |\n")
    (ev / "tables" / "fid_score.md").write_text("| method | FID |\n|---|---|\n| ours | 31.5 |\n")
    heat = np.zeros((32, 48, 3), np.uint8)
    heat[:, :24, 0] = 255
    vio.write_image(ev / "heatmap_apd.png", heat)
    text, gallery = client.predict(str(ev), api_name="/evaluation")
    assert "| ours | 7.25 |" in text and "### fid score" in text and "| ours | 31.5 |" in text
    assert text.index("7.25") < text.index("31.5")                  # the main table first
    assert len(gallery) == 1 and gallery[0]["caption"] == "heatmap apd"
    np.testing.assert_array_equal(vio.read_image(gallery[0]["image"]), heat)
    # a relative folder is taken relative to the workdir (the results root)
    text2, gallery2 = client.predict("results/run1", api_name="/evaluation")
    assert text2 == text and len(gallery2) == 1


SECRET = "TOPSECRET-7f3a"


def _outside_results(tmp_path) -> tuple[Path, np.ndarray]:
    """An evaluation-looking folder outside the app's workdir: tables and a PNG with secret content."""
    out = tmp_path / "outside"
    (out / "tables").mkdir(parents=True)
    (out / "table.md").write_text(f"| secret |\n|---|\n| {SECRET} |\n")
    (out / "tables" / "leak.md").write_text(f"| secret |\n|---|\n| {SECRET}-2 |\n")
    (out / "sub").mkdir()
    secret_img = np.zeros((20, 30, 3), np.uint8)
    secret_img[:, :, 2] = 201
    vio.write_image(out / "secret.png", secret_img)
    vio.write_image(out / "sub" / "secret_sub.png", secret_img)
    return out, secret_img


def _refused(client, folder) -> str:
    with pytest.raises(AppError) as ei:
        client.predict(folder, api_name="/evaluation")
    msg = str(ei.value)
    assert "outside the evaluation results this app serves" in msg, msg
    assert SECRET not in msg and "secret.png" not in msg
    return msg


@needs_server
def test_evaluate_tab_refuses_folders_outside_the_workdir(served, tmp_path):
    _, client, work, _, _ = served
    out, _ = _outside_results(tmp_path)
    assert os.path.commonpath([out, work.resolve()]) != str(work.resolve())
    _refused(client, str(out))                                      # absolute path elsewhere
    _refused(client, "/etc")
    _refused(client, str(Path.home()))
    _refused(client, os.path.relpath(out, work))                    # ../../.../outside
    _refused(client, "../../")
    _refused(client, "results/../../..")
    _refused(client, f"{work}/../{work.name}/../..")                # '..' inside an absolute path
    _refused(client, "tmp")                                         # other users' uploads ...
    _refused(client, "jobs")                                        # ... and results
    _refused(client, "models")                                      # the targets' previews and samples
    # a symlink inside the workdir pointing outside: refused, it is resolved first
    (work / "results").mkdir(exist_ok=True)
    link = work / "results" / "link_out"
    link.symlink_to(out, target_is_directory=True)
    try:
        _refused(client, "results/link_out")
        _refused(client, str(link))
    finally:
        link.unlink()


@needs_server
def test_evaluate_tab_skips_symlinked_files_pointing_outside(served, tmp_path):
    _, client, work, _, _ = served
    out, secret_img = _outside_results(tmp_path)
    ev = work / "results" / "mixed"
    ev.mkdir(parents=True)
    (ev / "table.md").symlink_to(out / "table.md")                  # the main table: outside
    (ev / "tables").symlink_to(out / "tables", target_is_directory=True)
    (ev / "stolen.png").symlink_to(out / "secret.png")
    (ev / "sub").symlink_to(out / "sub", target_is_directory=True)
    own = np.zeros((16, 16, 3), np.uint8)
    own[:, :8, 1] = 255
    vio.write_image(ev / "heatmap_own.png", own)
    (ev / "alias.png").symlink_to(ev / "heatmap_own.png")          # a link inside the root: fine
    text, gallery = client.predict("results/mixed", api_name="/evaluation")
    assert SECRET not in text and "No evaluation tables" in text
    assert sorted(g["caption"] for g in gallery) == ["alias", "heatmap own"]
    for g in gallery:
        img = vio.read_image(g["image"])
        np.testing.assert_array_equal(img, own)
        assert not (img.shape == secret_img.shape and (img == secret_img).all())
    # a real table next to the links is still shown
    shutil.rmtree(ev)
    ev.mkdir()
    (ev / "table.md").write_text("| method | APD |\n|---|---|\n| ours | 4.5 |\n")
    (ev / "tables").mkdir()
    (ev / "tables" / "leak.md").symlink_to(out / "tables" / "leak.md")
    text, _ = client.predict(str(ev), api_name="/evaluation")
    assert "| ours | 4.5 |" in text and SECRET not in text and "### leak" not in text
    shutil.rmtree(ev)


def test_results_root_option(tmp_path):
    gr = ga.gradio_module()
    out, _ = _outside_results(tmp_path)
    cfg = ga.AppConfig(tmp_path / "work", results_root=tmp_path / "res")
    assert cfg.results_root == (tmp_path / "res").resolve()
    assert tab_evaluate._results_folder(cfg, "run") == (tmp_path / "res" / "run").resolve()
    assert tab_evaluate._results_folder(cfg, "") == cfg.eval_dir          # the configured eval folder is served too
    for bad in (str(out), "../outside", str(tmp_path / "work"), "/"):
        with pytest.raises(gr.Error, match="outside the evaluation results"):
            tab_evaluate._results_folder(cfg, bad)
    # read_evaluation alone (library use) reads nothing outside the folder it is given
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "table.md").symlink_to(out / "table.md")
    (ev / "x.png").symlink_to(out / "secret.png")
    text, images = ga.read_evaluation(ev)
    assert SECRET not in text and images == []


@needs_server
def test_server_files_are_not_served(served):
    """Inputs must be uploads and only job results are downloadable: a server path given as the
    video, or a file of the workdir asked for by path, is refused."""
    import httpx

    app, client, work, url, _ = served
    models = app.faceflow.config.models_dir
    (work / "eval").mkdir(exist_ok=True)
    (work / "eval" / "table.md").write_text(SECRET)
    (models / "m1").mkdir(exist_ok=True)
    (models / "m1" / "notes.txt").write_text(SECRET)
    for f in (work / "eval" / "table.md", models / "m1" / "notes.txt", Path("/etc/hostname")):
        r = httpx.get(f"{url.rstrip('/')}/gradio_api/file={f}")
        assert r.status_code in (403, 404) and SECRET not in r.text, (f, r.status_code)
    # a server path posted as the target video (not uploaded): refused before the handler runs
    data = [{"path": str(media(CLIP)), "meta": {"_type": "gradio.FileData"}}, "pathmodel", "tiny", 64, 24, "none",
            2, 0]
    r = httpx.post(f"{url.rstrip('/')}/gradio_api/call/prepare_and_train", json={"data": data})
    assert r.status_code == 200, r.text
    ev = httpx.get(f"{url.rstrip('/')}/gradio_api/call/prepare_and_train/{r.json()['event_id']}", timeout=60)
    assert "event: error" in ev.text and "prepared" not in ev.text
    assert not (models / "pathmodel").exists()
    shutil.rmtree(models / "m1")


# ------------------------------------------------------------------ limits (no server needed)
def test_upload_limits(tmp_path):
    gr = ga.gradio_module()
    clip = media(CLIP)                                              # 20 s, about 1 MB
    small = ga.AppConfig(tmp_path, max_upload_mb=0.01)
    with pytest.raises(gr.Error, match="the limit is 0 MB"):
        ga.check_video(small, clip)
    short = ga.AppConfig(tmp_path, max_video_seconds=10)
    with pytest.raises(gr.Error, match="lasts 20 s; the limit is 10 s"):
        ga.check_video(short, clip)
    assert ga.check_video(ga.AppConfig(tmp_path), clip).num_frames == 500
    with pytest.raises(gr.Error, match="upload the video first"):
        ga.check_video(ga.AppConfig(tmp_path), None)


# ------------------------------------------------------------------ a real browser
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@needs_server
def test_browser_renders_the_four_tabs(served, tmp_path):
    exe = _chromium()
    if exe is None:
        msg = "no chromium / chromium-browser on PATH: the headless-browser check needs one (scripts/chromium.sh)"
        if os.environ.get("FACEFLOW_REQUIRE_BROWSER") == "1":  # CI: .ci/run installs it, so its absence is a failure
            pytest.fail(msg)
        pytest.skip(msg)
    _, _, _, url, _ = served
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    for name in ga.TAB_NAMES:
        assert name in dom, f"tab {name!r} missing from the rendered page"
    shot = tmp_path / "app_screenshot.png"
    subprocess.run(base + ["--hide-scrollbars", "--window-size=1280,900", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    img = vio.read_image(shot)
    assert img.shape == (900, 1280, 3)
    assert img.astype(np.float32).std() > 10                         # not a blank page
    assert (img.reshape(-1, 3) != img[0, 0]).any(-1).mean() > 0.01
    (REPO / "outputs").mkdir(exist_ok=True)
    shutil.copyfile(shot, REPO / "outputs" / "app_screenshot.png")


def test_flow_tab_shows_the_parts_of_decomposed_weights(tmp_path):
    from test_estimate import ConstantParts, _template_meshreg

    from apps.app_state import AppConfig, AppContext
    from apps.tab_flow import estimate_flow
    from faceflow.estimate import FaceFlow
    from faceflow.geometry.morphable import MorphableModel

    meshreg, tris = _template_meshreg(MorphableModel.load())
    frames = list(vio.read_frames(media(CLIP), max_frames=2))
    ctx = AppContext(AppConfig(workdir=tmp_path))
    ctx._flow = FaceFlow(meshreg, ConstantParts((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), tris, device="cpu")
    *files, summary, head, expression = estimate_flow(ctx, frames[0], frames[1])
    assert len(files) == len(ga.FLOW_OUTPUTS) + len(FLOW_FILES) and "decompose the flow" in summary
    assert head.endswith("head_flow3d.png") and expression.endswith("expression_flow3d.png")
    h, e = vio.read_image(head), vio.read_image(expression)
    assert h.shape == e.shape and h.shape[0] > frames[0].shape[0]          # titled, with the legend below
    assert not np.array_equal(h, e)                                         # two directions, two colours
