"""The pictures of the whole-video flow (:mod:`faceflow.outputs.video`): ``flow.mp4``, one frame per
pair (t, t + gap) at the clip's frame rate with its audio, each panel titled:

    frame t -> t + gap | 3D flow | 2D flow            (a decomposed network adds a second row:
    ---------------------------------------------      head motion | expression | the legend)
    legend: colour wheels, the clip's one colour scale in pixels, what the colours mean

The flows are drawn on the frame's pixel grid (registered flow mapped back by
:func:`faceflow.face.registration.flow_to_image`) in image pixels, so the scale is the clip's.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from faceflow import io as vio
from faceflow.face.registration import flow_to_image
from faceflow.geometry.similarity import Similarity
from faceflow.outputs.config import VideoFlowConfig
from faceflow.render.figures import caption, hstack, legend_strip, text_panel, vstack
from faceflow.render.flowcolor import flow2d_to_rgb, flow3d_to_rgb

__all__ = ["render_video", "display_flow", "pair_frame"]

NOTES = {"no_face": "no tracked face in both frames: no flow", "fast": "fast motion: flow unreliable"}


def display_flow(flow: np.ndarray, mask: np.ndarray, transform: Similarity, size: tuple[int, int],
                 zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """A registered flow (224, 224, C) and mask on a display grid ``size`` (h, w) that is the
    frame scaled by ``zoom``: returns the flow in the frame's (image) pixels and its mask."""
    to_display = transform.compose(Similarity.from_params(1.0 / zoom, 0.0))  # display -> image -> template
    f, m = flow_to_image(np.asarray(flow, np.float32), to_display, size, mask=np.array(mask, bool), return_mask=True)
    return np.asarray(f, np.float32) / zoom, np.asarray(m, bool)


def pair_frame(frame: np.ndarray, row: dict, flows: dict[str, np.ndarray] | None, mask: np.ndarray | None,
               scale: float, min_flow: float, legend: np.ndarray, band: int) -> np.ndarray:
    """One frame of the video. frame (h, w, 3) uint8 at display size; flows {'flow', 'head'?}
    (h, w, 3) image pixels (None when the pair has no flow); legend: the strip under the panels."""
    h, w = frame.shape[:2]
    title = f"frame {row['frame1']} -> {row['frame2']}"
    title += f"  ({NOTES[row['status']]})" if row["status"] in NOTES else ""
    blank3d = np.zeros((h, w, 3), np.uint8)
    if flows is None:
        code3, code2, parts = blank3d, np.full((h, w, 3), 255, np.uint8), [blank3d, blank3d]
    else:
        f = flows["flow"]
        code3 = flow3d_to_rgb(f, mask, scale, min_flow)
        code2 = flow2d_to_rgb(f, mask, scale, min_flow)
        parts = [flow3d_to_rgb(flows["head"], mask, scale, min_flow),
                 flow3d_to_rgb(f - flows["head"], mask, scale, min_flow)] if "head" in flows else []
    top = hstack([caption(frame, title, band), caption(code3, "3D flow", band), caption(code2, "2D flow", band)])
    if "head" not in (flows or {}) and not row.get("decomposed"):
        return vstack([top, legend])
    second = hstack([caption(parts[0], "head-motion part (3D code)", band),
                     caption(parts[1], "expression part (3D code)", band), legend])
    return vstack([top, second])


def render_video(out: Path, video: Path, rows: list[dict], cfg: VideoFlowConfig, scale: float, fps: float,
                 audio: bool = True) -> str:
    """Write ``out/flow.mp4`` from the finished arrays in ``out`` (see the module docstring)."""
    from tqdm import tqdm

    info = vio.probe(video)
    H, W = info.height, info.width
    zoom = cfg.display_height / H
    h, w = int(round(H * zoom / 2) * 2), int(round(W * zoom / 2) * 2)
    flow = np.load(out / "flow3d.npy", mmap_mode="r")
    mask = np.load(out / "mask.npy", mmap_mode="r")
    tr = np.load(out / "transforms.npy", mmap_mode="r")
    head = np.load(out / "head_flow3d.npy", mmap_mode="r") if (out / "head_flow3d.npy").is_file() else None
    band = max(16, min(26, h // 14))
    if head is None:
        legend = legend_strip(3 * w + 4, scale, cfg.min_flow, ("3d", "2d"), height=max(64, min(110, h // 4)))
    else:  # the legend fills the third cell of the second row
        icons = legend_strip(w, scale, cfg.min_flow, ("3d", "2d"), height=max(56, min(96, h // 4)))
        legend = vstack([text_panel(["legend"], w, line_height=band - 2), icons])
        legend = cv2.resize(legend, (w, h + band), interpolation=cv2.INTER_AREA) if legend.shape[0] > h + band \
            else vstack([legend, np.full((h + band - legend.shape[0], w, 3), 255, np.uint8)])
    def draw(row: dict, frame: np.ndarray) -> np.ndarray:
        p = row["pair"]
        flows, m = None, None
        if row["status"] != "no_face":
            T = Similarity(np.asarray(tr[p]))
            f, m = display_flow(flow[p], mask[p], T, (h, w), zoom)
            flows = {"flow": f}
            if head is not None:
                flows["head"] = display_flow(head[p], mask[p], T, (h, w), zoom)[0]
        return pair_frame(frame, {**row, "decomposed": head is not None}, flows, m, scale, cfg.min_flow, legend, band)

    frames = vio.read_frames(video, start=cfg.start, max_frames=len(rows), size=(w, h))
    with vio.VideoWriter(out / "flow.mp4", fps, audio_from=video if audio else None, preset="superfast", crf=20,
                         audio_start=cfg.start / fps) as writer, ThreadPoolExecutor(2) as pool:
        pending: deque = deque()  # frames drawn two at a time (numpy and torch release the GIL), written in order
        for row, frame in tqdm(zip(rows, frames), total=len(rows), unit="frame", desc="flow.mp4", dynamic_ncols=True):
            pending.append(pool.submit(draw, row, frame))
            if len(pending) > 3:
                writer.write(pending.popleft().result())
        while pending:
            writer.write(pending.popleft().result())
    return str(out / "flow.mp4")
