"""Reenactment speed: ``python -m reenact.bench [--json] [--device cpu|cuda] [--size 256]``.

Frames per second of the renderer at inference (frame by frame, as ``reenact run`` drives it:
:class:`vid2vid.collector.StreamGenerator`) for the ``paper`` and ``tiny`` generator presets,
and of the conditioning step (NMFC + eye sketch rendering of one frame from fitted parameters,
:func:`reenact.conditioning.render_conditioning`) when the morphable model is available.
``end_to_end``: both per frame, as ``reenact run`` drives a frame (conditioning, then the
generator); target for the tiny preset on a 2-core CPU: at least 10 fps. Anchor: Head2Head++
reports 18 fps end to end on an RTX 2080 Ti. Weights are random (speed does not depend on them).
Prints JSON with ``--json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where used, so --help does not load it
    import torch


def _sync(dev: torch.device) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bench_generator(preset: str, size: int, frames: int, dev: torch.device, amp: bool = False) -> dict:
    import torch

    from faceflow.nets.modules import count_parameters
    from vid2vid.collector import StreamGenerator
    from vid2vid.generator import Generator, presets

    cfg = presets()[preset]
    G = Generator(cfg).to(dev).eval()
    stream = StreamGenerator(G, cfg.n_frames)
    x = torch.rand(1, 6, size, size, device=dev) * 2 - 1
    ctx = torch.autocast(dev.type, dtype=torch.float16) if amp and dev.type == "cuda" else torch.autocast(
        dev.type, enabled=False)
    with ctx:
        for _ in range(3):  # warm-up
            stream(x)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(frames):
            stream(x)
        _sync(dev)
    dt = (time.perf_counter() - t0) / frames
    return {"preset": preset, "size": size, "params_M": round(count_parameters(G) / 1e6, 2),
            "ms_per_frame": round(dt * 1e3, 2), "fps": round(1.0 / dt, 1), "amp_fp16": bool(amp and dev.type == "cuda")}


def bench_conditioning(size: int, frames: int) -> dict:
    from faceflow.errors import AssetNotFoundError

    try:
        from faceflow.geometry.morphable import MorphableModel
        model = MorphableModel.load("skin")
    except AssetNotFoundError as e:
        return {"skipped": str(e)}
    from faceflow.geometry.camera import degrees, euler_to_rotation
    from reenact.conditioning import render_conditioning

    T = frames
    R = euler_to_rotation(degrees(0.0, 10.0, 0.0)).expand(T, 3, 3).numpy()
    f = np.full(T, size / 20.0, np.float32)
    t = np.tile(np.array([size / 2, size / 2, 0.0], np.float32), (T, 1))
    exp = np.zeros((T, model.num_exp), np.float32)
    ident = np.zeros(model.num_id, np.float32)
    lmk = np.tile(np.linspace(size * 0.3, size * 0.7, 68 * 2, dtype=np.float32).reshape(1, 68, 2), (T, 1, 1))
    pupils = lmk[:, [37, 43]].copy()
    t0 = time.perf_counter()
    render_conditioning(model, ident, exp, R, t, f, lmk, pupils, size, progress=False)
    dt = (time.perf_counter() - t0) / T
    return {"size": size, "ms_per_frame": round(dt * 1e3, 2), "fps": round(1.0 / dt, 1)}


def bench_provenance(dev) -> dict:
    """Command, versions, git commit and device of a benchmark run (:mod:`faceflow.runtime.provenance`);
    the weights are random, so none are recorded."""
    from faceflow.runtime.provenance import provenance

    return provenance(device=dev)


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--size", type=int, default=256, help="frame size")
    p.add_argument("--frames", type=int, default=20, help="timed frames per measurement")
    p.add_argument("--presets", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"],
                   help="generator presets to time")
    p.add_argument("--amp", action="store_true", help="also time fp16 autocast on CUDA")


def run(args) -> int:
    import torch

    from faceflow.nets.modules import resolve_device

    dev = resolve_device(args.device)  # an unknown or absent device: a message, not a traceback
    res = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
           "threads": torch.get_num_threads(), "torch": torch.__version__, "generator": [],
           "conditioning": bench_conditioning(args.size, min(args.frames, 10))}
    for pr in args.presets:
        res["generator"].append(bench_generator(pr, args.size, args.frames, dev))
        if args.amp and dev.type == "cuda":
            res["generator"].append(bench_generator(pr, args.size, args.frames, dev, amp=True))
    cond = res["conditioning"].get("ms_per_frame")
    # end to end, as `reenact run` drives a frame: render its conditioning, then generate it
    res["end_to_end"] = [{"preset": g["preset"], "amp_fp16": g["amp_fp16"],
                          "ms_per_frame": round(g["ms_per_frame"] + cond, 2),
                          "fps": round(1000.0 / (g["ms_per_frame"] + cond), 1)}
                         for g in res["generator"]] if cond is not None else []
    res["provenance"] = bench_provenance(dev)
    print(json.dumps(res, indent=None if args.json else 1))
    return 0


def main(argv=None) -> int:
    """``python -m reenact.bench`` (also ``faceflow bench reenact``)."""
    from faceflow.cli import program_name, run_module

    return run_module(sys.modules[__name__], argv, program_name("reenact.bench", argv))


if __name__ == "__main__":
    sys.exit(main())
