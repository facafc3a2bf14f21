"""``python -m apps [--port N] [--host 127.0.0.1] [--workdir outputs/app] ...``: the Gradio
front-end (:mod:`apps.gradio_app`; also ``faceflow app``)."""

from apps.gradio_app import main

raise SystemExit(main())
