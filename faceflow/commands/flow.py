"""3D facial flow between two face images, or over a whole video, with the shipped (or given)
DeepFaceFlow weights.

    faceflow flow IMG1 IMG2 --out DIR      one pair (IMG may be VIDEO:N, frame N of a video)
    faceflow flow VIDEO --out DIR          every pair (t, t + gap) of a clip

One pair writes into --out: flow3d.npy (H, W, 3) and mask.npy on the first image's pixel grid, the
same in the 224x224 registered frame, pictures with their legends and colour scale (flow3d.png,
flow2d.png, mesh_warped.png), pncc.png, the 3DMeshReg mesh (mesh.obj) and the mesh moved by the
flow (mesh_warped.obj), then manifest.json last (command, versions, the weights' sha256). Image 2
is checked: no face, or a face far from image 1's (another person, another position), is refused
(exit 2) unless --force.

A video writes the flows as memory-mappable arrays (flow3d.npy, mask.npy, transforms.npy, ...),
summary.csv (one row per pair) and flow.mp4 (frame | 3D flow | 2D flow with legends and one colour
scale, at the clip's frame rate with its audio); an interrupted run resumes when rerun.
"""

from __future__ import annotations

from pathlib import Path

from faceflow.outputs.config import MIN_FLOW_PX, VideoFlowConfig
from faceflow.runtime.flags import add_dataclass_arguments, dataclass_from_args

VIDEO_ONLY = ("gap", "start", "max_frames", "batch_size", "display_height", "video", "audio")


def add_arguments(p) -> None:
    p.description = __doc__.split("\n\n", 1)[1]
    p.add_argument("img1", help="first image (the flow lives on its pixel grid); VIDEO:N takes frame N of a video; "
                                "a video alone (no second input) gives the flow of the whole clip")
    p.add_argument("img2", nargs="?", default=None, help="second image (or VIDEO:N); leave out for a whole video")
    p.add_argument("--out", required=True, help="output directory (manifest.json is written last)")
    p.add_argument("--weights", default=None,
                   help="directory with meshreg.pt and dffnet.pt (default: the shipped weights)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--detector", default="mediapipe", choices=["mediapipe", "fan", "dlib"],
                   help="landmark backend of a pair's images (dlib: Head2Head++'s 68-point predictor)")
    p.add_argument("--force", action="store_true",
                   help="a pair: estimate the flow even when image 2's face is far from image 1's (by default "
                        "refused when the registered landmarks are more than --max-shift inter-ocular distances apart)")
    p.add_argument("--overwrite", action="store_true", help="a video: start afresh instead of resuming a run in --out")
    g = p.add_argument_group("whole video and pictures")
    add_dataclass_arguments(g, VideoFlowConfig)


def run(args) -> int:
    from faceflow.errors import FaceflowError
    from faceflow.io.files import check_out_dir
    from faceflow.nets.modules import resolve_device

    cfg = dataclass_from_args(VideoFlowConfig, args)
    resolve_device(args.device)  # a bad --device is refused before any work
    check_out_dir(args.out, create=False)  # created when there is something to write
    if args.img2 is None:
        from faceflow.outputs.pair import is_video, split_frame_spec

        path, frame = split_frame_spec(args.img1)
        if frame is None and not Path(path).is_file():
            raise FaceflowError(f"{path}: file not found")
        if frame is not None or not is_video(path):
            raise FaceflowError(f"{args.img1} is not a video: give two images (faceflow flow IMG1 IMG2 --out DIR) "
                                "or a video file for the whole-clip flow")
        return run_video(args, cfg)
    given = [f"--{k.replace('_', '-')}" for k in VIDEO_ONLY if getattr(args, k, None) is not None]
    if given:
        raise FaceflowError(f"{', '.join(given)} only apply to a whole video (faceflow flow VIDEO --out DIR)")
    return run_pair(args, cfg)


def run_pair(args, cfg: VideoFlowConfig) -> int:
    import numpy as np

    from faceflow.estimate import FaceFlow
    from faceflow.outputs.pair import load_input, write_outputs
    from faceflow.runtime.stopwatch import Stopwatch

    clock = Stopwatch()
    img1, img2 = load_input(args.img1), load_input(args.img2)
    clock.lap("inputs")
    ff = FaceFlow.from_pretrained(args.weights, device=args.device, detector=args.detector)
    clock.lap("weights")
    with ff:
        res = ff.estimate(img1, img2, check=not args.force, max_shift=cfg.max_shift)
    clock.lap("estimate")
    out = write_outputs(res, args.out, {"img1": str(args.img1), "img2": str(args.img2), "weights": ff.info,
                                        "forced": bool(args.force), "seconds": round(clock.total(), 3),
                                        "stage_seconds": clock.rounded()},
                        device=ff.device, inputs={"img1": args.img1, "img2": args.img2},
                        max_flow=cfg.max_flow, min_flow=cfg.min_flow if cfg.min_flow is not None else MIN_FLOW_PX)
    mag = np.linalg.norm(res.flow[res.mask], axis=-1)
    print(f"3D flow on {int(res.mask_image.sum())} face pixels of img1 (median |F| {np.median(mag):.2f} px "
          f"in the 224 template; landmark shift {res.shift:.2f} inter-ocular distances) -> {out}"
          if res.shift is not None else
          f"3D flow on {int(res.mask_image.sum())} face pixels of img1 (median |F| {np.median(mag):.2f} px "
          f"in the 224 template) -> {out}")
    return 0


def run_video(args, cfg: VideoFlowConfig) -> int:
    from faceflow.estimate import FaceFlow
    from faceflow.outputs.video import video_flow

    ff = FaceFlow.from_pretrained(args.weights, device=args.device, detector=args.detector)
    with ff:
        m = video_flow(ff, args.img1, args.out, cfg, overwrite=args.overwrite)
    s = m["summary"]
    secs = sum(v or 0 for v in m["stage_seconds"].values())
    print(f"{s['pairs']} pairs ({s['pairs_with_face']} with a face; {s['status']}), mean |F| "
          f"{s.get('mean_px_clip_mean', float('nan')):.2f} px, colour scale 0 .. {m['colour_scale_px']:g} px, "
          f"{secs:.1f} s -> {args.out}")
    return 0
