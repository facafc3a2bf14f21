"""Benchmarks that print JSON: ``python -m faceflow.bench render --json``.

render: milliseconds per frame to rasterise the ICT skin mesh (11,248 vertices, 22,288
triangles) posed with a slight yaw, at 224x224 and 256x256, batch 1 and 16, with and without
back-face culling, plus the cost of turning the fragments into a PNCC image. The target on a
2-core CPU is at most 20 ms per 256x256 frame at batch 1.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time

import torch


def _timeit(fn, repeat: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in milliseconds after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_render(sizes=(224, 256), batches=(1, 16), repeat: int = 10, device: str = "cpu") -> dict:
    from .camera import frame_face
    from .morphable import MorphableModel
    from .render import pncc, rasterize

    dev = torch.device(device)
    model = MorphableModel.load("skin", device=dev)
    S = model.shape()
    centre = S[0, model.lmk68].mean(0, keepdim=True)
    rows = []
    for size in sizes:
        for batch in batches:
            angles = torch.tensor([[0.0, math.radians(15), 0.0]], device=dev).expand(batch, 3)
            cam = frame_face(centre.expand(batch, 3), 22.0, (size, size), angles, fill=0.8)
            V = cam.project(S.expand(batch, -1, -1)).contiguous()
            for cull in (False, True):
                frags = rasterize(V, model.triangles, (size, size), cull_backfaces=cull)
                ms = _timeit(lambda: rasterize(V, model.triangles, (size, size), cull_backfaces=cull), repeat, dev)
                ms_pncc = _timeit(lambda: pncc(V, model.triangles, (size, size), frags=frags), repeat, dev)
                rows.append({"size": size, "batch": batch, "cull_backfaces": cull,
                             "raster_ms_per_frame": round(ms / batch, 3),
                             "pncc_from_fragments_ms_per_frame": round(ms_pncc / batch, 3),
                             "coverage": round(float(frags.mask.float().mean()), 4)})
    return {"benchmark": "render", "mesh": {"vertices": model.num_vertices, "triangles": int(model.triangles.shape[0])},
            "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "repeat": repeat, "results": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m faceflow.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["render"], help="which benchmark to run")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--repeat", type=int, default=10, help="timed repetitions per case; the median is reported")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 256], help="square image sizes")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
    args = p.parse_args(argv)
    res = bench_render(tuple(args.sizes), tuple(args.batches), args.repeat, args.device)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for r in res["results"]:
            print(f"{r['size']}x{r['size']} batch {r['batch']:>2} cull={r['cull_backfaces']!s:5}: "
                  f"raster {r['raster_ms_per_frame']:7.2f} ms/frame, PNCC {r['pncc_from_fragments_ms_per_frame']:6.2f} ms/frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
