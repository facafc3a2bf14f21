"""Render a morphable-model face in two poses / expressions and write every image code the
project uses: shaded renders, PNCC (eq. (3) of DeepFaceFlow), NMFC (eq. (7.2) of Head2Head++),
the exact 3D flow between the two frames (eq. (2) of DeepFaceFlow) with its colour codings and
legend, the two meshes (.obj) and render.json (configuration, cameras, flow statistics)."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceflow.errors import FaceflowError
from faceflow.runtime.provenance import provenance

if TYPE_CHECKING:  # imported where used, so the command's --help does not load torch
    import torch

    from faceflow.geometry.camera import Camera
    from faceflow.geometry.morphable import MorphableModel


@dataclass
class FacePose:
    """Expression weights by name and head angles in degrees."""

    expression: dict[str, float] = field(default_factory=dict)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


@dataclass
class RenderConfig:
    """Everything that determines the demo's output (saved as ``render.json``)."""

    seed: int = 0
    id_scale: float = 1.0
    size: int = 256
    model: str = "skin"
    fill: float = 0.8
    first: FacePose = field(default_factory=lambda: FacePose({"mouthSmile_L": 0.3, "mouthSmile_R": 0.3},
                                                             -15.0, 0.0, 0.0))
    second: FacePose = field(default_factory=lambda: FacePose({"jawOpen": 0.6, "browInnerUp_L": 0.5,
                                                               "browInnerUp_R": 0.5}, 10.0, 6.0, 4.0))


def identity_coeffs(model: MorphableModel, seed: int, scale: float = 1.0) -> torch.Tensor:
    """A reproducible identity (1, K_id) drawn from the prior N(0, scale^2)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, model.num_id, generator=g) * scale).to(model.device)


def posed_mesh(model: MorphableModel, id_coeffs: torch.Tensor, pose: FacePose, size: int,
               fill: float) -> tuple[torch.Tensor, torch.Tensor, Camera]:
    """Model-space (1, V, 3) and image-space (1, V, 3) meshes and the camera for one pose.

    The camera frames the identity's neutral landmarks: their centre goes to the image centre
    and the head height (chin to crown of the mean, 22 cm) spans ``fill`` of the image.
    """
    import torch

    from faceflow.geometry.camera import frame_face

    S = model.shape(id_coeffs, model.expression(pose.expression))
    neutral_centre = model.shape(id_coeffs)[:, model.lmk68].mean(1)
    angles = torch.tensor([[math.radians(pose.pitch), math.radians(pose.yaw), math.radians(pose.roll)]],
                          device=model.device)
    cam = frame_face(neutral_centre, 22.0, (size, size), angles, fill=fill)
    return S, cam.project(S), cam


def as_image(img: torch.Tensor) -> np.ndarray:
    """(H, W, C) float tensor in [0, 1] -> numpy, which :func:`faceflow.io.write_image` quantises."""
    return img.detach().clamp(0, 1).cpu().numpy()


def render(cfg: RenderConfig, out: Path, model: MorphableModel | None = None) -> dict:
    """Render the demo into directory ``out``; returns a summary (also written to render.json)."""
    from faceflow import io as fio
    from faceflow.geometry.morphable import MorphableModel
    from faceflow.io.mesh import write_obj
    from faceflow.render import flow_ground_truth, nmfc, nmfc_colors, pncc, rasterize, shade
    from faceflow.render.figures import flow_figure
    from faceflow.render.flowcolor import colour_wheel, nice_scale, shared_max_magnitude

    if not 16 <= cfg.size <= 4096:
        raise FaceflowError(f"--size {cfg.size} is out of range (16..4096)")
    model = model or MorphableModel.load(cfg.model)
    for pose in (cfg.first, cfg.second):
        model.expression(pose.expression)  # validates the names before anything is written
    out.mkdir(parents=True, exist_ok=True)
    size = (cfg.size, cfg.size)
    idc = identity_coeffs(model, cfg.seed, cfg.id_scale)
    colors = nmfc_colors(model.mean, model.narrow_face_mask)
    tris = model.render_triangles
    meshes = []
    for tag, pose in (("", cfg.first), ("2", cfg.second)):
        S, V, cam = posed_mesh(model, idc, pose, cfg.size, cfg.fill)
        frags = rasterize(V, tris, size, cull_backfaces=True)
        fio.write_image(out / f"shaded{tag}.png", as_image(shade(V, tris, size, frags=frags)[0][0]))
        fio.write_image(out / f"pncc{tag}.png", as_image(pncc(V, tris, size, frags=frags)[0][0]))
        fio.write_image(out / f"nmfc{tag}.png", as_image(nmfc(V, tris, colors, size, frags=frags)[0][0]))
        write_obj(out / f"mesh{tag}.obj", S[0], tris, colors)
        meshes.append((V, frags, cam))
    (V1, frags1, cam1), (V2, _, cam2) = meshes
    flow, mask = flow_ground_truth(V1, V2, tris, size, frags1=frags1)
    flow, mask = flow[0], mask[0]
    fio.save_npy(out / "flow.npy", flow.cpu().numpy().astype(np.float32))
    fio.save_npy(out / "flow_mask.npy", mask.cpu().numpy())
    scale = nice_scale(shared_max_magnitude([flow], [mask]))
    fio.write_image(out / "flow3d.png", flow_figure(flow, mask, "3d", scale, title="exact 3D flow, frame 1 -> 2"))
    fio.write_image(out / "flow2d.png", flow_figure(flow, mask, "2d", scale, title="exact 2D flow (x, y of it)"))
    fio.write_image(out / "flow2d_wheel.png", colour_wheel(128))
    mags = flow[mask].norm(dim=-1)
    summary = {
        "config": asdict(cfg),
        "cameras": [{"angles_deg": [math.degrees(a) for a in c.angles[0].tolist()],
                     "translation_px": c.translation[0].tolist(), "scale_px_per_cm": float(c.scale[0])}
                    for c in (cam1, cam2)],
        "foreground_pixels": int(mask.sum()),
        "flow_magnitude_px": {"mean": float(mags.mean()), "max": float(mags.max())} if mags.numel() else None,
        "files": sorted({p.name for p in out.iterdir() if not p.name.startswith(".")} | {"render.json"}),
        "provenance": provenance(weights={"morphable_model": model.path}, device=model.device, base=out),
    }
    fio.save_json(out / "render.json", summary, indent=2)
    return summary

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
