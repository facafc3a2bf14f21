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
    """Options of an evaluation run (:meth:`fixed` lists those an OUT directory is tied to)."""

    preset: str = option("tiny", "training preset (reenact.presets)", choices=tuple(sorted(PRESETS)))
    iters: int | None = option(None, "training steps per model (default: the preset's)", flag="--iterations",
                               metavar="N")
    minutes: float | None = option(None, "training minutes per model instead of steps (the schedule spans the "
                                         "preset's steps)", flag="--max-minutes", metavar="MIN")
    seeds: tuple[int, ...] = option((0,), "training seeds: one model per video, flow provider and seed; the tables "
                                          "give mean +- std over the seeds and a paired comparison of the "
                                          "providers (more seeds can be added to an OUT later)", metavar="SEED")
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
    FLAGS = ("flows", "preset", "seeds", "size", "max_frames", "device", "lpips_weights", "sample_frames")

    def __post_init__(self):
        self.flows = tuple(dict.fromkeys(self.flows))  # each provider once, in the order given
        self.seeds = tuple(dict.fromkeys(int(s) for s in self.seeds))

    def fixed(self) -> dict:
        """The options an OUT directory is tied to (OUT/config.json): the cells must be comparable
        (seeds are not: a later run may add seeds)."""
        return {"preset": self.preset, "iters": self.iters, "minutes": self.minutes,
                "size": self.size, "max_frames": self.max_frames}
