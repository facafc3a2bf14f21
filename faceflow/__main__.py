"""``python -m faceflow COMMAND ...``: the DeepFaceFlow commands (render, annotate, flow, data,
train, bench). The installed ``faceflow`` command (:mod:`apps.cli`) has these and every other
job of the toolkit (reenact, evaluate, app)."""

from __future__ import annotations

import sys

from faceflow.cli import Command, Group, dispatch, program_name
from faceflow.commands.bench import COMMANDS as BENCH

COMMANDS = Group("faceflow", "3D facial flow toolkit (DeepFaceFlow).", (
    Command("render", "faceflow.commands.render",
            "render a morphable-model face in two poses: shaded, PNCC, NMFC, 3D flow, meshes"),
    Command("annotate", "faceflow.commands.annotate", "turn a talking-head video into a 3D-flow / reenactment dataset"),
    Command("annotate-dataset", "faceflow.commands.annotate_dataset",
            "annotate a folder of videos on Ray (all cores or a cluster), compact, resumable, fault-tolerant"),
    Command("annotate-convert", "faceflow.commands.annotate_convert",
            "rewrite an annotation in the other storage form (full memmaps <-> compact JPEG + fits)"),
    Command("flow", "faceflow.commands.flow", "3D facial flow between two face images (DeepFaceFlow), with pictures"),
    Group("data", "build DeepFaceFlow training / evaluation data (synthetic pairs, real pseudo-GT)", (
        Command("synth", "faceflow.commands.data_synth", "synthetic face pairs with exact 3D flow and head-only flow"),
        Command("real", "faceflow.commands.data_real",
                "annotate every clip of the identity splits (pseudo ground truth)"),
    ), "Build the flow datasets: 'synth' renders synthetic pairs with exact 3D flow, 'real' annotates every "
       "clip of the identity split (pseudo ground truth)."),
    Group("train", "train 3DMeshReg / DFFNet (resumable, DDP) or export a run as a weights file", (
        Command("meshreg", "faceflow.commands.train:MESHREG", "train 3DMeshReg: image -> face mesh, eq. (4)"),
        Command("meshreg-landmarks", "faceflow.commands.train:MESHREG_LANDMARKS",
                "fit 3DMeshReg from mediapipe's dense landmarks (closed form, minutes on a CPU)"),
        Command("dffnet", "faceflow.commands.train:DFFNET", "train DFFNet: (I1, I2, PNCC) -> 3D flow, eq. (5)"),
        Command("export", "faceflow.commands.train:EXPORT",
                "write a run's best (or last) checkpoint as a weights file"),
        Command("pack", "faceflow.commands.train:PACK",
                "a compact copy of a run (fp32 weights, bf16 optimizer moments) to commit and resume from"),
    ), "Train with the one harness (faceflow.engine.trainer): rerun the same command to resume; torchrun for DDP."),
    BENCH,
))


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, argv, program_name("faceflow", argv))


if __name__ == "__main__":
    sys.exit(main())
