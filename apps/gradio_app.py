"""The local web front-end: ``python -m apps.gradio_app [--port N] [--host 127.0.0.1]
[--workdir outputs/app] [--models DIR] [--share]``.

Four tabs over the toolkit's entry points:

1. **3D face flow** (:mod:`apps.tab_flow`): two images (or two previewed frames of an uploaded
   video) -> DeepFaceFlow's 3D and 2D flow with legends and scale, PNCC, mesh overlay and the warped
   mesh of Fig. 1, with ``flow3d.npy``, the meshes and a zip to download; or a whole video ->
   ``flow.mp4`` and ``summary.csv``. Examples that always work (:mod:`apps.examples`).
2. **Reenact** (:mod:`apps.tab_reenact`): a trained person-specific model
   (``MODELS/<name>/checkpoints/last.pt``) driven by an uploaded source video
   (:func:`reenact.run.reenact`), head or face reenactment (or self).
3. **Prepare and train** (:mod:`apps.tab_train`): a target video ->
   :func:`reenact.preprocess.preprocess` -> the training harness (:mod:`reenact.commands.train`)
   into ``MODELS/<name>``, with a live log; the model then appears in the Reenact tab.
4. **Evaluate** (:mod:`apps.tab_evaluate`): the self-reenactment tables (``OUT/table.md``,
   ``OUT/tables/*.md``, heatmaps) of an evaluation folder (default ``WORKDIR/eval``).

Offline by design: bound to 127.0.0.1, no analytics (``GRADIO_ANALYTICS_ENABLED=False`` is set
before gradio is imported), no share link unless ``--share``; gradio 6's theme fonts are bundled.
Everything the app writes goes under WORKDIR: one ``jobs/<uuid>`` folder per request, gradio's
upload cache in ``tmp/`` (``GRADIO_TEMP_DIR``), trained models in ``models/`` unless ``--models``
points elsewhere. Long jobs share one queue slot (``concurrency_id='jobs'``, limit ``--concurrency``,
default 1), so on a CPU two users never run two jobs at once. Only the newest ``--keep-jobs`` (20)
job folders are kept (at most ``--max-jobs-mb``), gradio's cached copies are deleted after an hour
and a refused upload at once. Uploads are limited in size (200 MB) and videos in duration (5 minutes).

This module wires the tabs into one :class:`gr.Blocks` (:func:`build_app`), serves it
(:func:`launch`) and is the command line; the shared config, guards and job helpers are
:mod:`apps.app_state`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from apps.app_state import TAB_NAMES, AppConfig, AppContext, check_video, gradio_module
from apps.examples import make_examples
from apps.tab_evaluate import evaluate_tab, read_evaluation
from apps.tab_flow import FLOW_OUTPUTS, estimate_flow, flow_tab
from apps.tab_reenact import list_models, reenact_tab, run_reenact
from apps.tab_train import prepare_and_train, train_tab

if TYPE_CHECKING:  # imported in build_app (GRADIO_ANALYTICS_ENABLED must be set first)
    import gradio as gr

__all__ = ["AppConfig", "AppContext", "TAB_NAMES", "FLOW_OUTPUTS", "build_app", "launch", "list_models", "check_video",
           "estimate_flow", "run_reenact", "prepare_and_train", "read_evaluation", "add_arguments", "run", "main"]


def build_app(workdir: str | Path = "outputs/app", models_dir: str | Path | None = None, *,
              eval_dir: str | Path | None = None, max_upload_mb: float = 200.0, max_video_seconds: float = 300.0,
              device: str = "auto", results_root: str | Path | None = None, keep_jobs: int = 20,
              max_jobs_mb: float = 2048.0, concurrency: int = 1, examples: bool = True) -> gr.Blocks:
    """The app's :class:`gr.Blocks` (not launched; see :func:`launch`). Sets ``GRADIO_TEMP_DIR`` to
    ``workdir/tmp`` so that uploads stay under the workdir. ``app.faceflow`` holds its
    :class:`AppContext`. The Evaluate tab serves folders under ``results_root`` (default:
    ``workdir``) or ``eval_dir`` only (see :class:`AppConfig`)."""
    cfg = AppConfig(Path(workdir), models_dir, eval_dir, max_upload_mb, max_video_seconds, device, results_root,
                    keep_jobs, max_jobs_mb, concurrency)
    for sub in ("jobs", "tmp"):
        (cfg.workdir / sub).mkdir(parents=True, exist_ok=True)
    cfg.models_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cfg.workdir / "tmp")  # read when gradio, components and server are made
    gr = gradio_module()
    ctx = AppContext(cfg)
    jobs = dict(concurrency_limit=cfg.concurrency, concurrency_id="jobs")  # long jobs: a shared limit for everyone
    example_files = make_examples(cfg.workdir) if examples else {}

    limits = f"Uploads: at most {cfg.max_upload_mb:.0f} MB; videos at most {cfg.max_video_seconds / 60:g} min."
    # gradio's copies of uploads and results (under tmp/) are deleted an hour after they were made
    with gr.Blocks(title="FaceFlow: 3D facial flow and head reenactment", analytics_enabled=False,
                   delete_cache=(900, 3600)) as app:
        gr.Markdown("# 3D facial flow and head reenactment\nDeepFaceFlow (dense 3D facial flow) and "
                    "Head2Head++-style person-specific reenactment, running locally. " + limits)
        with gr.Tabs():  # one builder per tab, in TAB_NAMES order
            flow_tab(ctx, jobs, example_files)
            models_refresh = reenact_tab(ctx, jobs)
            train_tab(ctx, jobs, models_refresh)
            eval_refresh = evaluate_tab(ctx)
        for fn, inputs, outputs in (models_refresh, eval_refresh):  # fresh model list and tables per page load
            app.load(fn, inputs, outputs, api_visibility="undocumented")
    app.queue(default_concurrency_limit=cfg.concurrency)
    app.faceflow = ctx
    return app


def launch(app: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True, quiet: bool = False):
    """Serve ``app`` (from :func:`build_app`) offline; ``block=False`` returns at once
    (``prevent_thread_lock``). Returns gradio's (app, local_url, share_url). Of the server's files,
    gradio serves only uploads and the results of the jobs (``WORKDIR/jobs``): not the models,
    their training data or anything else under the workdir."""
    cfg: AppConfig = app.faceflow.config
    return app.launch(server_name=host, server_port=port, share=bool(share), prevent_thread_lock=not block,
                      inbrowser=False, show_error=True, quiet=quiet,
                      allowed_paths=[str(cfg.workdir / "jobs"), str(cfg.workdir / "examples")],
                      max_file_size=int(cfg.max_upload_mb * 2**20), ssr_mode=False, mcp_server=False, pwa=False,
                      enable_monitoring=False)


def add_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--workdir", default="outputs/app", help="where uploads, jobs and (by default) models go")
    p.add_argument("--models", default=None, help="folder of trained reenactment models (default: WORKDIR/models)")
    p.add_argument("--eval-dir", default=None, help="evaluation output folder shown first (default: WORKDIR/eval)")
    p.add_argument("--results-root", default=None,
                   help="the only folder whose evaluation results the Evaluate tab reads (default: WORKDIR)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device of every job")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload")
    p.add_argument("--max-minutes", type=float, default=5.0, help="longest video")
    p.add_argument("--keep-jobs", type=int, default=20,
                   help="keep the results of the newest N requests under WORKDIR/jobs (older ones are deleted)")
    p.add_argument("--max-jobs-mb", type=float, default=2048.0, help="and at most this many MB of them")
    p.add_argument("--concurrency", type=int, default=1,
                   help="long jobs run at once (1 on a CPU: two would share its cores; 2-4 on a GPU host)")
    p.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")


def run(args) -> int:
    app = build_app(args.workdir, args.models, eval_dir=args.eval_dir, results_root=args.results_root,
                    max_upload_mb=args.max_upload_mb, max_video_seconds=args.max_minutes * 60.0, device=args.device,
                    keep_jobs=args.keep_jobs, max_jobs_mb=args.max_jobs_mb, concurrency=args.concurrency)
    try:
        launch(app, host=args.host, port=args.port, share=args.share)
    finally:
        app.faceflow.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m apps.gradio_app`` (also ``faceflow app`` and ``python -m apps``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("apps.gradio_app", argv))


if __name__ == "__main__":
    raise SystemExit(main())
