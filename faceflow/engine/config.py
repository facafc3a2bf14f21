"""The harness's options: :class:`TrainConfig` (saved as ``OUT/config.json``), the presets'
defaults and the command-line flags that set it. Kept apart from :mod:`faceflow.engine.trainer` (torch)
so ``faceflow train ... --help`` answers without loading torch: each field carries its flag's help,
and :mod:`faceflow.runtime.flags` turns the fields into flags and the parsed flags back into a config."""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import asdict, dataclass
from pathlib import Path

from faceflow.errors import FaceflowError
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args, option

AMP_MODES = ("off", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")
# TrainConfig fields that may differ when a run is resumed (they do not change what is learnt
# from the steps already taken); ``out`` is where the run lives, not what it is.
RESUMABLE_KEYS = ("out", "iterations", "max_minutes", "val_every", "ckpt_every", "log_every",
                  "num_workers", "tensorboard")


@dataclass
class TrainConfig:
    """Options of one training run (saved as ``OUT/config.json`` with the task's config).

    ``batch_size`` is the global batch (split over DDP ranks); ``max_minutes`` 0 = no time
    budget; ``grad_clip`` 0 = no clipping (max global gradient norm per optimizer otherwise);
    ``val_samples`` 0 = the whole validation set, else that many evenly spaced pairs;
    ``amp`` is ignored (with a note) on CPU.
    """

    out: str = option("runs/run", "run directory (checkpoints, logs, config)", metavar="RUN_DIR")
    data: list[str] = option([], "training dataset directories (synthetic or annotated, recognised by their "
                                 "manifest.json; an annotate-dataset OUT_DIR or its splits/train.txt names its "
                                 "videos)", metavar="DIR")
    val_data: list[str] = option([], "validation dataset directories, the same kinds (none: no validation, no "
                                     "best.pt)", metavar="DIR")
    iterations: int = option(2000, "number of optimisation steps")
    batch_size: int = option(8, "global batch size (split over DDP processes)")
    lr: float = option(1e-4, "base learning rate of Adam")
    weight_decay: float = option(0.0, "Adam weight decay")
    warmup_steps: int = option(50, "linear LR warm-up steps")
    lr_milestones: list[float] = option([0.5, 0.7, 0.85], "fractions of the iterations where the LR is "
                                                          "multiplied by --lr-gamma", metavar="FRAC")
    lr_gamma: float = option(0.5, "LR factor at each milestone")
    seed: int = option(0, "seed of the data order, augmentation and initialisation")
    val_every: int = option(200, "validate every N steps")
    val_samples: int = option(64, "validation pairs used (0: all)")
    ckpt_every: int = option(100, "write last.pt every N steps")
    log_every: int = option(10, "log.csv row every N steps")
    num_workers: int = option(0, "DataLoader worker processes")
    device: str = option("auto", "auto (CUDA when available), cpu, cuda or cuda:N", metavar="DEVICE")
    amp: str = option("off", "mixed precision on CUDA (ignored on CPU)", choices=AMP_MODES)
    max_minutes: float = option(0.0, "time budget of this invocation: checkpoint and stop cleanly when used (0: none)")
    grad_clip: float = option(0.0, "max gradient norm (0: no clipping)")
    tensorboard: bool = option(False, "also write TensorBoard events to RUN_DIR/tb")
    init_weights: str | None = option(None, "fine-tune: start the networks from this weights file of the same "
                                            "kind (faceflow train export) or training checkpoint (e.g. a packed "
                                            "run's checkpoints/last.pt) instead of a random initialisation; the run "
                                            "has its own steps and schedule", metavar="FILE.pt")

    def validate(self) -> "TrainConfig":
        """Check every field; return self."""
        ints = {"iterations": 1, "batch_size": 1, "warmup_steps": 0, "seed": 0, "val_every": 1,
                "val_samples": 0, "ckpt_every": 1, "log_every": 1, "num_workers": 0}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise FaceflowError(f"train config: {name} must be an integer >= {lo}, got {v!r}")
        for name in ("lr", "weight_decay", "lr_gamma", "max_minutes", "grad_clip"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise FaceflowError(f"train config: {name} must be a finite number >= 0, got {v!r}")
        if not self.lr > 0:
            raise FaceflowError(f"train config: lr must be > 0, got {self.lr}")
        ms = list(self.lr_milestones)
        if any(not 0 < m < 1 for m in ms) or ms != sorted(ms):
            raise FaceflowError(f"train config: lr_milestones must be increasing fractions in (0, 1), got {ms}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise FaceflowError(f"train config: device must be one of {DEVICES}, got {self.device!r}")
        if self.amp not in AMP_MODES:
            raise FaceflowError(f"train config: amp must be one of {AMP_MODES}, got {self.amp!r}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["data"] = [str(Path(p).resolve()) for p in self.data]
        d["val_data"] = [str(Path(p).resolve()) for p in self.val_data]
        d["lr_milestones"] = [float(m) for m in self.lr_milestones]
        return d


def train_presets(presets: dict) -> dict[str, dict]:
    """``{preset: TrainConfig fields}`` of ``{preset: {"train": ..., "task": ...}}``."""
    return {name: p["train"] for name, p in presets.items()}


def add_common_arguments(p: argparse.ArgumentParser, presets: dict) -> None:
    """The harness options of ``train TASK``: one flag per :class:`TrainConfig` field, its default
    from the preset (``presets``: ``{preset: {"train": ..., "task": ...}}``) unless given."""
    p.add_argument("--preset", choices=sorted(presets), default="tiny",
                   help="tiny: small networks for a CPU (seconds per step: use --max-minutes and rerun the "
                        "same command to continue); paper: DeepFaceFlow's sizes for a GPU")
    add_dataclass_arguments(p, TrainConfig, train_presets(presets), required=("out", "data"))
    p.add_argument("--overwrite", action="store_true",
                   help="start over, deleting this run's checkpoints and logs, even if the config differs")


def config_from_args(args, preset_train: dict, **fixed) -> TrainConfig:
    """TrainConfig = defaults <- preset <- explicit command-line values <- ``fixed``."""
    return dataclass_from_args(TrainConfig, args, preset_train, **fixed).validate()
