"""The options of the DeepFaceFlow training tasks (:mod:`faceflow.engine.dff_tasks`): their configs,
the presets and their command-line flags (each field's help in its metadata, made into flags by
:mod:`faceflow.runtime.flags`). No torch here (nor in this module's package import), so
``faceflow train meshreg --help`` answers at once; the tasks import all of it from here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from faceflow.errors import FaceflowError
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args, option

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

    backbone: str = option("resnet18", "ResNet trunk", choices=("resnet18", "resnet50"))
    pretrained_path: str | None = option(None, "local torchvision ImageNet state dict for the backbone (default: "
                                               "random init; nothing is downloaded)", metavar="PATH")
    edge_weight: float = option(1.0, "weight of the edge-length term of eq. (4)")
    jitter_shift: float = option(4.0, "max random shift in px")
    jitter_scale: float = option(0.04, "max relative random scale")
    jitter_angle: float = option(4.0, "max random rotation in degrees")
    color_jitter: float = option(0.2, "brightness/contrast/saturation jitter strength, 0 = off")

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

    use_pncc: str = option("full", "PNCC input: all 3 channels, depth only, or none (Table 3 ablation)",
                           choices=("full", "depth", "none"))
    width: float = option(1.0, "channel-width multiplier")
    max_displacement: int = option(20, "correlation search radius in 1/8-resolution cells (FlowNetC: 20)")
    stride2: int = option(2, "correlation displacement step in cells (FlowNetC: 2)")
    alpha: float = option(10.0, "weight of the photometric term of eq. (5)")
    scale_weights: list[float] | None = option(None, "eq. (5) weights of the 7 predictions, coarse -> fine "
                                                     "(default: 1 at every scale, the paper's)", nargs=7, metavar="W")
    pncc_source: str = "gt"
    color_jitter: float = option(0.2, "colour jitter strength shared by i1 and i2, 0 = off")
    brightness: float = option(0.05, "independent brightness change of i2 (relative), 0 = off")
    init: str = option("none", "none: the paper's network; dis: start from DIS optical flow, an input whose "
                               "2D flow the network corrects and to which it adds z (a classical initialisation)",
                       choices=("none", "dis"))
    decompose: bool = option(False, "predict the rigid head-motion flow and the expression flow, whose sum is the "
                                    "flow; trains on the data's head_flow too (synthetic pairs have it)")
    head_weight: float = option(1.0, "weight of the head-motion flow's end-point term (decomposed networks)")
    inplane: float = option(0.0, "fraction of each batch whose frame 2 is replaced by frame 1 moved by a rigid "
                                 "motion of the image plane, with its exact flow (z = 0); a quarter of them are not "
                                 "moved at all (identical images, zero flow); 0 = off")
    inplane_shift: float = option(5.0, "max shift of the in-plane pairs in px")
    inplane_angle: float = option(4.0, "max rotation of the in-plane pairs in degrees")
    self_weight: float = option(0.0, "weight of the self-supervised loss (census data term + smoothness, "
                                     "occlusion-masked) on real pairs; 0 = off")
    smooth_weight: float = option(0.5, "weight of the smoothness term inside the self-supervised loss")
    photo_weight: float = option(0.0, "weight of an RGB photometric term inside the self-supervised loss (robust "
                                      "mean absolute difference of I1 and the warped I2, 0-255); 0 = off")
    pseudo_weight: float = option(1.0, "weight of the end-point terms to the pseudo ground truth of real pairs "
                                       "(the model fit; with self-supervision it mainly teaches z)")

    def validate(self) -> "DFFNetConfig":
        if self.use_pncc not in ("full", "depth", "none"):
            raise FaceflowError(f"dffnet use_pncc must be full, depth or none, got {self.use_pncc!r}")
        if self.init not in ("none", "dis"):
            raise FaceflowError(f"dffnet init must be none or dis, got {self.init!r}")
        if self.head_weight < 0:
            raise FaceflowError(f"dffnet head_weight must be >= 0, got {self.head_weight}")
        if self.pncc_source != "gt":
            raise FaceflowError(f"dffnet pncc_source must be 'gt' (the dataset's PNCC), got {self.pncc_source!r}")
        if not 0 <= self.inplane <= 1:
            raise FaceflowError(f"dffnet inplane must be a fraction in [0, 1], got {self.inplane}")
        for name in ("width", "alpha", "color_jitter", "brightness", "inplane_shift", "inplane_angle", "self_weight",
                     "smooth_weight", "photo_weight", "pseudo_weight"):
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


# the task options of `faceflow train meshreg|dffnet`, in the order of their help
MESHREG_FLAGS = ("backbone", "pretrained_path", "edge_weight", "jitter_shift", "jitter_scale", "jitter_angle",
                 "color_jitter")
DFFNET_FLAGS = ("width", "max_displacement", "stride2", "use_pncc", "init", "decompose", "head_weight", "alpha",
                "scale_weights", "color_jitter", "brightness", "inplane", "inplane_shift", "inplane_angle",
                "self_weight", "smooth_weight", "photo_weight", "pseudo_weight")
FLAGS = {"meshreg": MESHREG_FLAGS, "dffnet": DFFNET_FLAGS}


def _task_presets(name: str) -> dict[str, dict]:
    return {k: v["task"] for k, v in task_presets(name).items()}


def add_meshreg_arguments(p) -> None:
    add_dataclass_arguments(p, MeshRegConfig, _task_presets("meshreg"), names=MESHREG_FLAGS,
                            aliases={"pretrained_path": ("--pretrained",)})


def add_dffnet_arguments(p) -> None:
    add_dataclass_arguments(p, DFFNetConfig, _task_presets("dffnet"), names=DFFNET_FLAGS)


def task_config_from_args(name: str, cfg_cls, args, preset: dict):
    """The config of task ``name``: the preset's fields, overridden by the options given on the
    command line (:func:`faceflow.runtime.flags.dataclass_from_args`), validated."""
    return dataclass_from_args(cfg_cls, args, preset, names=FLAGS[name]).validate()


@dataclass
class LandmarkMeshRegConfig:
    """Options of `faceflow train meshreg-landmarks` (:mod:`faceflow.engine.landmark_meshreg`)."""

    data: list[str] = option([], "flow datasets to fit on (synthetic sets and annotated clip directories)",
                             nargs="+", metavar="DIR")
    val_data: list[str] = option([], "flow datasets to validate on", nargs="*", metavar="DIR")
    out: str = option("meshreg.pt", "the weights file to write", metavar="FILE.pt")
    stride: int = option(1, "use every stride-th pair of the data (both of its images)")
    val_stride: int = option(4, "the same for the validation data")
    ridge: float = option(1e-7, "ridge weight, relative to the mean diagonal of the normal matrix")
    rank: int = option(128, "rank of the linear map (the fitted meshes need about 64)")
    batch_size: int = option(16, "pairs read at a time")

    def validate(self) -> "LandmarkMeshRegConfig":
        if not self.data:
            raise FaceflowError("meshreg-landmarks needs --data (at least one flow dataset)")
        for name in ("stride", "val_stride", "rank", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise FaceflowError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.ridge > 0:
            raise FaceflowError(f"ridge must be > 0, got {self.ridge}")
        return self
