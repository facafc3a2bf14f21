"""The app's second tab, **Reenact** (:mod:`apps.gradio_app`): a trained person-specific model
(``MODELS/<name>/checkpoints/last.pt``, a package ``MODELS/<name>/generator.pt``, or the shipped
``demo``) driven by an uploaded source video (:func:`reenact.run.reenact`), head or face
reenactment (or self, for a training run)."""

from __future__ import annotations

import time
from pathlib import Path

from apps.app_state import (
    TAB_NAMES,
    AppConfig,
    AppContext,
    JobLog,
    check_video,
    fail,
    gradio_module,
    job_dir,
    user_errors,
)

__all__ = ["list_models", "models_markdown", "run_reenact", "reenact_tab"]


DEMO = "demo"  # the shipped demo target (reenact.package.DEMO_DIR), listed first when present


def list_models(models_dir: str | Path) -> list[str]:
    """Names of the models: ``demo`` when the shipped demo package is there, then the subfolders of
    ``models_dir`` holding a trained run (``checkpoints/last.pt``) or a package (``generator.pt``)."""
    from reenact.package import DEMO_DIR, is_package

    d = Path(models_dir)
    names = [DEMO] if is_package(DEMO_DIR) else []
    if d.is_dir():
        names += sorted(p.name for p in d.iterdir() if p.is_dir() and p.name != DEMO
                        and ((p / "checkpoints" / "last.pt").is_file() or is_package(p)))
    return names


def _model_path(models_dir: Path, name: str) -> Path:
    from reenact.package import DEMO_DIR

    return DEMO_DIR if name == DEMO else Path(models_dir) / name


def models_markdown(models_dir: str | Path) -> str:
    """A Markdown table of the models (name, last logged step, checkpoint time; packages: their step)."""
    from faceflow.engine.logbook import read_csv
    from reenact.package import GENERATOR_FILE, is_package

    names = list_models(models_dir)
    if not [n for n in names if n != DEMO]:
        hint = (f"No trained model of your own in `{models_dir}` yet: train one in the *Prepare and train* tab "
                f"(or `python -m reenact train DATA {models_dir}/NAME`).")
        if names:
            return f"`demo`: the shipped demo target (Obama, a tiny model; see its model card).\n\n{hint}"
    if not names:
        return (f"No trained model in `{models_dir}` yet: train one in the *Prepare and train* tab "
                f"(or `python -m reenact train DATA {models_dir}/NAME`).")
    rows = ["| model | step | saved |", "|---|---|---|"]
    for n in names:
        d = _model_path(models_dir, n)
        ck = d / GENERATOR_FILE if is_package(d) else d / "checkpoints" / "last.pt"
        try:
            step = int(read_csv(d / "log.csv")[-1]["step"]) if not is_package(d) else f"{_package_step(ck)} (package)"
        except (OSError, KeyError, IndexError, ValueError):
            step = "?"
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(ck.stat().st_mtime))
        rows.append(f"| {n} | {step} | {saved} |")
    return "\n".join(rows)


def _package_step(path: Path):
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except Exception:  # a corrupt package is listed with "?" (reenacting with it names the problem)
        return "?"


def _model_dir(cfg: AppConfig, name) -> Path:
    if not name:
        raise fail("pick a trained model first (press Refresh if you just trained one)")
    if name not in list_models(cfg.models_dir):
        raise fail(f"no trained model named {name!r} in {cfg.models_dir}; press Refresh")
    return _model_path(cfg.models_dir, name)


def run_reenact(ctx: AppContext, model, source, mode: str = "head", side: bool = False, max_frames=0,
                progress=None) -> tuple[str, str]:
    """The reenact tab: drive ``model`` (a name from :func:`list_models`) with the ``source`` video.
    Returns (path of the result mp4, Markdown summary)."""
    from reenact.run import reenact

    cfg = ctx.config
    step = progress or (lambda *a, **k: None)
    model_dir = _model_dir(cfg, model)
    if mode not in ("head", "face", "self"):
        raise fail(f"unknown mode {mode!r}: choose head, face or self")
    if mode != "self":
        check_video(cfg, source, "the source video")
    if max_frames is not None and (max_frames < 0 or int(max_frames) != max_frames):
        raise fail(f"max frames must be a whole number >= 0 (0: all), got {max_frames}")
    log = JobLog()

    def say(msg):
        log.say(msg)
        step(None, desc=str(msg)[:120])

    step(0.0, desc="tracking the source and fitting the face model")
    with job_dir(ctx) as job, user_errors():
        out = job / "reenacted.mp4"
        s = reenact(model_dir, mode, out, source if mode != "self" else None, side=bool(side),
                    max_frames=int(max_frames) or None, device=cfg.device, work_dir=job / "source",
                    progress=True, say=say)
    lines = [f"**{s['frames']} frames** ({mode} reenactment with `{model}`, step {s['checkpoint_step']}) "
             f"at {s['generation_fps']:.1f} frames/s."]
    if "apd" in s:
        lines.append(f"APD against the held-out frames: {s['apd']:.2f} (0-255 RGB L2).")
    return str(out), "\n\n".join(lines + log.lines[-5:])


def reenact_tab(ctx: AppContext, jobs: dict) -> tuple:
    """The Reenact tab (made inside the app's ``gr.Tabs``): the model list, source video and the
    ``list_models`` and ``reenact`` events. Returns the model list's refresh as (fn, inputs, outputs),
    run again after training and on page load."""
    gr = gradio_module()
    cfg = ctx.config

    def reenact_fn(model, source, mode, side, max_frames, progress=gr.Progress(track_tqdm=True)):
        return run_reenact(ctx, model, source, mode, side, max_frames, progress=progress)

    def models_fn():
        names = list_models(cfg.models_dir)
        return gr.Dropdown(choices=names, value=names[-1] if names else None), models_markdown(cfg.models_dir)

    with gr.Tab(TAB_NAMES[1], id="reenact"):
        with gr.Row():
            model = gr.Dropdown(choices=list_models(cfg.models_dir), label="Trained target model",
                                allow_custom_value=True, scale=4)  # checked by list_models
            refresh = gr.Button("Refresh", scale=1)
        models_md = gr.Markdown(models_markdown(cfg.models_dir))
        source = gr.Video(label="Source (driving) video", sources=["upload"])
        with gr.Row():
            mode = gr.Radio(["head", "face", "self"], value="head", label="Mode",
                            info="head: expression and pose; face: expression only; "
                                 "self: the target's held-out frames (no source needed)")
            side = gr.Checkbox(False, label="Side by side (source | NMFC | result)")
            rmax = gr.Number(300, label="Max frames (0: all)", precision=0, minimum=0)
        rgo = gr.Button("Reenact", variant="primary")
        rvideo = gr.Video(label="Result", interactive=False)
        rsummary = gr.Markdown()
        refresh.click(models_fn, None, [model, models_md], api_name="list_models")
        rgo.click(reenact_fn, [model, source, mode, side, rmax], [rvideo, rsummary], api_name="reenact",
                  **jobs)
    return models_fn, None, [model, models_md]
