"""``faceflow train meshreg|meshreg-landmarks|dffnet|export|pack``: train 3DMeshReg or DFFNet with the one harness
(:mod:`faceflow.engine.trainer`: resumable, DDP under torchrun, AMP on CUDA), or export a run as a
weights file."""

from __future__ import annotations

import json

from faceflow.engine.config import add_common_arguments, config_from_args
from faceflow.engine.dff_options import (
    add_dffnet_arguments,
    add_meshreg_arguments,
    task_presets,
)


class TrainTask:
    """``faceflow train NAME``: the harness options with the presets' defaults, then the task's."""

    def __init__(self, name: str, add_task_arguments, doc: str):
        self.name, self._add_task_arguments, self.__doc__ = name, add_task_arguments, doc

    def add_arguments(self, p) -> None:
        add_common_arguments(p, task_presets(self.name))
        self._add_task_arguments(p)

    def run(self, args) -> int:
        from faceflow.engine.distributed import dist_rank
        from faceflow.engine.task import load_task
        from faceflow.engine.trainer import train

        cls = load_task(self.name)
        preset = cls.presets()[args.preset]
        cfg = config_from_args(args, preset["train"])
        task = cls.from_args(args, preset["task"])
        summary = train(task, cfg, overwrite=args.overwrite, command=getattr(args, "command_line", None))
        if dist_rank() == 0:
            print(json.dumps({k: summary[k] for k in ("step", "status", "best", "seconds_per_step")}))
        return 143 if summary["status"] == "SIGTERM" else 0


class Export:
    """Export a training run as a weights file (faceflow.engine.weights): loadable with
    load_weights(path), float32 in eval mode, with the run's config and provenance."""

    def add_arguments(self, p) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
        p.add_argument("--out", required=True, metavar="FILE.pt", help="weights file to write")
        p.add_argument("--which", choices=("best", "last"), default="best",
                       help="checkpoint to export (best falls back to last when the run had no validation)")
        p.add_argument("--half", action="store_true", help="store parameters in float16 (half the size)")

    def run(self, args) -> int:
        from faceflow.engine.weights import export_run

        print(export_run(args.run_dir, args.out, half=args.half, which=args.which))
        return 0


class Pack:
    """Write a compact copy of a run that the harness resumes from (fp32 weights, the optimizer's
    moments in bfloat16, logs, config without the machine's paths): small enough to commit, so
    training goes on across sessions and machines. Resume: rerun the training command with
    --out PACK_DIR (the data directories are matched by folder name)."""

    def add_arguments(self, p) -> None:
        p.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory (its checkpoints/last.pt)")
        p.add_argument("--out", required=True, metavar="DIR", help="the packed run directory to write")
        p.add_argument("--no-optimizer", action="store_true",
                       help="leave out the optimizer's moments (half the size; the run resumes with fresh ones)")

    def run(self, args) -> int:
        from faceflow.engine.checkpoint import pack_run

        path = pack_run(args.run_dir, args.out, optimizer=not args.no_optimizer)
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0


class MeshRegLandmarks:
    """Fit 3DMeshReg from mediapipe's dense landmarks (the weights kind 'meshreg_landmarks', shipped
    since issue 14): mediapipe's 478 points on each registered image -> the 2,713-vertex mesh by a
    rank-K linear map solved in closed form. Data: synthetic sets (exact meshes) and annotated clips
    (the annotation's fits); both images of every --stride-th pair. Writes FILE.pt atomically with
    the validation errors (mean vertex distance, template pixels) in its meta."""

    def add_arguments(self, p) -> None:
        from faceflow.engine.dff_options import LandmarkMeshRegConfig
        from faceflow.runtime.flags import add_dataclass_arguments

        add_dataclass_arguments(p, LandmarkMeshRegConfig, required=("data",))

    def run(self, args) -> int:
        from faceflow.engine.dff_options import LandmarkMeshRegConfig
        from faceflow.engine.landmark_meshreg import run
        from faceflow.runtime.flags import dataclass_from_args

        cfg = dataclass_from_args(LandmarkMeshRegConfig, args)
        meta = run(cfg, command=getattr(args, "command_line", None))
        print(json.dumps({"out": cfg.out, "fit_images": meta["fit_images"], "metrics": meta["metrics"],
                          "seconds": meta["seconds"]}))
        return 0


MESHREG = TrainTask("meshreg", add_meshreg_arguments, """Train 3DMeshReg (DeepFaceFlow Sec. 4.1): image ->
2,713-vertex face mesh, loss eq. (4); each pair contributes its two images. Rerun the same command
to resume; torchrun --nproc_per_node N trains with DistributedDataParallel.""")
DFFNET = TrainTask("dffnet", add_dffnet_arguments, """Train DFFNet (DeepFaceFlow Sec. 4.2): (I1, I2, PNCC of
I1) -> 3D flow, loss eq. (5). Rerun the same command to resume; torchrun --nproc_per_node N trains
with DistributedDataParallel.""")
MESHREG_LANDMARKS = MeshRegLandmarks()
EXPORT = Export()
PACK = Pack()
