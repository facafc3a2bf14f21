"""apps: the local Gradio front-end (:mod:`apps.gradio_app`): 3D face flow, reenactment, preparing
and training a target, and the self-reenactment tables."""
