"""``python -m reenact {preprocess,train,run,pack} ...`` (also ``faceflow reenact ...``).

The Head2Head++ workflow on one target person: ``preprocess`` a few minutes of the target's
video into conditioning (NMFC + eye sketches) and cached flows, ``train`` a person-specific
renderer on its first two thirds, ``run`` it in self, face, head or cycle reenactment, ``pack``
it into a small folder to ship.
"""

from __future__ import annotations

import sys

from faceflow.cli import Command, Group, dispatch, program_name

COMMANDS = Group("reenact", "person-specific head reenactment (Head2Head++): preprocess, train, run", (
    Command("preprocess", "reenact.commands.preprocess",
            "turn a target video into conditioning, mouth boxes and cached flows"),
    Command("train", "reenact.commands.train", "train a person-specific renderer (resumable; torchrun for DDP)"),
    Command("run", "reenact.commands.run", "self / face / head / cycle reenactment with a trained model -> mp4"),
    Command("pack", "reenact.commands.pack", "pack a trained model (float16, ~1 MB) to ship or share"),
), __doc__)


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, argv, program_name("reenact", argv))


if __name__ == "__main__":
    sys.exit(main())
