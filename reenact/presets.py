"""The options of the reenact commands without torch: the preprocessing config and the
training presets of the person-specific renderer: ``{name: {"train": TrainConfig fields,
"task": ReenactConfig fields}}``. Kept apart from :mod:`reenact.task` (torch, the networks) so
the command line can list them without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceflow.runtime.flags import option

PRESETS = {
    # the thesis' networks and optimiser; a long budget for a GPU
    "paper": {"train": dict(iterations=40000, batch_size=2, lr=2e-4, warmup_steps=0,
                                 lr_milestones=[0.5, 0.75], lr_gamma=0.5, val_every=2000, val_samples=8,
                                 ckpt_every=500, log_every=50),
              "task": {"generator": "paper", "discriminator": "paper", "seq_len_start": 3, "seq_len_max": 12,
                       "seq_len_double_every": 5000, "val_len": 32, "lambda_l1": 0.0,
                       "perceptual": "dffnet"}},
    # narrow networks that learn a face on a CPU in minutes; the L1 term and the face-feature loss
    # stand in for the VGG loss when VGG-19 weights are not on the machine (the usual offline case)
    "tiny": {"train": dict(iterations=600, batch_size=1, lr=2e-4, warmup_steps=0,
                                lr_milestones=[0.7], lr_gamma=0.5, val_every=100, val_samples=4,
                                ckpt_every=25, log_every=10),
             "task": {"generator": "tiny", "discriminator": "tiny", "seq_len_start": 3, "seq_len_max": 6,
                      "seq_len_double_every": 200, "val_len": 12, "lambda_l1": 10.0,
                      "perceptual": "dffnet"}},
}


@dataclass
class PreprocessConfig:
    """Options of one preprocessing run (saved in the manifest)."""

    size: int = option(256, "crop size in pixels (the synthesis resolution)")
    flows: tuple[str, ...] = option(("faceflow3d",), "flow provider(s) between consecutive real frames; several "
                                    "may be cached side by side", choices=("faceflow3d", "dis2d", "none"),
                                    flag="--flow")
    max_frames: int | None = option(None, "only the first N frames of the video")
    flow_weights: str | None = option(None, "directory with DeepFaceFlow's meshreg.pt and dffnet.pt (default: "
                                            "the shipped weights)")
    device: str = option("auto", "device of the flow network", choices=("auto", "cpu", "cuda"))
    detector: str = option("mediapipe", "landmark backend (dlib: Head2Head++'s 68-point predictor)",
                           choices=("mediapipe", "fan", "dlib"))
    conf_tau: float = option(0.1, "photometric confidence threshold of the flows (reenact.flows)")
    videos: bool = option(True, "skip writing nmfc.mp4 and eyes.mp4 (by default they are written)")
    extra: dict = field(default_factory=dict)

    FLAGS = ("size", "flows", "max_frames", "flow_weights", "device", "detector", "videos")
