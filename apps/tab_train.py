"""The app's third tab, **Prepare and train** (:mod:`apps.gradio_app`): a target video ->
:func:`reenact.preprocess.preprocess` -> the training harness (:mod:`reenact.commands.train`) into
``MODELS/<name>``, with a live log; the model then appears in the Reenact tab."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Iterator

from apps.app_state import (
    TAB_NAMES,
    AppContext,
    JobLog,
    check_video,
    fail,
    gradio_module,
    in_thread,
    job_result,
    user_errors,
)

__all__ = ["prepare_and_train", "train_tab"]

CROP_SIZES = (64, 128, 256, 512)
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _train_args(data_dir: Path, model_dir: Path, preset: str, flow: str, iterations, minutes, device: str):
    """The ``python -m reenact train`` arguments, as its parser makes them."""
    from reenact.commands.train import add_arguments

    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    args = p.parse_args([str(data_dir), str(model_dir), "--preset", preset, "--flow", flow,
                         "--device", device, "--quiet"])
    args.iterations = int(iterations) if iterations else None
    args.max_minutes = float(minutes) if minutes else None
    return args


def _training_status(model_dir: Path, iterations: int) -> tuple[int, str]:
    from faceflow.engine.logbook import read_csv

    try:
        rows = read_csv(model_dir / "log.csv")
    except (OSError, ValueError):
        return 0, ""
    if not rows:
        return 0, ""
    last = rows[-1]
    n = int(last.get("step", 0))
    losses = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k.startswith("loss"))[:300]
    return n, f"step {n}/{iterations}" + (f": {losses}" if losses else "")


def prepare_and_train(ctx: AppContext, video, name: str, preset: str = "tiny", size: int = 256, max_frames=0,
                      flow: str = "faceflow3d", iterations=0, minutes=0, progress=None) -> Iterator[str]:
    """The prepare-and-train tab (a generator of the growing log text): preprocess ``video`` into
    ``MODELS/name/data`` and train ``MODELS/name``. Rerunning with the same settings resumes."""
    from faceflow.engine.trainer import train
    from reenact.commands.train import configs
    from reenact.preprocess import PreprocessConfig, preprocess
    from reenact.task import PRESETS

    cfg = ctx.config
    step = progress or (lambda *a, **k: None)
    name = (name or "").strip()
    if not MODEL_NAME.match(name):
        raise fail(f"model name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit")
    if preset not in PRESETS:
        raise fail(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if size not in CROP_SIZES:
        raise fail(f"crop size must be one of {', '.join(map(str, CROP_SIZES))} pixels, got {size}")
    for label, v in (("max frames", max_frames), ("iterations", iterations), ("minutes", minutes)):
        if v is not None and v < 0:
            raise fail(f"{label} must be >= 0 (0: the default), got {v}")
    info = check_video(cfg, video, "the target video")
    model_dir = cfg.models_dir / name
    data_dir = model_dir / "data"
    target = model_dir / f"target{Path(video).suffix.lower() or '.mp4'}"
    if target.exists() and not _same_file(target, Path(video)):
        raise fail(f"a model named {name!r} already exists for another video; choose another name")
    model_dir.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copyfile(video, target)
    log = JobLog()
    log.say(f"target: {Path(video).name} ({info.width}x{info.height}, {info.duration:.1f} s at {info.fps:.3g} fps)"
            f" -> {model_dir}")
    yield log.text()

    pcfg = PreprocessConfig(size=int(size), flows=(flow,), max_frames=int(max_frames) or None, device=cfg.device)
    step(0.0, desc="preprocessing: annotation, fits, flows")
    t, box = in_thread(lambda: preprocess(target, data_dir, pcfg, say=log.say))
    while t.is_alive():
        t.join(0.5)
        yield log.text()
    m = job_result(box)
    log.say(f"prepared {m['frames']} frames at {m['size']}x{m['size']} (train {m['split']['train']}, "
            f"test {m['split']['test']})")
    yield log.text()

    with user_errors():
        task, tcfg = configs(_train_args(data_dir.resolve(), model_dir.resolve(), preset, flow, iterations,
                                         minutes, cfg.device))
    budget = f", at most {tcfg.max_minutes:g} min" if tcfg.max_minutes else ""
    log.say(f"training ({preset} preset, {tcfg.iterations} iterations{budget}) on {tcfg.device}")
    yield log.text()
    t, box = in_thread(lambda: train(task, tcfg, command=f"gradio app: prepare and train {name}", progress=False))
    shown = ""
    while t.is_alive():
        t.join(1.0)
        n, status = _training_status(model_dir, tcfg.iterations)
        if status and status != shown:
            log.say(status)
            shown = status
        step((n, tcfg.iterations), desc="training", unit="steps")
        yield log.text()
    s = job_result(box)
    val = s.get("val") or {}
    apd = f", held-out APD {val['val_metric']:.2f}" if "val_metric" in val else ""
    log.say(f"done: {name} at step {s['step']} ({s['status']}{apd}). Pick it in the Reenact tab.")
    yield log.text()


def _same_file(a: Path, b: Path) -> bool:
    import filecmp

    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def train_tab(ctx: AppContext, jobs: dict, models_refresh: tuple) -> None:
    """The Prepare and train tab (made inside the app's ``gr.Tabs``) and its ``prepare_and_train``
    event, followed by ``models_refresh`` (fn, inputs, outputs: the Reenact tab's model list)."""
    from reenact.task import PRESETS

    gr = gradio_module()
    cfg = ctx.config

    def train_fn(video, name, preset, size, max_frames, flow, iterations, minutes, progress=gr.Progress()):
        yield from prepare_and_train(ctx, video, name, preset, size, max_frames, flow, iterations, minutes,
                                     progress=progress)

    with gr.Tab(TAB_NAMES[2], id="train"):
        gr.Markdown(f"Preprocess a video of the target person (one face), then train its renderer into "
                    f"`{cfg.models_dir}/NAME`. Run again with the same name and settings to resume.")
        tvideo = gr.Video(label="Target video", sources=["upload"])
        with gr.Row():
            tname = gr.Textbox(label="Model name", placeholder="e.g. obama")
            preset = gr.Dropdown(sorted(PRESETS), value="tiny", label="Preset",
                                 info="tiny: CPU-sized networks; paper: the thesis' (GPU)")
            tsize = gr.Number(256, label="Crop size (px): 64, 128, 256 or 512", precision=0, minimum=64, maximum=512)
            tflow = gr.Dropdown(["faceflow3d", "dis2d", "none"], value="faceflow3d", label="Flow")
        with gr.Row():
            tmax = gr.Number(0, label="Max frames (0: all)", precision=0, minimum=0)
            titers = gr.Number(0, label="Iterations (0: the preset's)", precision=0, minimum=0)
            tmin = gr.Number(0, label="Minutes (0: no time limit)", minimum=0)
        tgo = gr.Button("Prepare and train", variant="primary")
        tlog = gr.Textbox(label="Log", lines=16, max_lines=30, interactive=False, autoscroll=True)
        trained = tgo.click(train_fn, [tvideo, tname, preset, tsize, tmax, tflow, titers, tmin], tlog,
                            api_name="prepare_and_train", **jobs)
        trained.then(*models_refresh, api_visibility="undocumented")
