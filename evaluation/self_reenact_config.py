"""The options of the self-reenactment tables (:mod:`evaluation.self_reenact`), kept apart from it
(torch, the networks) so ``faceflow evaluate self-reenact --help`` answers without loading torch.
Each field's help is its flag's; the training budget uses the harness' flag names
(``--iterations``, ``--max-minutes``, as ``faceflow train`` and ``faceflow reenact train``)."""

from __future__ import annotations

from dataclasses import dataclass

from faceflow.runtime.assets import ALEXNET_FILENAME
from faceflow.runtime.flags import option
from reenact.presets import PRESETS

FLOWS = ("faceflow3d", "dis2d", "none")


@dataclass
class SelfReenactConfig:
    """Options of an evaluation run (the first six are fixed for an OUT directory)."""

    preset: str = option("tiny", "training preset (reenact.presets)", choices=tuple(sorted(PRESETS)))
    iters: int | None = option(None, "training steps per model (default: the preset's)", flag="--iterations",
                               metavar="N")
    minutes: float | None = option(None, "training minutes per model instead of steps (the schedule spans the "
                                         "preset's steps)", flag="--max-minutes", metavar="MIN")
    seed: int = option(0, "training seed (the same for every model)")
    size: int = option(256, "crop size for videos (prepared directories keep theirs)")
    max_frames: int | None = option(None, "only the first N frames of each video")
    flows: tuple[str, ...] = option(("dis2d", "faceflow3d"), "flow providers to compare (one table row each)",
                                    choices=FLOWS)
    device: str = option("auto", "device for the flows, training and scoring", choices=("auto", "cpu", "cuda"))
    lpips_weights: str | None = option(None, f"AlexNet ImageNet weights for LPIPS (default: $FACEFLOW_ALEXNET or "
                                             f"the torch cache's {ALEXNET_FILENAME}; without them LPIPS is n/a)")
    sample_frames: int = option(300, "frames in each side-by-side sample video")
    progress: bool = True  # progress bars (the command's --quiet turns them off)

    BUDGET = ("iters", "minutes")  # one or the other
    FLAGS = ("flows", "preset", "seed", "size", "max_frames", "device", "lpips_weights", "sample_frames")

    def __post_init__(self):
        self.flows = tuple(dict.fromkeys(self.flows))  # each provider once, in the order given

    def fixed(self) -> dict:
        """The options an OUT directory is tied to (OUT/config.json): the cells must be comparable."""
        return {"preset": self.preset, "iters": self.iters, "minutes": self.minutes, "seed": self.seed,
                "size": self.size, "max_frames": self.max_frames}
