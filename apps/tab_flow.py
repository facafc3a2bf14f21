"""The app's first tab, **3D face flow** (:mod:`apps.gradio_app`): two images (or two frames of an
uploaded video) -> DeepFaceFlow's colour-coded 3D flow, 2D flow, PNCC, mesh overlay and the warped
mesh of Fig. 1, plus ``flow3d.npy`` (:mod:`faceflow.estimate`, the shipped weights, loaded once)."""

from __future__ import annotations

import numpy as np

from apps.app_state import TAB_NAMES, AppConfig, AppContext, check_video, fail, gradio_module, job_dir, user_errors

__all__ = ["FLOW_OUTPUTS", "estimate_flow", "flow_tab"]

FLOW_OUTPUTS = ("flow3d.png", "flow2d.png", "pncc.png", "mesh_overlay.png", "mesh_warped.png", "flow3d.npy")
MAX_IMAGE_SIDE = 8192


def _check_image(image, what: str) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or max(img.shape[:2]) > MAX_IMAGE_SIDE:
        raise fail(f"{what}: expected an RGB image of at most {MAX_IMAGE_SIDE} px per side, got {img.shape}")
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8, copy=False)



def _frames_from_video(cfg: AppConfig, video, n1, n2) -> tuple[np.ndarray, np.ndarray]:
    from faceflow import io as vio

    info = check_video(cfg, video)
    out = []
    for k, n in (("1", n1), ("2", n2)):
        if n is None or int(n) != n or n < 0:
            raise fail(f"frame {k} must be a whole number >= 0, got {n}")
        if int(n) >= info.num_frames:
            raise fail(f"frame {k} is {int(n)} but the video has about {info.num_frames} frames "
                        f"(numbered from 0)")
        with user_errors():
            frames = list(vio.read_frames(video, start=int(n), max_frames=1))
        if not frames:
            raise fail(f"the video has no frame {int(n)}")
        out.append(frames[0])
    return out[0], out[1]


def estimate_flow(ctx: AppContext, image1, image2, video=None, frame1=0, frame2=8, progress=None) -> tuple:
    """The flow tab: 3D flow from image1 (H, W, 3) to image2, or between two frames of a video
    when the two images are not both given. Returns paths of (flow3d.png, flow2d.png, pncc.png,
    mesh_overlay.png, mesh_warped.png, flow3d.npy), a Markdown summary, and the colour codings of
    the head-motion and expression flows (paths; None unless the weights decompose the flow)."""
    from faceflow import io as vio
    from faceflow.estimate import write_outputs
    from faceflow.render.overlay import draw_wireframe

    step = progress or (lambda *a, **k: None)
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
            res = ff.estimate(img1, img2)
        step(0.8, desc="writing the results")
        write_outputs(res, job, {"input": what}, weights=ff.weights_files, device=ff.device)
        vio.write_image(job / "mesh_overlay.png", draw_wireframe(img1, res.mesh_image, res.triangles))
    mag = np.linalg.norm(res.flow[res.mask], axis=-1) if res.mask.any() else np.zeros(1)
    summary = (f"3D flow from {what}: {int(res.mask_image.sum())} face pixels of image 1 "
               f"({img1.shape[1]}x{img1.shape[0]}); median |F| {np.median(mag):.2f} px, 95th percentile "
               f"{np.percentile(mag, 95):.2f} px (in the 224x224 registered frame). `flow3d.npy` is "
               f"(H, W, 3) float32 pixels (dx right, dy down, dz depth) on image 1's grid, 0 off the face.")
    parts = tuple(str(job / f"{n}3d.png") if res.head_flow is not None else None
                  for n in ("head_flow", "expression_flow"))
    if res.head_flow is not None:
        summary += (" The weights decompose the flow: the rigid head motion and the expression flow "
                    "(shown below, on the scale of the whole flow) sum to it.")
    return tuple(str(job / name) for name in FLOW_OUTPUTS) + (summary,) + parts


def flow_tab(ctx: AppContext, jobs: dict) -> None:
    """The 3D face flow tab (made inside the app's ``gr.Tabs``): inputs, outputs and the
    ``estimate_flow`` event; ``jobs``: the shared queue slot of the long jobs."""
    gr = gradio_module()

    def flow_fn(img1, img2, video, n1, n2, progress=gr.Progress()):
        return estimate_flow(ctx, img1, img2, video, n1, n2, progress=progress)

    with gr.Tab(TAB_NAMES[0], id="flow"):
        gr.Markdown("Two images of the same face (image 1 defines the grid of the flow), or a video and "
                    "two frame numbers (used when the two images are not both given).")
        with gr.Row():
            img1 = gr.Image(type="numpy", label="Image 1 (I1)", sources=["upload", "clipboard"])
            img2 = gr.Image(type="numpy", label="Image 2 (I2)", sources=["upload", "clipboard"])
        with gr.Accordion("... or two frames of a video", open=False):
            video = gr.Video(label="Video", sources=["upload"])
            with gr.Row():
                n1 = gr.Number(0, label="Frame 1", precision=0, minimum=0)
                n2 = gr.Number(8, label="Frame 2", precision=0, minimum=0)
        go = gr.Button("Estimate the 3D flow", variant="primary")
        summary = gr.Markdown()
        with gr.Row():
            o3d = gr.Image(label="3D flow (colour-coded)", interactive=False)
            o2d = gr.Image(label="2D flow", interactive=False)
            opn = gr.Image(label="PNCC", interactive=False)
            oov = gr.Image(label="Mesh overlay on I1", interactive=False)
        owarp = gr.Image(label="Fig. 1: I1 with its mesh | I2 with the mesh moved by the flow | 3D flow",
                         interactive=False)
        onpy = gr.File(label="flow3d.npy (H, W, 3)", interactive=False)
        with gr.Accordion("Decomposed flow (weights trained with --decompose)", open=False), gr.Row():
            ohead = gr.Image(label="Rigid head motion", interactive=False)
            oexp = gr.Image(label="Expression", interactive=False)
        go.click(flow_fn, [img1, img2, video, n1, n2], [o3d, o2d, opn, oov, owarp, onpy, summary, ohead, oexp],
                 api_name="estimate_flow", **jobs)
