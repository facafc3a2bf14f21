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
    from . import annotate, render_demo

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
