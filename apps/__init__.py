"""apps: the local Gradio front-end (:mod:`apps.gradio_app`): 3D face flow, reenactment, preparing
and training a target, and the self-reenactment tables."""

from faceflow.runtime.threads import prefer_passive_wait

prefer_passive_wait()  # before torch loads: see faceflow.runtime.threads
