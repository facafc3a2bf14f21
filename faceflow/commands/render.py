"""Render a morphable-model face in two poses / expressions and write every image code the
project uses: shaded renders, PNCC (eq. (3) of DeepFaceFlow), NMFC (eq. (7.2) of Head2Head++),
the exact 3D flow between the two frames (eq. (2) of DeepFaceFlow) with its colour codings and
legend, the two meshes (.obj) and render.json (configuration, cameras, flow statistics)."""

from __future__ import annotations

import argparse
from pathlib import Path

from faceflow.errors import FaceflowError
from faceflow.render_demo import FacePose, RenderConfig, render


def parse_weights(items: list[str] | None) -> dict[str, float] | None:
    """['jawOpen=0.7', 'mouthSmile_L=0.4'] -> {'jawOpen': 0.7, ...}; None when not given."""
    if items is None:
        return None
    out = {}
    for it in items:
        name, sep, val = it.partition("=")
        try:
            out[name.strip()] = float(val)
        except ValueError:
            sep = ""
        if not sep:
            raise FaceflowError(f"expression weight {it!r} is not of the form NAME=VALUE (e.g. jawOpen=0.7)")
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = RenderConfig()
    p.add_argument("--out", type=Path, default=Path("outputs/render"), help="output directory")
    p.add_argument("--seed", type=int, default=d.seed, help="identity seed; the identity is drawn from N(0, 1)")
    p.add_argument("--id-scale", type=float, default=d.id_scale, help="std of the identity draw; 0 gives the mean face")
    p.add_argument("--size", type=int, default=d.size, help="square image size in pixels")
    p.add_argument("--model", choices=["skin", "full"], default=d.model,
                   help="skin: face, head and neck; full: with mouth interior, teeth and eyes")
    for tag, pose, label in (("", d.first, "first"), ("2", d.second, "second")):
        p.add_argument(f"--exp{tag}", nargs="*", metavar="NAME=W",
                       help=f"expression of the {label} frame as blendshape weights in [0, 1], e.g. jawOpen=0.7 "
                            f"(default: {' '.join(f'{k}={v}' for k, v in pose.expression.items())})")
        for ang in ("yaw", "pitch", "roll"):
            p.add_argument(f"--{ang}{tag}", type=float, default=getattr(pose, ang),
                           help=f"{ang} of the {label} frame in degrees")


def run(args: argparse.Namespace) -> int:
    d = RenderConfig()
    poses = []
    for tag, default in (("", d.first), ("2", d.second)):
        exp = parse_weights(getattr(args, f"exp{tag}"))
        poses.append(FacePose(default.expression if exp is None else exp,
                              getattr(args, f"yaw{tag}"), getattr(args, f"pitch{tag}"), getattr(args, f"roll{tag}")))
    cfg = RenderConfig(seed=args.seed, id_scale=args.id_scale, size=args.size, model=args.model,
                       first=poses[0], second=poses[1])
    summary = render(cfg, args.out)
    print(f"wrote {len(summary['files'])} files to {args.out}: {', '.join(summary['files'])}")
    if summary["flow_magnitude_px"]:
        print("3D flow magnitude (px): mean {mean:.2f}, max {max:.2f}".format(**summary["flow_magnitude_px"]))
    return 0
