"""Command-line entry point: ``python -m faceflow COMMAND ...``."""

from __future__ import annotations

import argparse
import sys

from .errors import run_cli


class _RawDefaults(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's layout and show the default of every option that takes a value."""

    def _get_help_string(self, action):
        if action.nargs == 0:  # on/off flags: their help says what they change
            return action.help
        return super()._get_help_string(action)


def _command(sub, name: str, module, help: str, formatter=_RawDefaults) -> argparse.ArgumentParser:
    """A sub-command whose options come from ``module.add_arguments`` and which runs ``module.run``."""
    c = sub.add_parser(name, help=help, description=module.__doc__, formatter_class=formatter)
    module.add_arguments(c)
    c.set_defaults(func=module.run)
    return c


def build_parser() -> argparse.ArgumentParser:
    from . import annotate, estimate, render_demo
    from . import train as train_cmd
    from .data import pseudo, synthetic

    p = argparse.ArgumentParser(prog="python -m faceflow", description="3D facial flow toolkit.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "render", render_demo, "render a morphable-model face in two poses: shaded, PNCC, NMFC, 3D flow, "
             "meshes", argparse.ArgumentDefaultsHelpFormatter)
    _command(sub, "annotate", annotate, "turn a talking-head video into a 3D-flow / reenactment dataset")
    _command(sub, "flow", estimate, "3D facial flow between two face images (DeepFaceFlow), with pictures")
    d = sub.add_parser("data", help="build DeepFaceFlow training / evaluation data (synthetic pairs, real pseudo-GT)",
                       description="Build the flow datasets: 'synth' renders synthetic pairs with exact 3D flow, "
                                   "'real' annotates every clip of the identity split (pseudo ground truth).")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="KIND")
    _command(dsub, "synth", synthetic, "synthetic face pairs with exact 3D flow and head-only flow")
    _command(dsub, "real", pseudo, "annotate every clip of the identity splits (pseudo ground truth)")
    _command(sub, "train", train_cmd, "train 3DMeshReg / DFFNet (resumable, DDP) or export a run as a weights file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
