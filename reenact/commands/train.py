"""Train a person-specific renderer: ``python -m reenact train DATA_DIR MODEL_DIR``.

DATA_DIR comes from ``python -m reenact preprocess``; MODEL_DIR receives the run (the shared
harness of :mod:`faceflow.engine.trainer`: ``config.json``, ``checkpoints/last.pt`` written atomically,
``log.csv`` with every loss by name, ``val.csv`` with the held-out APD, ``samples/`` pictures
and side-by-side videos (NMFC | generated | real) at every validation). Rerun the same command
to resume after an interruption, or with a larger ``--max-iters`` to continue training.

Presets: ``tiny`` (narrow networks, 600 steps, learns a face on a CPU in tens of minutes) and
``paper`` (the thesis' networks and optimiser; for GPUs). ``torchrun --nproc_per_node N -m
reenact train ...`` trains with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from reenact.presets import PRESETS

if TYPE_CHECKING:  # imported where used, so --help does not load torch
    from faceflow.engine.trainer import TrainConfig
    from reenact.task import ReenactTask


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", help="prepared target (python -m reenact preprocess VIDEO DATA_DIR)")
    p.add_argument("model_dir", help="run directory (created; rerun to resume)")
    p.add_argument("--flow", default="faceflow3d", choices=["faceflow3d", "dis2d", "none"],
                   help="flow provider fed to the dynamics discriminator and the temporal loss "
                        "(must be cached in DATA_DIR)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="network sizes and schedule")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--max-iters", type=int, default=None, help="training steps (default: the preset's)")
    g.add_argument("--minutes", type=float, default=None,
                   help="train for this many minutes (the schedule still spans --max-iters or the preset's steps)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the preset's, 2e-4)")
    p.add_argument("--seq-len", type=int, default=None, help="longest training sequence (default: the preset's)")
    p.add_argument("--val-every", type=int, default=None, help="validate and write samples every N steps")
    p.add_argument("--vgg-weights", default=None,
                   help="VGG-19 weights file for the perceptual loss (default: $FACEFLOW_VGG19 or the torch "
                        "cache; without it the loss is off and the run says so)")
    p.add_argument("--composite", action="store_true",
                   help="vid2vid-style generator head: also predict a flow and an occlusion mask and blend the "
                        "warped previous frame with the synthesised one (off by default, as in Head2Head++)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"], help="mixed precision on CUDA")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--overwrite", action="store_true", help="start over, deleting this run's checkpoints and logs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def configs(args) -> tuple[ReenactTask, TrainConfig]:
    """The task and the harness config of the parsed options: defaults <- preset <- options."""
    from faceflow.engine.trainer import TrainConfig
    from reenact.task import ReenactTask

    preset = PRESETS[args.preset]
    kw = dict(preset["train"])
    for a, f in (("max_iters", "iterations"), ("batch_size", "batch_size"), ("lr", "lr"),
                 ("val_every", "val_every"), ("seed", "seed")):
        v = getattr(args, a, None)
        if v is not None:
            kw[f] = v
    kw.update(out=args.model_dir, data=[args.data_dir], device=args.device, amp=args.amp,
              num_workers=args.workers, max_minutes=float(args.minutes or 0.0))
    cfg = TrainConfig(**kw).validate()
    task_cfg = ReenactTask.make_config(args.preset, args.data_dir, args.flow, composite=args.composite,
                                       seq_len_max=args.seq_len,
                                       vgg_weights=args.vgg_weights)
    return ReenactTask(task_cfg), cfg


def run(args) -> int:
    from faceflow.engine.trainer import dist_rank, train

    task, cfg = configs(args)
    summary = train(task, cfg, overwrite=args.overwrite, command=getattr(args, "command_line", None),
                    progress=not args.quiet)
    if dist_rank() == 0:
        print(json.dumps({k: summary[k] for k in ("step", "status", "seconds_per_step")}
                         | {"val": summary.get("val")}))
    return 143 if summary["status"] == "SIGTERM" else 0
