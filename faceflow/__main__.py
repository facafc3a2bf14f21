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


def build_parser() -> argparse.ArgumentParser:
    from . import annotate, estimate, render_demo
    from . import train as train_cmd
    from .data import pseudo, synthetic

    p = argparse.ArgumentParser(prog="python -m faceflow", description="3D facial flow toolkit.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("render", help="render a morphable-model face in two poses: shaded, PNCC, NMFC, 3D flow, meshes",
                       description=render_demo.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    render_demo.add_arguments(r)
    r.set_defaults(func=render_demo.run)
    a = sub.add_parser("annotate", help="turn a talking-head video into a 3D-flow / reenactment dataset",
                       description=annotate.__doc__, formatter_class=_RawDefaults)
    annotate.add_arguments(a)
    a.set_defaults(func=annotate.run)
    f = sub.add_parser("flow", help="3D facial flow between two face images (DeepFaceFlow), with pictures",
                       description=estimate.__doc__, formatter_class=_RawDefaults)
    estimate.add_arguments(f)
    f.set_defaults(func=estimate.run)
    d = sub.add_parser("data", help="build DeepFaceFlow training / evaluation data (synthetic pairs, real pseudo-GT)",
                       description="Build the flow datasets: 'synth' renders synthetic pairs with exact 3D flow, "
                                   "'real' annotates every clip of the identity split (pseudo ground truth).")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="KIND")
    ds = dsub.add_parser("synth", help="synthetic face pairs with exact 3D flow and head-only flow",
                         description=synthetic.__doc__, formatter_class=_RawDefaults)
    synthetic.add_arguments(ds)
    ds.set_defaults(func=synthetic.run)
    dr = dsub.add_parser("real", help="annotate every clip of the identity splits (pseudo ground truth)",
                         description=pseudo.__doc__, formatter_class=_RawDefaults)
    pseudo.add_arguments(dr)
    dr.set_defaults(func=pseudo.run)
    t = sub.add_parser("train", help="train 3DMeshReg / DFFNet (resumable, DDP) or export a run as a weights file",
                       description=train_cmd.__doc__, formatter_class=_RawDefaults)
    train_cmd.add_arguments(t)
    t.set_defaults(func=train_cmd.run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
