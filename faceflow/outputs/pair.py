"""One pair's outputs (``faceflow flow IMG1 IMG2 --out DIR``) and reading its inputs.

:func:`write_outputs` writes the flow arrays (on I1's pixel grid and in the registered frame), the
meshes and the pictures of :func:`write_flow_figures` (each titled, with the legend of its colour
code and its scale in pixels, :mod:`faceflow.render.figures`), then ``manifest.json`` last.
:func:`load_input` reads ``PATH`` or ``VIDEO:N`` and refuses a video named without ``:N``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from faceflow import io as vio
from faceflow.errors import MediaError
from faceflow.estimate import FlowResult, warp_mesh_by_flow
from faceflow.io.mesh import write_obj
from faceflow.outputs.config import MIN_FLOW_PX
from faceflow.render.figures import caption, flow_figure, hstack, legend_strip, vstack
from faceflow.render.flowcolor import flow3d_to_rgb, nice_scale, shared_max_magnitude
from faceflow.render.overlay import draw_surface_grid
from faceflow.runtime.provenance import file_record, portable_json, provenance

__all__ = ["write_outputs", "write_flow_figures", "load_input", "split_frame_spec", "is_video"]


def write_flow_figures(res: FlowResult, out: Path, moved: np.ndarray, *, max_flow: float | None = None,
                       min_flow: float = MIN_FLOW_PX) -> float:
    """The pictures of one result, each titled, with its legend and colour scale: ``flow3d.png``
    and ``flow2d.png`` (on I1's grid), ``head_flow3d.png`` / ``expression_flow3d.png`` for a
    decomposed flow, and ``mesh_warped.png`` (Fig. 1: registered I1 with a grid on its mesh |
    registered I2 with that grid moved by the flow | the 3D flow). One scale for all of them:
    ``max_flow`` pixels, default the flow's 99th percentile magnitude rounded up to 1, 2, 2.5 or 5
    x 10^k; motion below ``min_flow`` shows as none. Returns the scale."""
    scale = float(max_flow) if max_flow else nice_scale(shared_max_magnitude([res.flow_image], [res.mask_image]))
    figure = lambda f, kind, title: flow_figure(f, res.mask_image, kind, scale, min_flow, title=title)
    vio.write_image(out / "flow3d.png", figure(res.flow_image, "3d", "3D flow, image 1 -> image 2 (on image 1)"))
    vio.write_image(out / "flow2d.png", figure(res.flow_image, "2d", "2D flow (x, y of the 3D flow)"))
    if res.head_flow_image is not None:
        for name, title in (("head_flow", "head-motion part of the 3D flow"),
                            ("expression_flow", "expression part of the 3D flow")):
            vio.write_image(out / f"{name}3d.png", figure(getattr(res, f"{name}_image"), "3d", title))
    band = 18
    panels = [caption(draw_surface_grid(res.registered1, res.mesh, res.triangles), "image 1 + 3DMeshReg mesh", band),
              caption(draw_surface_grid(res.registered2, moved, res.triangles, coords=res.mesh,
                                        colour=(255, 200, 40)), "image 2 + mesh moved by the flow", band),
              # the registered flow is in template pixels (image pixels x s): the same colours as the image pictures
              caption(flow3d_to_rgb(res.flow, res.mask, scale * res.transform.scale, min_flow * res.transform.scale),
                      "3D flow (registered)", band)]
    row = hstack(panels)
    legend = legend_strip(row.shape[1], scale, min_flow, ("3d",), note="Scale in image 1's pixels.")
    vio.write_image(out / "mesh_warped.png", vstack([row, legend]))
    return scale


def write_outputs(res: FlowResult, out: str | Path, extra: dict | None = None, *,
                  weights: dict | None = None, device=None, inputs: dict | None = None,
                  max_flow: float | None = None, min_flow: float = MIN_FLOW_PX) -> Path:
    """Write one result: ``flow3d.npy`` (H, W, 3) and ``mask.npy`` on I1's grid, the registered
    ``flow3d_registered.npy`` / ``mask_registered.npy``, for decomposed weights
    ``head_flow3d.npy`` / ``expression_flow3d.npy``, ``pncc.png``, ``mesh.obj`` (I1 pixels),
    ``mesh_warped.obj``, the pictures of :func:`write_flow_figures` (colour scale ``max_flow``,
    ``min_flow``), then ``manifest.json``.

    The manifest holds ``extra`` (absolute paths made portable), ``inputs`` ({name: image or
    video file} -> name, size and sha256 under ``"input_files"``) and ``"provenance"``
    (:func:`faceflow.runtime.provenance.provenance` with the ``weights`` files {role: path}, by default
    those named in ``extra["weights"]`` (:attr:`FaceFlow.info`), and ``device``)."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    vio.save_npy(out / "flow3d.npy", res.flow_image.astype(np.float32))
    vio.save_npy(out / "mask.npy", res.mask_image)
    vio.save_npy(out / "flow3d_registered.npy", res.flow.astype(np.float32))
    vio.save_npy(out / "mask_registered.npy", res.mask)
    vio.write_image(out / "pncc.png", np.clip(res.pncc * 255 + 0.5, 0, 255).astype(np.uint8))
    if res.head_flow_image is not None:
        for name in ("head_flow", "expression_flow"):
            vio.save_npy(out / f"{name}3d.npy", getattr(res, f"{name}_image"))
    moved, visible = warp_mesh_by_flow(res.mesh, res.flow, res.mask, res.triangles)
    write_obj(out / "mesh.obj", res.mesh_image, res.triangles)
    write_obj(out / "mesh_warped.obj", np.asarray(res.transform.inverse().apply_3d(moved), np.float32),
              res.triangles)
    scale = write_flow_figures(res, out, moved, max_flow=max_flow, min_flow=min_flow)
    mag = np.linalg.norm(res.flow[res.mask], axis=-1) if res.mask.any() else np.zeros(1)
    manifest = {"files": sorted(p.name for p in out.iterdir() if p.name != "manifest.json"),
                "face_pixels_registered": int(res.mask.sum()), "face_pixels_image": int(res.mask_image.sum()),
                "median_flow_px": float(np.median(mag)), "p95_flow_px": float(np.percentile(mag, 95)),
                "visible_vertices": int(visible.sum()), "transform": res.transform.to_dict(),
                "colour_scale_px": scale, "no_motion_below_px": float(min_flow),
                "landmark_shift_iod": None if res.shift is None else round(float(res.shift), 4),
                **(extra or {})}
    if weights is None:  # the files FaceFlow.info names
        info = (extra or {}).get("weights")
        weights = {k: info[k] for k in ("meshreg", "dffnet")
                   if isinstance(info, dict) and isinstance(info.get(k), (str, Path)) and Path(info[k]).is_file()}
    if inputs:
        manifest["input_files"] = {}
        for k, spec in inputs.items():
            path, _, frame = str(spec).rpartition(":")  # VIDEO:N (see load_input)
            if Path(spec).is_file():
                manifest["input_files"][k] = file_record(spec, out)
            elif path and frame.isdigit() and Path(path).is_file():
                manifest["input_files"][k] = {**file_record(path, out), "frame": int(frame)}
    manifest["provenance"] = provenance(weights=weights, device=device, base=out)
    vio.save_json(out / "manifest.json", portable_json(manifest, out))
    return out


def is_video(path: str | Path) -> bool:
    """Whether a file is a video (more than one frame, by its header) rather than a still image."""
    try:
        return not vio.probe(path, allow_still=True).still
    except MediaError:
        return False


def split_frame_spec(spec: str) -> tuple[str, int | None]:
    """``'VIDEO:N'`` -> (VIDEO, N); a path that exists, or has no ``:``, -> (path, None).
    Raises :class:`MediaError` for a frame part that is not a frame number >= 0."""
    spec = str(spec)
    path, sep, frame = spec.rpartition(":")
    if not sep or Path(spec).exists() or not path or "/" in frame or "\\" in frame:
        return spec, None
    if not frame.isdigit():
        raise MediaError(f"{spec}: the frame of VIDEO:N must be a frame number counted from 0, got {frame!r}")
    return path, int(frame)


def load_input(spec: str) -> np.ndarray:
    """An RGB image from ``PATH`` (a still) or ``VIDEO:N`` (frame N, counted from 0, of a video).
    A video named without ``:N`` is refused with a message suggesting ``VIDEO:N`` or the
    whole-video flow."""
    path, frame = split_frame_spec(spec)
    if frame is None:
        if Path(path).is_file() and is_video(path):
            raise MediaError(f"{path} is a video: name one frame as {path}:N (N counted from 0), or run the "
                             f"whole-video flow: faceflow flow {path} --out DIR")
        return vio.read_image(path)
    if not Path(path).is_file():
        raise MediaError(f"{path}: video file not found (from {spec})")
    frames = list(vio.read_frames(path, start=frame, max_frames=1))
    if not frames:
        n = vio.probe(path, exact=True).num_frames
        raise MediaError(f"{path} has no frame {frame}: it has {n} frames (0 .. {max(n - 1, 0)})")
    return frames[0]
