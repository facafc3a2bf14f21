"""Train a person-specific renderer: ``python -m reenact train DATA_DIR MODEL_DIR``.

DATA_DIR comes from ``python -m reenact preprocess``; MODEL_DIR receives the run (the shared
harness of :mod:`faceflow.engine.trainer`: ``config.json``, ``checkpoints/last.pt`` written atomically,
``log.csv`` with every loss by name, ``val.csv`` with the held-out APD, ``samples/`` pictures
and side-by-side videos (NMFC | generated | real) at every validation). Rerun the same command
to resume after an interruption, or with a larger ``--iterations`` to continue training.

Presets: ``tiny`` (narrow networks, 600 steps, learns a face on a CPU in tens of minutes) and
``paper`` (the thesis' networks and optimiser; for GPUs). ``torchrun --nproc_per_node N -m
reenact train ...`` trains with DistributedDataParallel. The harness flags are those of
``faceflow train`` (``--iterations``, ``--max-minutes``, ``--num-workers``, ...); the older
spellings ``--max-iters``, ``--minutes`` and ``--workers`` still work.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from faceflow.engine.config import TrainConfig, config_from_args, train_presets
from faceflow.runtime.flags import add_dataclass_arguments
from reenact.presets import PRESETS

if TYPE_CHECKING:  # imported where used, so --help does not load torch
    from reenact.task import ReenactTask

# the harness flags (TrainConfig fields) of `reenact train`, under the names of `faceflow train`;
# the older spellings of this command stay as aliases
HARNESS_ALIASES = {"iterations": ("--max-iters",), "max_minutes": ("--minutes",), "num_workers": ("--workers",)}
# help texts that say more than TrainConfig's for this task
HARNESS_HELP = {
    "batch_size": {"help": "sequences per step (split over DDP processes)"},
    "val_every": {"help": "validate and write samples every N steps"},
    "max_minutes": {"help": "train for this many minutes, then checkpoint and stop (the LR schedule still "
                            "spans --iterations)"},
}


def _harness(p, *names: str) -> None:
    add_dataclass_arguments(p, TrainConfig, train_presets(PRESETS), names=names, aliases=HARNESS_ALIASES,
                            custom=HARNESS_HELP)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", help="prepared target (python -m reenact preprocess VIDEO DATA_DIR)")
    p.add_argument("model_dir", help="run directory (created; rerun to resume)")
    p.add_argument("--flow", default="faceflow3d", choices=["faceflow3d", "dis2d", "none"],
                   help="flow provider fed to the dynamics discriminator and the temporal loss "
                        "(must be cached in DATA_DIR)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="network sizes and schedule")
    _harness(p.add_mutually_exclusive_group(), "iterations", "max_minutes")
    _harness(p, "batch_size", "lr")
    p.add_argument("--seq-len", type=int, default=None, help="longest training sequence (default: the preset's)")
    _harness(p, "val_every", "ckpt_every")
    p.add_argument("--vgg-weights", default=None,
                   help="VGG-19 weights file for the perceptual loss (default: $FACEFLOW_VGG19 or the torch "
                        "cache; without it the loss is off and the run says so)")
    p.add_argument("--upsample", default="resize", choices=["resize", "transpose"],
                   help="the generator's x2 upsampling: resize = nearest x2 then a 3x3 conv (no checkerboard "
                        "grid), transpose = the thesis' transposed conv (vid2vid.generator)")
    p.add_argument("--perceptual", default=None, choices=["none", "dffnet"],
                   help="perceptual loss that needs no download: dffnet = feature matching on the feature tower "
                        "of the shipped DeepFaceFlow network (vid2vid.losses.FaceFeatureLoss; sharper frames); "
                        "default: the preset's")
    p.add_argument("--face-weights", default=None,
                   help="DFFNet weights file of --perceptual dffnet (default: faceflow/weights/dffnet.pt)")
    p.add_argument("--composite", action="store_true",
                   help="vid2vid-style generator head: also predict a flow and an occlusion mask and blend the "
                        "warped previous frame with the synthesised one (off by default, as in Head2Head++)")
    _harness(p, "seed", "device", "amp", "num_workers")
    p.add_argument("--overwrite", action="store_true", help="start over, deleting this run's checkpoints and logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def configs(args) -> tuple[ReenactTask, TrainConfig]:
    """The task and the harness config of the parsed options: defaults <- preset <- options."""
    from reenact.task import ReenactTask

    cfg = config_from_args(args, PRESETS[args.preset]["train"], out=args.model_dir, data=[args.data_dir])
    task_cfg = ReenactTask.make_config(args.preset, args.data_dir, args.flow, composite=args.composite,
                                       upsample=args.upsample,
                                       seq_len_max=args.seq_len,
                                       vgg_weights=args.vgg_weights, perceptual=args.perceptual,
                                       face_weights=args.face_weights)
    return ReenactTask(task_cfg), cfg


def run(args) -> int:
    from faceflow.engine.distributed import dist_rank
    from faceflow.engine.trainer import train

    task, cfg = configs(args)
    summary = train(task, cfg, overwrite=args.overwrite, command=getattr(args, "command_line", None),
                    progress=not args.quiet)
    if dist_rank() == 0:
        print(json.dumps({k: summary[k] for k in ("step", "status", "seconds_per_step")}
                         | {"val": summary.get("val")}))
    return 143 if summary["status"] == "SIGTERM" else 0
