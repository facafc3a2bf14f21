"""The options of the cross-reenactment tables (:mod:`evaluation.cross_reenact`), kept apart from
it (torch, the networks) so ``faceflow evaluate cross-reenact --help`` answers without loading
torch. Each field's help is its flag's."""

from __future__ import annotations

from dataclasses import dataclass

from faceflow.runtime.flags import option


@dataclass
class CrossReenactConfig:
    """Options of a cross-reenactment evaluation run."""

    modes: tuple[str, ...] = option(("head", "face"), "reenactment modes to score (one cell per model, driver "
                                                      "and mode)", choices=("head", "face"))
    max_frames: int | None = option(150, "only the first N frames of each driver (0: all)")
    device: str = option("auto", "device of the generator", choices=("auto", "cpu", "cuda"))
    sample_frames: int = option(150, "frames in each side-by-side sample video")
    progress: bool = True  # progress bars (the command's --quiet turns them off)

    FLAGS = ("modes", "max_frames", "device", "sample_frames")

    def __post_init__(self):
        self.modes = tuple(dict.fromkeys(self.modes))
        if self.max_frames == 0:
            self.max_frames = None
