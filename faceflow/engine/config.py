"""The harness's options: :class:`TrainConfig` (saved as ``OUT/config.json``), the presets'
defaults and the command-line flags that set it. Kept apart from :mod:`faceflow.engine.trainer` (torch)
so ``faceflow train ... --help`` answers without loading torch."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from faceflow.errors import FaceflowError

AMP_MODES = ("off", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Options of one training run (saved as ``OUT/config.json`` with the task's config).

    ``batch_size`` is the global batch (split over DDP ranks); ``max_minutes`` 0 = no time
    budget; ``grad_clip`` 0 = no clipping (max global gradient norm per optimizer otherwise);
    ``val_samples`` 0 = the whole validation set, else that many evenly spaced pairs;
    ``amp`` is ignored (with a note) on CPU.
    """

    out: str = "runs/run"
    data: list[str] = field(default_factory=list)
    val_data: list[str] = field(default_factory=list)
    iterations: int = 2000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.85])
    lr_gamma: float = 0.5
    seed: int = 0
    val_every: int = 200
    val_samples: int = 64
    ckpt_every: int = 100
    log_every: int = 10
    num_workers: int = 0
    device: str = "auto"
    amp: str = "off"
    max_minutes: float = 0.0
    grad_clip: float = 0.0
    tensorboard: bool = False

    def validate(self) -> "TrainConfig":
        """Check every field; return self."""
        ints = {"iterations": 1, "batch_size": 1, "warmup_steps": 0, "seed": 0, "val_every": 1,
                "val_samples": 0, "ckpt_every": 1, "log_every": 1, "num_workers": 0}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
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


def _preset_help(presets: dict, section: str, key: str) -> str:
    vals = [f"{name} {p[section][key]}" for name, p in presets.items() if key in p[section]]
    if vals:
        return f" (default: from the preset: {', '.join(vals)})"
    default = {f.name: f for f in fields(TrainConfig)}[key]
    value = default.default_factory() if callable(default.default_factory) else default.default
    return f" (default: {' '.join(map(str, value)) if isinstance(value, list) else value})"


def add_common_arguments(p: argparse.ArgumentParser, presets: dict) -> None:
    """The harness options of ``train TASK``; unset values come from the preset."""
    h = lambda key: _preset_help(presets, "train", key)
    p.add_argument("--preset", choices=sorted(presets), default="tiny",
                   help="tiny: small networks for a CPU (seconds per step: use --max-minutes and rerun the "
                        "same command to continue); paper: DeepFaceFlow's sizes for a GPU")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="training dataset directories (synthetic or annotated, recognised by their manifest.json)")
    p.add_argument("--val-data", nargs="+", default=[], metavar="DIR",
                   help="validation dataset directories (none: no validation, no best.pt)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (checkpoints, logs, config)")
    p.add_argument("--iterations", type=int, help="number of optimisation steps" + h("iterations"))
    p.add_argument("--batch-size", type=int, help="global batch size (split over DDP processes)" + h("batch_size"))
    p.add_argument("--lr", type=float, help="base learning rate of Adam" + h("lr"))
    p.add_argument("--weight-decay", type=float, help="Adam weight decay" + h("weight_decay"))
    p.add_argument("--warmup-steps", type=int, help="linear LR warm-up steps" + h("warmup_steps"))
    p.add_argument("--lr-milestones", type=float, nargs="+", metavar="FRAC",
                   help="fractions of the iterations where the LR is multiplied by --lr-gamma" + h("lr_milestones"))
    p.add_argument("--lr-gamma", type=float, help="LR factor at each milestone" + h("lr_gamma"))
    p.add_argument("--seed", type=int, help="seed of the data order, augmentation and initialisation" + h("seed"))
    p.add_argument("--val-every", type=int, help="validate every N steps" + h("val_every"))
    p.add_argument("--val-samples", type=int, help="validation pairs used (0: all)" + h("val_samples"))
    p.add_argument("--ckpt-every", type=int, help="write last.pt every N steps" + h("ckpt_every"))
    p.add_argument("--log-every", type=int, help="log.csv row every N steps" + h("log_every"))
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes" + h("num_workers"))
    p.add_argument("--max-minutes", type=float,
                   help="time budget of this invocation: checkpoint and stop cleanly when used (0: none)"
                   + h("max_minutes"))
    p.add_argument("--device", choices=DEVICES, help="auto: CUDA when available" + h("device"))
    p.add_argument("--amp", choices=AMP_MODES, help="mixed precision on CUDA (ignored on CPU)" + h("amp"))
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0: no clipping)" + h("grad_clip"))
    p.add_argument("--overwrite", action="store_true",
                   help="start over, deleting this run's checkpoints and logs, even if the config differs")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events to RUN_DIR/tb")


_ARG_TO_FIELD = {"iterations": "iterations", "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay",
                 "warmup_steps": "warmup_steps", "lr_milestones": "lr_milestones", "lr_gamma": "lr_gamma",
                 "seed": "seed", "val_every": "val_every", "val_samples": "val_samples", "ckpt_every": "ckpt_every",
                 "log_every": "log_every", "num_workers": "num_workers", "max_minutes": "max_minutes",
                 "device": "device", "amp": "amp", "grad_clip": "grad_clip"}


def config_from_args(args, preset_train: dict) -> TrainConfig:
    """TrainConfig = defaults <- preset <- explicit command-line values."""
    kw = dict(preset_train)
    for a, f in _ARG_TO_FIELD.items():
        v = getattr(args, a, None)
        if v is not None:
            kw[f] = v
    kw.update(out=args.out, data=list(args.data), val_data=list(args.val_data or []),
              tensorboard=bool(args.tensorboard))
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in kw.items() if k in names}).validate()
