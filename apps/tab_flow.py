"""The app's first tab, **3D face flow** (:mod:`apps.gradio_app`).

Two images (or two frames of an uploaded video, previewed as they are chosen) -> DeepFaceFlow's
3D and 2D flow pictures with their legends and colour scale, PNCC, the mesh overlay and the warped
mesh of Fig. 1, with ``flow3d.npy``, ``mesh.obj``, ``mesh_warped.obj`` and a zip of every output
to download (:mod:`faceflow.outputs.pair`); or a whole uploaded video -> ``flow.mp4`` and
``summary.csv`` (:mod:`faceflow.outputs.video`), with a progress bar. Examples: a pair rendered by
the project's own demo (always there) and, when the shared media are present, two frames and an
excerpt of a real clip (:mod:`apps.examples`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from apps.app_state import TAB_NAMES, AppConfig, AppContext, check_video, fail, gradio_module, job_dir, user_errors

__all__ = ["FLOW_OUTPUTS", "FLOW_FILES", "VIDEO_OUTPUTS", "estimate_flow", "preview_frames", "video_flow_job",
           "flow_tab", "EXPLAIN"]

FLOW_OUTPUTS = ("flow3d.png", "flow2d.png", "pncc.png", "mesh_overlay.png", "mesh_warped.png")
FLOW_FILES = ("flow3d.npy", "mesh.obj", "mesh_warped.obj", "outputs.zip")
VIDEO_OUTPUTS = ("flow.mp4", "summary.csv", "arrays.zip")
MAX_IMAGE_SIDE = 8192
MAX_VIDEO_FRAMES = 900
EXPLAIN = ("**Reading the pictures.** 2D flow: the hue is the direction the face moves in the image (see the "
           "wheel), the colour strength its speed, white = no motion. 3D flow: the hue is the in-plane direction, "
           "the brightness the speed (black = no motion), and vivid colours move toward the camera, pale ones "
           "away from it. Every picture prints its colour scale in pixels; motion below the 'no motion' "
           "threshold is drawn as none.")


def _check_image(image, what: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or max(img.shape[:2]) > MAX_IMAGE_SIDE:
        raise fail(f"{what}: expected an RGB image of at most {MAX_IMAGE_SIDE} px per side, got {img.shape}")
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)


def _frame_number(n, k: str, num_frames: int) -> int:
    if n is None or int(n) != n or n < 0:
        raise fail(f"frame {k} must be a whole number >= 0, got {n}")
    if int(n) >= num_frames:
        raise fail(f"frame {k} is {int(n)} but the video has about {num_frames} frames (numbered from 0)")
    return int(n)


def _frames_from_video(cfg: AppConfig, video, n1, n2) -> tuple[np.ndarray, np.ndarray]:
    from faceflow import io as vio

    info = check_video(cfg, video)
    out = []
    for k, n in (("1", n1), ("2", n2)):
        n = _frame_number(n, k, info.num_frames)
        with user_errors():
            frames = list(vio.read_frames(video, start=n, max_frames=1))
        if not frames:
            raise fail(f"the video has no frame {n}")
        out.append(frames[0])
    return out[0], out[1]


def preview_frames(ctx: AppContext, video, frame1=0, frame2=8) -> tuple:
    """The two chosen frames of an uploaded video, to look at before estimating (None, None
    without a video)."""
    if not video:
        return None, None
    return _frames_from_video(ctx.config, video, frame1, frame2)


def _scale_options(max_flow, min_flow) -> tuple[float | None, float]:
    if max_flow is not None and max_flow < 0 or min_flow is not None and min_flow < 0:
        raise fail(f"the colour scale and the no-motion threshold must be >= 0 (0 = automatic), got {max_flow} "
                   f"and {min_flow}")
    return (float(max_flow) if max_flow else None), float(min_flow if min_flow is not None else 0.1)


def _zip(job: Path, names, out_name: str) -> Path:
    path = job / out_name
    with zipfile.ZipFile(job / f".{out_name}.partial", "w", zipfile.ZIP_DEFLATED) as z:
        for n in names:
            if (job / n).is_file():
                z.write(job / n, n)
    (job / f".{out_name}.partial").replace(path)
    return path


def estimate_flow(ctx: AppContext, image1, image2, video=None, frame1=0, frame2=8, max_flow=0.0, min_flow=0.1,
                  force=False, progress=None) -> tuple:
    """The flow tab: 3D flow from image1 (H, W, 3) to image2, or between two frames of a video
    when the two images are not both given. Returns paths of :data:`FLOW_OUTPUTS` (pictures) and
    :data:`FLOW_FILES` (downloads), a Markdown summary, and the colour codings of the head-motion
    and expression flows (paths; None unless the weights decompose the flow). ``max_flow`` 0:
    automatic colour scale; ``force``: skip the check that image 2 shows image 1's face nearby."""
    from faceflow import io as vio
    from faceflow.outputs.pair import write_outputs
    from faceflow.render.overlay import draw_surface_grid

    step = progress or (lambda *a, **k: None)
    scale, threshold = _scale_options(max_flow, min_flow)
    if image1 is not None and image2 is not None:
        img1, img2 = _check_image(image1, "image 1"), _check_image(image2, "image 2")
        what = "the two images"
    elif video:
        step(0.05, desc="reading the two frames")
        img1, img2 = _frames_from_video(ctx.config, video, frame1, frame2)
        what = f"frames {int(frame1)} and {int(frame2)} of the video"
    else:
        raise fail("give two images, or a video and two frame numbers")
    with job_dir(ctx) as job, user_errors():
        step(0.2, desc="loading DeepFaceFlow")
        ff = ctx.face_flow()
        step(0.4, desc="landmarks, 3DMeshReg, PNCC and DFFNet")
        with ctx._lock:  # one estimate at a time on the shared detector
            res = ff.estimate(img1, img2, check=not force)
        step(0.8, desc="writing the results")
        write_outputs(res, job, {"input": what, "forced": bool(force)}, weights=ff.weights_files, device=ff.device,
                      max_flow=scale, min_flow=threshold)
        vio.write_image(job / "mesh_overlay.png", draw_surface_grid(img1, res.mesh_image, res.triangles))
        _zip(job, sorted(p.name for p in job.iterdir() if not p.name.startswith(".")), "outputs.zip")
    man = json.loads((job / "manifest.json").read_text())
    mag = np.linalg.norm(res.flow[res.mask], axis=-1) if res.mask.any() else np.zeros(1)
    summary = (f"3D flow from {what}: {int(res.mask_image.sum())} face pixels of image 1 "
               f"({img1.shape[1]}x{img1.shape[0]}); median |F| {np.median(mag):.2f} px, 95th percentile "
               f"{np.percentile(mag, 95):.2f} px (in the 224x224 registered frame). Colour scale 0 .. "
               f"{man['colour_scale_px']:g} px, no motion below {man['no_motion_below_px']:g} px"
               + (f"; the faces' landmarks moved {res.shift:.2f} inter-ocular distances" if res.shift is not None
                  else "; pair check skipped") + ".\n\n" + EXPLAIN +
               "\n\n`flow3d.npy` is (H, W, 3) float32 pixels (dx right, dy down, dz depth) on image 1's grid, 0 "
               "off the face; `mesh.obj` the 3DMeshReg mesh of image 1 in its pixels, `mesh_warped.obj` that mesh "
               "moved by the flow; `outputs.zip` every file of this result (with `manifest.json`).")
    parts = tuple(str(job / f"{n}3d.png") if res.head_flow is not None else None
                  for n in ("head_flow", "expression_flow"))
    if res.head_flow is not None:
        summary += (" The weights decompose the flow: the rigid head motion and the expression flow "
                    "(shown below, on the scale of the whole flow) sum to it.")
    return tuple(str(job / name) for name in FLOW_OUTPUTS + FLOW_FILES) + (summary,) + parts


def video_flow_job(ctx: AppContext, video, gap=1, max_frames=150, max_flow=0.0, min_flow=0.1, progress=None) -> tuple:
    """The whole-video mode: the flow of every pair (t, t + gap) of the first ``max_frames``
    frames (at most :data:`MAX_VIDEO_FRAMES`) of an uploaded video. Returns paths of
    :data:`VIDEO_OUTPUTS` (``flow.mp4``, ``summary.csv``, a zip of the arrays) and a summary."""
    from faceflow.outputs.config import VideoFlowConfig
    from faceflow.outputs.video import video_flow

    step = progress or (lambda *a, **k: None)
    info = check_video(ctx.config, video)
    if max_frames is None or int(max_frames) != max_frames or not 2 <= max_frames <= MAX_VIDEO_FRAMES:
        raise fail(f"frames must be a whole number from 2 to {MAX_VIDEO_FRAMES}, got {max_frames}")
    if gap is None or int(gap) != gap or not 1 <= gap < max_frames:
        raise fail(f"the gap must be a whole number from 1 to frames - 1, got {gap}")
    scale, threshold = _scale_options(max_flow, min_flow)
    with user_errors():
        cfg = VideoFlowConfig(gap=int(gap), max_frames=int(max_frames), max_flow=scale, min_flow=threshold)
    with job_dir(ctx) as job, user_errors():
        step(0.02, desc="loading DeepFaceFlow")
        ff = ctx.face_flow()
        with ctx._lock:  # the detector and networks are shared with the pair mode
            m = video_flow(ff, video, job, cfg, say=lambda s: step(None, desc=s))
        _zip(job, [f"{a}.npy" for a in ("flow3d", "mask", "head_flow3d", "transforms", "pairs", "landmarks")]
             + ["manifest.json", "summary.csv"], "arrays.zip")
    s = m["summary"]
    text = (f"{s['pairs']} pairs (t, t + {cfg.gap}) of the first {m['frames_read']} frames "
            f"({info.width}x{info.height}, {info.fps:g} fps): {s['pairs_with_face']} with a face, status "
            f"{s['status']}; mean |F| {s.get('mean_px_clip_mean', float('nan')):.2f} px per pair (image pixels). "
            f"The video shows frame | 3D flow | 2D flow on one colour scale, 0 .. {m['colour_scale_px']:g} px, "
            f"for the whole clip. `summary.csv`: one row per pair; `arrays.zip`: the flows as .npy arrays "
            f"(224x224 registered frame of each pair's first frame; see the README).\n\n" + EXPLAIN)
    return tuple(str(job / n) for n in VIDEO_OUTPUTS) + (text,)


def flow_tab(ctx: AppContext, jobs: dict, examples: dict | None = None) -> None:
    """The 3D face flow tab (made inside the app's ``gr.Tabs``): inputs, examples, outputs and the
    ``estimate_flow``, ``preview_frames`` and ``video_flow`` events; ``jobs``: the shared queue
    slot of the long jobs; ``examples``: from :func:`apps.examples.make_examples`."""
    gr = gradio_module()
    examples = examples or {}

    def flow_fn(img1, img2, video, n1, n2, max_flow, min_flow, force, progress=gr.Progress()):
        return estimate_flow(ctx, img1, img2, video, n1, n2, max_flow, min_flow, force, progress=progress)

    def video_fn(video, gap, max_frames, max_flow, min_flow, progress=gr.Progress(track_tqdm=True)):
        return video_flow_job(ctx, video, gap, max_frames, max_flow, min_flow, progress=progress)

    def preview_fn(video, n1, n2):
        return preview_frames(ctx, video, n1, n2)

    with gr.Tab(TAB_NAMES[0], id="flow"):
        gr.Markdown("Two images of the same face (image 1 defines the grid of the flow), or a video and "
                    "two frame numbers (used when the two images are not both given), or a whole video.")
        with gr.Row():
            img1 = gr.Image(type="numpy", label="Image 1 (I1)", sources=["upload", "clipboard"])
            img2 = gr.Image(type="numpy", label="Image 2 (I2)", sources=["upload", "clipboard"])
        if examples.get("pairs"):
            gr.Examples(examples["pairs"], [img1, img2], label="Example pairs (click one, then Estimate)")
        with gr.Accordion("... or a video: two of its frames, or the whole clip", open=False):
            video = gr.Video(label="Video", sources=["upload"])
            if examples.get("videos"):
                gr.Examples(examples["videos"], [video], label="Example video")
            with gr.Row():
                n1 = gr.Number(0, label="Frame 1", precision=0, minimum=0)
                n2 = gr.Number(8, label="Frame 2", precision=0, minimum=0)
            with gr.Row():
                p1 = gr.Image(label="Frame 1 (preview)", interactive=False, height=200, format="png")
                p2 = gr.Image(label="Frame 2 (preview)", interactive=False, height=200, format="png")
            with gr.Row():
                vgap = gr.Number(1, label="Whole video: gap (pairs t, t + gap)", precision=0, minimum=1)
                vframes = gr.Number(150, label=f"Whole video: frames (at most {MAX_VIDEO_FRAMES})", precision=0)
                vgo = gr.Button("Flow of the whole video")
        with gr.Row():
            max_flow = gr.Number(0, label="Colour scale in px (0 = automatic)", minimum=0)
            min_flow = gr.Number(0.1, label="No motion below (px)", minimum=0)
            force = gr.Checkbox(False, label="Proceed even if image 2's face is far from image 1's")
        go = gr.Button("Estimate the 3D flow", variant="primary")
        summary = gr.Markdown()
        with gr.Row():
            o3d = gr.Image(label="3D flow (with legend and scale)", interactive=False)
            o2d = gr.Image(label="2D flow (with legend and scale)", interactive=False)
        with gr.Row():
            opn = gr.Image(label="PNCC", interactive=False)
            oov = gr.Image(label="Mesh on I1 (grid on the visible surface)", interactive=False)
        owarp = gr.Image(label="Fig. 1: I1 with its mesh | I2 with the mesh moved by the flow | 3D flow",
                         interactive=False)
        with gr.Row():
            files = [gr.File(label=label, interactive=False) for label in
                     ("flow3d.npy (H, W, 3)", "mesh.obj", "mesh_warped.obj", "all outputs (.zip)")]
        with gr.Accordion("Decomposed flow (weights trained with --decompose)", open=False), gr.Row():
            ohead = gr.Image(label="Rigid head motion", interactive=False)
            oexp = gr.Image(label="Expression", interactive=False)
        with gr.Accordion("Whole-video result", open=False):
            vout = gr.Video(label="flow.mp4: frame | 3D flow | 2D flow", interactive=False)
            with gr.Row():
                vcsv = gr.File(label="summary.csv", interactive=False)
                vzip = gr.File(label="arrays (.zip)", interactive=False)
            vsummary = gr.Markdown()
        go.click(flow_fn, [img1, img2, video, n1, n2, max_flow, min_flow, force],
                 [o3d, o2d, opn, oov, owarp, *files, summary, ohead, oexp], api_name="estimate_flow", **jobs)
        video.change(preview_fn, [video, n1, n2], [p1, p2], api_name="preview_frames")
        for trigger in (n1.change, n2.change):
            trigger(preview_fn, [video, n1, n2], [p1, p2], api_name=False)
        vgo.click(video_fn, [video, vgap, vframes, max_flow, min_flow], [vout, vcsv, vzip, vsummary],
                  api_name="video_flow",
                  **jobs)
