"""Benchmarks that print JSON: ``python -m faceflow.bench render|fit --json``.

fit: for each video (default: every tier-A clip in ``$FACEFLOW_MEDIA/videos``), landmarks
(mediapipe tracking + smoothing) and the morphable-model fit as ``annotate`` runs them; reports
the landmark reprojection error of the fitted model (median and 95th percentile over frames of
the per-frame mean, in pixels and as a fraction of the inter-ocular distance), flagged frames
(error above 8% IOD), identity plausibility and throughput in frames per second (target: at
least 10 for landmarks + fitting). With ``--overlays DIR`` it saves the fitted mesh wireframe
drawn on a few frames of every clip.

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


def bench_fit(videos, max_frames=None, overlays=None, n_overlays: int = 4, dense: bool = True) -> dict:
    import numpy as np

    from . import io as vio
    from .annotate import fit_landmarks, track_landmarks
    from .fitting import reprojection_summary
    from .morphable import MorphableModel

    model = MorphableModel.load("skin")
    rows = []
    for path in videos:
        info = vio.probe(path)
        n = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
        t0 = time.perf_counter()
        _, track = track_landmarks(path, max_frames, total=n)
        t1 = time.perf_counter()
        keep, fit, _ = fit_landmarks(model, track.lmk68, track.dense, track.segment_ids(), dense)
        t2 = time.perf_counter()
        rep = reprojection_summary(fit)
        row = {"video": str(path), "frames": len(track), "kept": int(len(keep)), "segments": len(track.segments),
               **{k: round(v, 4) for k, v in rep.items()}, "flagged_frames": int((fit.relative_error > 0.08).sum()),
               "id_norm2": round(fit.stats["id_norm2"], 1), "plausible": bool(fit.stats["plausible"]),
               "track_s": round(t1 - t0, 2), "fit_s": round(t2 - t1, 2),
               "landmarks_and_fit_fps": round(len(track) / (t2 - t0), 2),
               "yaw_range_deg": [round(float(fit.angles[:, 1].min()), 1), round(float(fit.angles[:, 1].max()), 1)]}
        if overlays:
            row["overlays"] = _overlays(model, fit, keep, path, overlays, n_overlays)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {"benchmark": "fit", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "results": rows}


def _overlays(model, fit, keep, path, out_dir, n: int) -> list[str]:
    """Mesh wireframe (meshreg subset) over ``n`` frames of the clip -> PNG paths."""
    from pathlib import Path

    import numpy as np

    from . import io as vio
    from .render.overlay import draw_wireframe

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sub = model.subset("meshreg")
    names = []
    for i in np.unique(np.linspace(0, len(keep) - 1, n).round().astype(int)):
        frame = next(iter(vio.read_frames(path, start=int(keep[i]), max_frames=1)))
        with torch.no_grad():
            v = fit.image_vertices(model, np.array([i]), sub.indices)[0].numpy()
        name = out / f"{Path(path).stem}_{int(keep[i]):05d}.png"
        vio.write_image(name, draw_wireframe(frame, v, sub.triangles.numpy()))
        names.append(str(name))
    return names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m faceflow.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["render", "fit"], help="which benchmark to run")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--repeat", type=int, default=10, help="timed repetitions per case; the median is reported")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 256], help="square image sizes")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
    p.add_argument("--videos", nargs="+", default=None, help="fit: videos (default: the tier-A clips)")
    p.add_argument("--max-frames", type=int, default=None, help="fit: only the first N frames of each video")
    p.add_argument("--overlays", default=None, help="fit: save mesh overlays into this directory")
    args = p.parse_args(argv)
    if args.what == "fit":
        from .assets import media_dir

        videos = args.videos or sorted(str(v) for v in (media_dir() / "videos").glob("*.mp4"))
        res = bench_fit(videos, args.max_frames, args.overlays)
        print(json.dumps(res, indent=2))
        return 0
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
