"""The installed ``faceflow`` command: every job of the toolkit under one name.

    faceflow render | annotate | flow | data synth|real | train meshreg|dffnet|export
    faceflow bench render|fit|flow|reenact|startup
    faceflow reenact preprocess|train|run|bench
    faceflow evaluate flow|self-reenact|cross-reenact|meshreg
    faceflow app

It composes the tables of the packages below (:data:`faceflow.__main__.COMMANDS`,
:data:`reenact.__main__.COMMANDS`) with the evaluation commands and the app; each command's
module is imported only when it is chosen (:mod:`faceflow.cli`), so ``--help`` answers at once.
The ``python -m faceflow``, ``python -m reenact``, ``python -m evaluation.flow_benchmark`` ...
forms run the same command modules.
"""

from __future__ import annotations

import sys

from faceflow.__main__ import COMMANDS as FACEFLOW
from faceflow.cli import Command, Group, dispatch, program_name
from faceflow.commands.bench import COMMANDS as FACEFLOW_BENCH
from reenact.__main__ import COMMANDS as REENACT

EVALUATE = Group("evaluate", "error tables: 3D flow (Tables 1-2), self-reenactment (Table 3), cross-reenactment, "
                 "3DMeshReg", (
    Command("flow", "evaluation.commands.flow", "3D / 2D flow AEPE of DFFNet and the baselines (Tables 1-2)"),
    Command("self-reenact", "evaluation.commands.self_reenact",
            "self-reenactment error tables per flow provider (Table 3)"),
    Command("cross-reenact", "evaluation.commands.cross_reenact",
            "cross-reenactment tables: identity (CSIM) and motion transfer (AED, ARD, gaze)"),
    Command("meshreg", "evaluation.commands.meshreg", "3DMeshReg vertex error against the template baseline"),
))
BENCH = Group("bench", "speed benchmarks as JSON", FACEFLOW_BENCH.commands + (
    Command("reenact", "reenact.bench", "renderer and conditioning frames per second"),
    Command("startup", "apps.startup_bench", "--help and flow-command wall times against their targets"),
))
APP = Command("app", "apps.gradio_app", "the local Gradio front-end (flow, reenact, prepare and train, evaluate)")

COMMANDS = Group("faceflow", "3D facial flow (DeepFaceFlow) and head reenactment (Head2Head++) toolkit.",
                 tuple(c for c in FACEFLOW.commands if c.name != "bench") + (BENCH, REENACT, EVALUATE, APP))


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, argv, program_name("apps.cli", argv))


if __name__ == "__main__":
    sys.exit(main())
