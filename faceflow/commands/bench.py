"""Benchmarks that print JSON: ``faceflow bench render|fit|flow --json`` (also ``python -m
faceflow.commands.bench ...``).

flow: the DeepFaceFlow pipeline per stage, in milliseconds per pair at batch 1 and 16:
landmarks (mediapipe on the original image), registration (the warp of both images to the
224 template), 3DMeshReg, rasterisation + PNCC, OpenCV DIS (weights trained with
``init='dis'`` take its 2D flow as an input; 0 otherwise), DFFNet, and end to end (registration to flow,
plus the landmarks). It uses the shipped weights (``--weights DIR`` for others); with
``--random`` it times randomly initialised networks of the light configuration (ResNet-18,
DFFNet width 0.25) instead. Paper reference: 17 ms per pair on a V100-class GPU; our CPU
target: at most 150 ms per pair (batch 1, light backbone) on a 2-core CPU. Last, the pipeline
at batch 1 again while another process keeps one core busy (``busy_neighbour``: quiet and busy
milliseconds and their ratio, target at most 2x; see :mod:`faceflow.runtime.threads`).

fit: for each video (default: every tier-A clip in ``$FACEFLOW_MEDIA/videos``), landmarks
(``--detector``: mediapipe, or dlib, Head2Head++'s; tracking + smoothing) and the morphable-model
fit as ``annotate`` runs them; reports the raw landmarks' jitter (median acceleration, in
inter-ocular distances), milliseconds per frame of tracking,
the landmark reprojection error of the fitted model (median and 95th percentile over frames of
the per-frame mean, in pixels and as a fraction of the inter-ocular distance), flagged frames
(error above 8% IOD), identity plausibility and throughput in frames per second (target: at
least 10 for landmarks + fitting). With ``--overlays DIR`` it saves the fitted mesh wireframe
drawn on a few frames of every clip.

video-flow: the whole-video flow (``faceflow flow VIDEO``) end to end on real clips, default a
512x512 and a 1080p clip of the shared media: pairs per second for tracking + flows + summary +
flow.mp4, and the seconds of each stage (tracking; flows split into decoding and registering the
frames, the networks, writing the arrays; the video). Target: at least 8 pairs/s at 512x512 on a
2-core CPU with the shipped models.

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
from typing import TYPE_CHECKING

from faceflow.cli import Command, Group, dispatch, program_name

if TYPE_CHECKING:  # torch is imported where used, so --help does not load it
    import torch



def _timeit(fn, repeat: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` in milliseconds after one warm-up call."""
    import torch

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
    import torch

    from faceflow.geometry.camera import frame_face
    from faceflow.geometry.morphable import MorphableModel
    from faceflow.render import pncc, rasterize
    from faceflow.runtime.provenance import provenance

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
            "cpu": platform.processor() or platform.machine(), "repeat": repeat, "results": rows,
            "provenance": provenance(weights={"morphable_model": model.path}, device=dev)}


def landmark_jitter(lmk68) -> float:
    """Median over frames of the mean landmark acceleration |x(t+1) - 2 x(t) + x(t-1)| of a raw
    track (T, 68, 2), in inter-ocular distances (NaN frames skipped): the detector's frame-to-frame
    noise, which the smoothing spline has to remove (a moving head adds little at 25-30 fps)."""
    import numpy as np

    x = np.asarray(lmk68, np.float64)
    acc = np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean(-1)
    iod = np.linalg.norm(x[1:-1, 36:42].mean(1) - x[1:-1, 42:48].mean(1), axis=-1)
    ok = np.isfinite(acc) & np.isfinite(iod) & (iod > 0)
    return float(np.median(acc[ok] / iod[ok])) if ok.any() else float("nan")


def bench_fit(videos, max_frames=None, overlays=None, n_overlays: int = 4, dense: bool = True,
              detector: str = "mediapipe") -> dict:
    from pathlib import Path

    import torch

    from faceflow import io as vio
    from faceflow.annotate.pipeline import fit_landmarks, track_landmarks
    from faceflow.face.fitting import reprojection_summary
    from faceflow.geometry.morphable import MorphableModel
    from faceflow.runtime.provenance import file_record, provenance

    model = MorphableModel.load("skin")
    rows = []
    for path in videos:
        info = vio.probe(path)
        n = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
        t0 = time.perf_counter()
        raw, track = track_landmarks(path, max_frames, detector=detector, total=n)
        t1 = time.perf_counter()
        keep, fit, _ = fit_landmarks(model, track.lmk68, track.dense, track.segment_ids(), dense)
        t2 = time.perf_counter()
        rep = reprojection_summary(fit)
        row = {"video": Path(path).name, "video_file": file_record(path), "detector": detector,
               "dense": bool(dense and track.dense is not None), "frames": len(track),
               "jitter_iod": round(landmark_jitter(raw.lmk68), 5),
               "track_ms_per_frame": round(1000 * (t1 - t0) / len(track), 1),
               "kept": int(len(keep)), "segments": len(track.segments),
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
            "cpu": platform.processor() or platform.machine(), "results": rows,
            "provenance": provenance(weights={"morphable_model": model.path}, device="cpu")}


def _overlays(model, fit, keep, path, out_dir, n: int) -> list[str]:
    """Mesh wireframe (meshreg subset) over ``n`` frames of the clip -> PNG paths."""
    from pathlib import Path

    import numpy as np
    import torch

    from faceflow import io as vio
    from faceflow.render.overlay import draw_surface_grid

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sub = model.subset("meshreg")
    names = []
    for i in np.unique(np.linspace(0, len(keep) - 1, n).round().astype(int)):
        frame = next(iter(vio.read_frames(path, start=int(keep[i]), max_frames=1)))
        with torch.no_grad():
            v = fit.image_vertices(model, np.array([i]), sub.indices)[0].numpy()
        name = out / f"{Path(path).stem}_{int(keep[i]):05d}.png"
        vio.write_image(name, draw_surface_grid(frame, v, sub.triangles.numpy()))
        names.append(name.name)  # in out_dir
    return names


def bench_flow(batches=(1, 16), repeat: int = 5, device: str = "cpu", weights=None, random: bool = False,
               image=None, busy: bool = True) -> dict:
    import numpy as np
    import torch

    from faceflow import io as vio
    from faceflow.estimate import FaceFlow
    from faceflow.face.landmarks import MediapipeDetector, detect_image
    from faceflow.face.registration import register_landmarks, warp_image
    from faceflow.ops.opticalflow import dis_flow
    from faceflow.render.pncc import pncc as render_pncc
    from faceflow.runtime.provenance import portable_path, provenance

    dev = torch.device(device)
    if random:
        from faceflow.geometry.morphable import MorphableModel
        from faceflow.nets import DFFNet, MeshReg

        tris = MorphableModel.load().subset("meshreg").triangles.cpu().numpy()
        ff = FaceFlow(MeshReg(int(tris.max()) + 1, backbone="resnet18"), DFFNet(width=0.25), tris, device=dev)
    else:
        ff = FaceFlow.from_pretrained(weights, device=dev)
    if image is None:
        from faceflow.runtime.assets import media_dir

        frames = list(vio.read_frames(media_dir() / "videos" / "EDTalk_uncrop_Obama.mp4", max_frames=2))
    else:
        frames = [vio.read_image(image)] * 2
    with MediapipeDetector(static_image_mode=True) as det:
        t0 = time.perf_counter()
        lmk = detect_image(frames[0], det).lmk68
        for _ in range(repeat):
            detect_image(frames[0], det)
        landmarks_ms = (time.perf_counter() - t0) * 1000 / (repeat + 1)
    T = register_landmarks(lmk)
    S = ff.size
    rows = []
    for batch in batches:
        regs = {}

        def register():
            regs["r1"] = np.stack([warp_image(frames[0], T, S, border="border") for _ in range(batch)])
            regs["r2"] = np.stack([warp_image(frames[1], T, S, border="border") for _ in range(batch)])

        to_t = lambda r: torch.from_numpy(r).permute(0, 3, 1, 2).float().div(255).to(dev)
        reg_ms = _timeit(register, repeat, dev)
        i1, i2 = to_t(regs["r1"]), to_t(regs["r2"])
        with torch.no_grad():
            mesh = ff.meshreg(i1)
            code, _ = render_pncc(mesh, ff.triangles, (S, S), cull_backfaces=True)
            p = code.permute(0, 3, 1, 2).contiguous()
            mesh_ms = _timeit(lambda: ff.meshreg(i1), repeat, dev)
            pncc_ms = _timeit(lambda: render_pncc(mesh, ff.triangles, (S, S), cull_backfaces=True), repeat, dev)
            init = ff.init_inputs(i1, i2)  # DIS's flow for weights trained with init='dis': its own stage
            dis_ms = _timeit(lambda: dis_flow(i1, i2), repeat, dev) if init else 0.0
            dff_ms = _timeit(lambda: ff.dffnet(i1, i2, p, *init), repeat, dev)
            net_ms = _timeit(lambda: ff.estimate_registered(i1, i2), repeat, dev)
        rows.append({"batch": batch, "registration_ms": round(reg_ms / batch, 2),
                     "meshreg_ms": round(mesh_ms / batch, 2), "raster_pncc_ms": round(pncc_ms / batch, 2),
                     "dis_ms": round(dis_ms / batch, 2), "dffnet_ms": round(dff_ms / batch, 2),
                     "end_to_end_ms": round((reg_ms + net_ms) / batch, 2),
                     "end_to_end_with_landmarks_ms": round((reg_ms + net_ms) / batch + landmarks_ms, 2)})
    from faceflow.nets import count_parameters

    contention = busy_neighbour_row(ff, frames, T, repeat, dev) if busy else None
    return {"benchmark": "flow", "device": str(dev), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "repeat": repeat,
            "weights": "random (light configuration)" if random else portable_path(ff.info.get("meshreg", "")),
            "meshreg_parameters": count_parameters(ff.meshreg), "dffnet_parameters": count_parameters(ff.dffnet),
            "landmarks_ms": round(landmarks_ms, 2), "reference_paper_gpu_ms": 17.0, "cpu_target_ms": 150.0,
            "results": rows, "busy_neighbour": contention,
            "provenance": provenance(weights=ff.weights_files, device=dev)}


def busy_neighbour_row(ff, frames, T, repeat: int, dev) -> dict:
    """The flow pipeline at batch 1 (registration + 3DMeshReg + PNCC + DFFNet), timed on a quiet
    machine and then with one core kept busy by another process, in the same invocation: the
    slowdown is their ratio (target: at most 2x with one of two cores busy). OpenMP's wait policy
    decides it (:mod:`faceflow.runtime.threads`): spinning threads fight the neighbour for the core."""
    import os

    import numpy as np
    import torch

    from faceflow.face.registration import warp_image
    from faceflow.runtime.threads import busy_neighbour

    def pipeline():
        r1 = warp_image(frames[0], T, ff.size, border="border")
        r2 = warp_image(frames[1], T, ff.size, border="border")
        to_t = lambda r: torch.from_numpy(np.ascontiguousarray(r)).permute(2, 0, 1)[None].float().div(255).to(dev)
        with torch.no_grad():
            ff.estimate_registered(to_t(r1), to_t(r2))

    quiet = _timeit(pipeline, repeat, dev)
    with busy_neighbour():
        busy = _timeit(pipeline, repeat, dev)
    return {"quiet_ms": round(quiet, 2), "busy_ms": round(busy, 2), "slowdown": round(busy / quiet, 2),
            "target_slowdown": 2.0, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY") or "(library default)",
            "torch_threads": torch.get_num_threads(), "cores": os.cpu_count()}


def bench_video_flow(videos, frames: int = 121, batch_size: int = 16, device: str = "cpu", weights=None,
                     video: bool = True) -> dict:
    """The whole-video flow of the first ``frames`` frames of each video, timed per stage."""
    import tempfile
    from pathlib import Path

    import torch

    from faceflow import io as vio
    from faceflow.estimate import FaceFlow
    from faceflow.outputs.config import VideoFlowConfig
    from faceflow.outputs.video import video_flow
    from faceflow.runtime.provenance import provenance

    ff = FaceFlow.from_pretrained(weights, device=device)
    rows = []
    for path in videos:
        info = vio.probe(path)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            m = video_flow(ff, path, Path(tmp) / "run", VideoFlowConfig(max_frames=frames, batch_size=batch_size,
                                                                        video=video), say=lambda s: None)
            total = time.perf_counter() - t0
            flows = json.loads((Path(tmp) / "run" / "state.json").read_text())["stages"]["flows"]
        pairs = m["summary"]["pairs"]
        rows.append({"video": Path(path).name, "size": f"{info.width}x{info.height}", "pairs": pairs,
                     "pairs_per_s": round(pairs / total, 2), "seconds": round(total, 2),
                     "stage_seconds": m["stage_seconds"], "flows_split_seconds": flows.get("split", {})})
    return {"benchmark": "video-flow", "device": str(ff.device), "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "batch_size": batch_size, "frames": frames,
            "target_pairs_per_s_512": 8.0, "results": rows, "provenance": provenance(weights=ff.weights_files,
                                                                                     device=ff.device)}


def _device(name: str) -> str:
    from faceflow.nets.modules import resolve_device

    return str(resolve_device(name))


def _common(p: argparse.ArgumentParser, repeat: int) -> None:
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--repeat", type=int, default=repeat, help="timed repetitions per case; the median is reported")
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA when available), cpu, cuda")


class FlowBench:
    """The DeepFaceFlow pipeline per stage, in milliseconds per pair at batch 1 and 16: landmarks,
    registration, 3DMeshReg, rasterisation + PNCC, DFFNet, end to end; then the pipeline at batch 1
    again with one core kept busy by another process, as a slowdown ratio (target: at most 2x)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _common(p, 5)
        p.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
        p.add_argument("--weights", default=None, help="directory with meshreg.pt and dffnet.pt (default: shipped)")
        p.add_argument("--random", action="store_true", help="time randomly initialised light networks")
        p.add_argument("--image", default=None, help="an image to time on (default: a frame of the Obama clip)")
        p.add_argument("--no-busy", dest="busy", action="store_false",
                       help="skip the row that times the pipeline again with a busy neighbour process")

    def run(self, args) -> int:
        res = bench_flow(tuple(args.batches), args.repeat, _device(args.device), args.weights, args.random,
                         args.image, busy=args.busy)
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        for r in res["results"]:
            print(f"batch {r['batch']:>2}: " + ", ".join(f"{k} {v}" for k, v in r.items() if k != "batch"))
        if res["busy_neighbour"]:
            b = res["busy_neighbour"]
            print(f"busy neighbour: {b['quiet_ms']} ms quiet, {b['busy_ms']} ms with one core busy: "
                  f"{b['slowdown']}x (OMP_WAIT_POLICY {b['omp_wait_policy']})")
        return 0


class FitBench:
    """Landmarks + morphable-model fit as annotate runs them, per video (default: every tier-A
    clip): reprojection error (median / p95, px and % of the inter-ocular distance), flagged
    frames, identity plausibility, frames per second (target: at least 10)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--videos", nargs="+", default=None, help="videos (default: the tier-A clips)")
        p.add_argument("--max-frames", type=int, default=None, help="only the first N frames of each video")
        p.add_argument("--overlays", default=None, help="save mesh overlays into this directory")
        p.add_argument("--detector", default="mediapipe", choices=["mediapipe", "fan", "dlib"],
                       help="landmark backend (dlib: Head2Head++'s 68-point predictor; no dense points)")
        p.add_argument("--no-dense", dest="dense", action="store_false",
                       help="fit the 68 landmarks only (as with dlib), without mediapipe's dense points")
        p.add_argument("--json", action="store_true", help="accepted for symmetry: the result is always JSON")

    def run(self, args) -> int:
        from faceflow.runtime.assets import media_dir

        videos = args.videos or sorted(str(v) for v in (media_dir() / "videos").glob("*.mp4"))
        print(json.dumps(bench_fit(videos, args.max_frames, args.overlays, dense=args.dense, detector=args.detector),
                         indent=2))
        return 0


class RenderBench:
    """Milliseconds per frame to rasterise the ICT skin mesh at 224 and 256 px, batch 1 and 16,
    with and without back-face culling, and the PNCC from the fragments (target: at most 20 ms
    per 256x256 frame at batch 1 on a 2-core CPU)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _common(p, 10)
        p.add_argument("--sizes", type=int, nargs="+", default=[224, 256], help="square image sizes")
        p.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")

    def run(self, args) -> int:
        res = bench_render(tuple(args.sizes), tuple(args.batches), args.repeat, _device(args.device))
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        for r in res["results"]:
            print(f"{r['size']}x{r['size']} batch {r['batch']:>2} cull={r['cull_backfaces']!s:5}: "
                  f"raster {r['raster_ms_per_frame']:7.2f} ms/frame, "
                  f"PNCC {r['pncc_from_fragments_ms_per_frame']:6.2f} ms/frame")
        return 0


class VideoFlowBench:
    """The whole-video flow end to end on real clips (default: a 512x512 and a 1080p clip of the
    shared media): pairs per second and where the time goes (target: 8 pairs/s at 512x512)."""

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print only the JSON result")
        p.add_argument("--device", default="auto", help="torch device: auto (CUDA when available), cpu, cuda")
        p.add_argument("--videos", nargs="+", default=None,
                       help="videos (default: videos/LivePortrait_d10.mp4, 512x512, and "
                            "videos/LatentSync_demo1_video.mp4, 1080x1920, of the shared media)")
        p.add_argument("--frames", type=int, default=121, help="frames read from each video (pairs: one fewer)")
        p.add_argument("--batch-size", type=int, default=16, help="pairs per network batch (the command's default)")
        p.add_argument("--weights", default=None, help="directory with meshreg.pt and dffnet.pt (default: shipped)")
        p.add_argument("--no-video", dest="video", action="store_false", help="time without writing flow.mp4")

    def run(self, args) -> int:
        from faceflow.runtime.assets import media_dir

        videos = args.videos or [str(media_dir() / "videos" / n)
                                 for n in ("LivePortrait_d10.mp4", "LatentSync_demo1_video.mp4")]
        res = bench_video_flow(videos, args.frames, args.batch_size, _device(args.device), args.weights, args.video)
        if args.json:
            print(json.dumps(res, indent=2))
            return 0
        for r in res["results"]:
            print(f"{r['video']} ({r['size']}): {r['pairs']} pairs, {r['pairs_per_s']} pairs/s; stages "
                  f"{r['stage_seconds']}; flows {r['flows_split_seconds']}")
        return 0


FLOW, FIT, RENDER, VIDEO_FLOW = FlowBench(), FitBench(), RenderBench(), VideoFlowBench()
COMMANDS = Group("bench", "speed benchmarks as JSON: rasteriser, fitting, flow pipeline", (
    Command("render", "faceflow.commands.bench:RENDER", "rasteriser and PNCC milliseconds per frame"),
    Command("fit", "faceflow.commands.bench:FIT", "landmarks + fit accuracy and frames per second per video"),
    Command("flow", "faceflow.commands.bench:FLOW", "flow pipeline per stage, and its slowdown beside a busy process"),
    Command("video-flow", "faceflow.commands.bench:VIDEO_FLOW", "whole-video flow: pairs per second, time per stage"),
    Command("annotate-dataset", "faceflow.commands.bench_dataset:ANNOTATE_DATASET",
            "annotate-dataset with 1 and 2 Ray workers, and the estimate for 12,000 videos"),
    Command("storage", "faceflow.commands.bench_dataset:STORAGE",
            "MB per minute of the full and compact annotation forms, and a training step fed from each"),
), __doc__)


def main(argv=None) -> int:
    """``python -m faceflow.commands.bench render|fit|flow`` (also ``faceflow bench ...``)."""
    return dispatch(COMMANDS, argv, program_name("faceflow.commands.bench", argv))


if __name__ == "__main__":
    sys.exit(main())
