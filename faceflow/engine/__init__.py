"""The one training harness: its config and flags, sampler, checkpoints, logs, distributed set-up and the loop."""
