"""The options of the DeepFaceFlow training tasks (:mod:`faceflow.engine.tasks`): their configs,
the presets and their command-line flags. No torch here (nor in this module's package import),
so ``faceflow train meshreg --help`` answers at once; the tasks import all of it from here."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from faceflow.errors import FaceflowError

TRAIN_PRESETS = {
    "tiny": dict(iterations=2000, batch_size=8, lr=1e-4, warmup_steps=50, val_every=200, val_samples=64,
                 ckpt_every=100, log_every=10, num_workers=0, amp="off", grad_clip=0.0),
    "paper": dict(iterations=300_000, batch_size=16, lr=1e-4, warmup_steps=1000, val_every=5000,
                  val_samples=1000, ckpt_every=2000, log_every=100, num_workers=8, amp="bf16", grad_clip=0.0),
}
MESHREG_PRESETS = {"tiny": dict(backbone="resnet18"), "paper": dict(backbone="resnet50")}
# tiny: a 9x9 correlation search (max displacement 4, stride 1, at 1/8 resolution, i.e. +-32 px in
# 8 px steps) instead of FlowNetC's 21x21 (+-160 px in 16 px steps): registered faces move a few
# pixels, and on a translation toy task the FlowNetC search did not beat zero flow after 300 CPU
# steps while the dense 9x9 one reached half of zero flow's error in 200 (see the README)
DFFNET_PRESETS = {"tiny": dict(width=0.25, max_displacement=4, stride2=1),
                  "paper": dict(width=1.0, max_displacement=20, stride2=2)}
PRESETS = {"meshreg": MESHREG_PRESETS, "dffnet": DFFNET_PRESETS}


def task_presets(name: str) -> dict:
    """``{preset: {"train": TrainConfig fields, "task": the task config's fields}}`` of a task."""
    return {k: {"train": TRAIN_PRESETS[k], "task": PRESETS[name][k]} for k in TRAIN_PRESETS}


@dataclass
class MeshRegConfig:
    """Options of :class:`MeshRegTask`; jitter magnitudes of 0 turn that jitter off."""

    backbone: str = "resnet18"
    pretrained_path: str | None = None
    edge_weight: float = 1.0
    jitter_shift: float = 4.0  # px
    jitter_scale: float = 0.04  # relative
    jitter_angle: float = 4.0  # degrees
    color_jitter: float = 0.2

    def validate(self) -> "MeshRegConfig":
        if self.backbone not in ("resnet18", "resnet50"):
            raise FaceflowError(f"meshreg backbone must be resnet18 or resnet50, got {self.backbone!r}")
        for name in ("edge_weight", "jitter_shift", "jitter_scale", "jitter_angle", "color_jitter"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise FaceflowError(f"meshreg {name} must be a finite number >= 0, got {v!r}")
        if self.jitter_scale >= 0.5 or self.color_jitter >= 1:
            raise FaceflowError("meshreg jitter_scale must be < 0.5 and color_jitter < 1")
        return self


@dataclass
class DFFNetConfig:
    """Options of :class:`DFFNetTask`. ``scale_weights`` None = the loss's default w_i
    (:func:`faceflow.nets.losses.default_scale_weights`); ``pncc_source`` 'gt' = the dataset's PNCC."""

    use_pncc: str = "full"
    width: float = 1.0
    max_displacement: int = 20  # correlation search radius in 1/8 cells (FlowNetC: 20)
    stride2: int = 2  # displacement step in 1/8 cells (FlowNetC: 2)
    alpha: float = 10.0
    scale_weights: list[float] | None = None
    pncc_source: str = "gt"
    color_jitter: float = 0.2
    brightness: float = 0.05  # independent brightness change of i2 (relative)

    def validate(self) -> "DFFNetConfig":
        if self.use_pncc not in ("full", "depth", "none"):
            raise FaceflowError(f"dffnet use_pncc must be full, depth or none, got {self.use_pncc!r}")
        if self.pncc_source != "gt":
            raise FaceflowError(f"dffnet pncc_source must be 'gt' (the dataset's PNCC), got {self.pncc_source!r}")
        for name in ("width", "alpha", "color_jitter", "brightness"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise FaceflowError(f"dffnet {name} must be a finite number >= 0, got {v!r}")
        if not self.width > 0:
            raise FaceflowError(f"dffnet width must be > 0, got {self.width}")
        if int(self.max_displacement) < 1 or int(self.stride2) < 1 or self.stride2 > self.max_displacement:
            raise FaceflowError(f"dffnet needs max_displacement >= stride2 >= 1, got {self.max_displacement}, "
                                f"{self.stride2}")
        if self.color_jitter >= 1 or self.brightness >= 1:
            raise FaceflowError("dffnet color_jitter and brightness must be < 1")
        if self.scale_weights is not None:
            self.scale_weights = [float(w) for w in self.scale_weights]
            if len(self.scale_weights) != 7 or any(w < 0 for w in self.scale_weights):
                raise FaceflowError(f"dffnet scale_weights must be 7 numbers >= 0 (coarse -> fine), "
                                    f"got {self.scale_weights}")
        return self


def override(cfg_cls, preset: dict, args, names: dict):
    """A task config: the preset's fields, overridden by the options given on the command line."""
    kw = dict(preset)
    for arg, name in names.items():
        v = getattr(args, arg, None)
        if v is not None:
            kw[name] = v
    valid = {f.name for f in fields(cfg_cls)}
    return cfg_cls(**{k: v for k, v in kw.items() if k in valid}).validate()


def add_meshreg_arguments(p) -> None:
    d = MeshRegConfig()
    p.add_argument("--backbone", choices=("resnet18", "resnet50"),
                   help="ResNet trunk (default: from the preset: tiny resnet18, paper resnet50)")
    p.add_argument("--pretrained", metavar="PATH",
                   help="local torchvision ImageNet state dict for the backbone (default: random init; "
                        "nothing is downloaded)")
    p.add_argument("--edge-weight", type=float, help=f"weight of the edge-length term of eq. (4) "
                                                     f"(default: {d.edge_weight})")
    p.add_argument("--jitter-shift", type=float, help=f"max random shift in px (default: {d.jitter_shift})")
    p.add_argument("--jitter-scale", type=float, help=f"max relative random scale (default: {d.jitter_scale})")
    p.add_argument("--jitter-angle", type=float, help=f"max random rotation in degrees (default: {d.jitter_angle})")
    p.add_argument("--color-jitter", type=float,
                   help=f"brightness/contrast/saturation jitter strength, 0 = off (default: {d.color_jitter})")


def add_dffnet_arguments(p) -> None:
    d = DFFNetConfig()
    p.add_argument("--width", type=float,
                   help="channel-width multiplier (default: from the preset: tiny 0.25, paper 1.0)")
    p.add_argument("--max-displacement", type=int,
                   help="correlation search radius in 1/8-resolution cells (default: from the preset: tiny 4, "
                        "paper 20 = FlowNetC)")
    p.add_argument("--stride2", type=int,
                   help="correlation displacement step in cells (default: from the preset: tiny 1, paper 2)")
    p.add_argument("--use-pncc", choices=("full", "depth", "none"),
                   help=f"PNCC input: all 3 channels, depth only, or none (Table 3 ablation) "
                        f"(default: {d.use_pncc})")
    p.add_argument("--alpha", type=float, help=f"weight of the photometric term of eq. (5) (default: {d.alpha})")
    p.add_argument("--scale-weights", type=float, nargs=7, metavar="W",
                   help="eq. (5) weights of the 7 predictions, coarse -> fine (default: 1 at every scale, the paper's)")
    p.add_argument("--color-jitter", type=float,
                   help=f"colour jitter strength shared by i1 and i2, 0 = off (default: {d.color_jitter})")
    p.add_argument("--brightness", type=float,
                   help=f"independent brightness change of i2, 0 = off (default: {d.brightness})")
