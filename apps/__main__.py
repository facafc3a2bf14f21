"""``python -m apps [--port N] [--host 127.0.0.1] [--workdir outputs/app] [--models DIR] [--share]``:
the Gradio front-end (:mod:`apps.gradio_app`)."""

from faceflow.errors import run_cli

from .gradio_app import main

raise SystemExit(run_cli(main))
