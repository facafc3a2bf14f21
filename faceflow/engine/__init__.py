"""The one training harness: its config, task interface, sampler, checkpoints, logs, distributed set-up,
the loop (``trainer``), DeepFaceFlow's two tasks (``dff_tasks``, options in ``dff_options``) and weights files."""
