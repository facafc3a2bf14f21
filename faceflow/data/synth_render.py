"""Rendering of a synthetic pair (:mod:`faceflow.data.synthetic`): both frames' posed meshes
registered by frame 1's landmarks, albedo, background from a real frame, compositing, colour
jitter, and the ground truth (3D flow eq. (2), head-motion flow, mask, PNCC eq. (3), meshes).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from faceflow.data.synth_geometry import HeadGeometry, project_fitted
from faceflow.data.synth_sampling import PairParams, SyntheticConfig
from faceflow.data.synth_sources import Clip
from faceflow.face.registration import template_landmarks
from faceflow.geometry.camera import euler_to_rotation, frame_face, project
from faceflow.geometry.similarity import estimate_similarity
from faceflow.render import Fragments, flow_ground_truth, pncc, rasterize, shade

SIZE = 224  # the registered template (faceflow.face.registration.TEMPLATE_SIZE)
_EXTENT_CM = 22.0  # head height used to frame the unregistered render (chin to crown)

# procedural albedo of the parts a real frame rarely shows (RGB in [0, 1])
_INNER_COLOURS = {
    "mouth_socket": (0.30, 0.10, 0.10), "gums_tongue": (0.62, 0.28, 0.28), "teeth": (0.90, 0.87, 0.78),
    "eye_socket_left": (0.55, 0.32, 0.30), "eye_socket_right": (0.55, 0.32, 0.30),
}
_IRIS_DEG, _PUPIL_DEG = 34.0, 14.0  # angular radii on the eyeball, seen from its centre


def pose_meshes(geom: HeadGeometry, p: PairParams):
    """Template-space meshes (V, 3) of the pair: frame 1, frame 2 and frame 2's pose with frame
    1's expression (head motion only), plus the registration similarity (render frame -> template).

    Frame 1 is framed by :func:`faceflow.geometry.camera.frame_face` at the pose ``p.pose1``; its 68
    landmarks are aligned to :func:`~faceflow.face.registration.template_landmarks`. Depth gauge: the
    model origin is at depth 0 in both frames, as in the annotation tool's fits and
    :func:`faceflow.engine.dff_tasks.meshreg_template` (the depth translation is unobservable). Frame 2 rotates by
    ``p.rot_change`` (about axes fixed to the camera, pivot 8 cm behind the landmarks' centre),
    scales by ``1 + p.scale_change`` and moves by ``p.trans_change`` template pixels.
    """

    idc = torch.from_numpy(np.asarray(p.id, np.float32))[None]
    S = geom.shape(idc.expand(2, -1), torch.from_numpy(np.stack([p.exp1, p.exp2]).astype(np.float32)))
    centre = geom.shape(idc, torch.zeros(1, geom.exp_basis.shape[0]), geom.lmk68).mean(1)  # (1, 3)
    cam1 = frame_face(centre, _EXTENT_CM, (SIZE, SIZE), torch.tensor(np.radians(p.pose1), dtype=torch.float32)[None],
                      fill=0.8)
    # depth gauge of the whole project (annotate's cameras, meshreg_template): the model origin sits at
    # depth 0 in every frame (scaled orthography cannot observe a depth translation)
    cam1.translation[:, 2] = 0.0
    P1 = cam1.project(S[:1])[0]
    T = estimate_similarity(P1[geom.lmk68, :2].double().numpy(), template_landmarks(SIZE))
    # frame 2: rotate about a pivot behind the face, scale about it, then translate (template pixels)
    pivot = centre - torch.tensor([[0.0, 0.0, 8.0]])
    R2 = euler_to_rotation(torch.tensor(np.radians(p.rot_change), dtype=torch.float32)[None]) @ cam1.rotation
    f2 = cam1.scale * (1.0 + float(p.scale_change))
    dt = np.linalg.solve(T.linear, np.asarray(p.trans_change, np.float64))  # render-frame pixels
    piv1 = cam1.project(pivot[:, None])[:, 0]
    zero = torch.zeros(1, 3)
    t2 = piv1 + torch.tensor([[dt[0], dt[1], 0.0]], dtype=torch.float32) - project(pivot[:, None], R2, zero, f2)[:, 0]
    t2[:, 2] = 0.0  # the same depth gauge in frame 2
    P2 = project(S, R2.expand(2, 3, 3), t2.expand(2, 3), f2.expand(2))  # both expressions at frame 2's pose
    return T.apply_3d(P1), T.apply_3d(P2[1]), T.apply_3d(P2[0]), T


def albedo(geom: HeadGeometry, skin_colours: np.ndarray, p: PairParams) -> torch.Tensor:
    """Per-vertex albedo (V, 3) in [0, 1]: the bank texture on the skin vertices, procedural
    colours inside the mouth and on the eyes (sclera, iris of ``p.iris``, pupil)."""
    V = geom.num_vertices
    col = np.zeros((V, 3), np.float32)
    col[:geom.num_skin] = np.asarray(skin_colours, np.float32) / (255.0 if skin_colours.dtype == np.uint8 else 1.0)
    region = geom.region.cpu().numpy()
    for name, rgb in _INNER_COLOURS.items():
        c = np.array(rgb, np.float32) * (p.teeth if name == "teeth" else 1.0)
        col[region == geom.region_names.index(name)] = c
    ang = geom.eye_angle
    eye = np.isfinite(ang)
    a = ang[eye]
    sclera = np.array([0.86, 0.84, 0.80], np.float32) * p.teeth
    iris = np.array(p.iris, np.float32)
    limbus = np.clip((a - (_IRIS_DEG - 4.0)) / 4.0, 0, 1)[:, None]  # darker ring at the iris edge
    c = np.where((a < _IRIS_DEG)[:, None], iris * (1 - 0.5 * limbus), sclera)
    c = np.where((a < _PUPIL_DEG)[:, None], np.array([0.03, 0.03, 0.03], np.float32), c)
    col[eye] = c
    return torch.from_numpy(np.clip(col, 0, 1))


def _fill_face(geom: HeadGeometry, clip: Clip, f: int, img: np.ndarray) -> np.ndarray:
    """The frame (S, S, 3) float32 with its fitted inner face (dilated) replaced by a smooth fill
    from the surroundings (normalised convolution at a quarter of the resolution, coarse scales
    taking over where the fine ones have no support), feathered into the frame."""


    H, W = img.shape[:2]
    if clip.face_mask is not None:
        m = np.asarray(clip.face_mask[f])
    else:
        with torch.no_grad():
            S = geom.shape(torch.from_numpy(clip.id)[None], torch.from_numpy(clip.exp[f])[None],
                           geom.face_idx)
            v = project_fitted(S, clip.rotation[f], clip.translation[f], clip.scale[f])
            m = rasterize(v, geom.face_triangles, (H, W)).mask[0].numpy()
    if not m.any():
        return img
    h, w = max(8, H // 4), max(8, W // 4)
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    hole = cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0
    hole = cv2.dilate(hole.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    known = (~hole).astype(np.float32)
    if not known.any():
        return img
    fill, have = None, None
    for sigma in (h / 2, h / 6, h / 16):  # coarse to fine: fine scales override where they have support
        den = cv2.GaussianBlur(known, (0, 0), sigma)
        est = cv2.GaussianBlur(small * known[..., None], (0, 0), sigma) / np.maximum(den, 1e-6)[..., None]
        a = np.clip(den / 0.3, 0, 1)[..., None]
        fill = est if fill is None else a * est + (1 - a) * fill
        have = den if have is None else np.maximum(have, den)
    fill = np.where(have[..., None] > 1e-4, fill, small[known > 0].mean(0))
    alpha = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 1.0)
    alpha = cv2.resize(np.maximum(alpha, hole), (W, H), interpolation=cv2.INTER_LINEAR)[..., None]
    up = cv2.resize(fill.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    return (img * (1 - alpha) + up * alpha).astype(np.float32)


def background(geom: HeadGeometry, clips: list[Clip], cfg: SyntheticConfig, p: PairParams) -> np.ndarray:
    """The two backgrounds (2, 224, 224, 3) float32 in [0, 1]: a window of a real frame of the
    split, resized, optionally flipped and blurred; I2's is shifted by ``p.bg_shift`` pixels."""

    clip = clips[p.bg_clip]
    img = np.asarray(clip.crops[p.bg_frame], np.float32) / 255.0
    if cfg.bg_remove_face:
        img = _fill_face(geom, clip, p.bg_frame, img)
    x0, y0, side = p.bg_box
    m = int(cfg.bg_shift_max)
    n = SIZE + 2 * m
    win = np.ascontiguousarray(img[y0:y0 + side, x0:x0 + side])
    big = cv2.resize(win, (n, n), interpolation=cv2.INTER_AREA if side > n else cv2.INTER_LINEAR)
    if p.bg_flip:
        big = np.ascontiguousarray(big[:, ::-1])
    big = cv2.GaussianBlur(big, (0, 0), p.bg_blur)
    dx, dy = p.bg_shift
    return np.stack([big[m:m + SIZE, m:m + SIZE], big[m + dy:m + dy + SIZE, m + dx:m + dx + SIZE]])


def composite(fg: np.ndarray, cover: np.ndarray, bg: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    """Alpha-blend renders (B, H, W, 3) with coverage (B, H, W) over backgrounds, with a slightly
    softened silhouette (the render colour is extended one pixel outward)."""

    out = np.empty_like(bg)
    for b in range(len(fg)):
        m = cover[b].astype(np.float32)
        a = cv2.GaussianBlur(m, (3, 3), sigma)
        num = cv2.GaussianBlur(fg[b] * m[..., None], (3, 3), sigma)
        ext = np.where(cover[b][..., None], fg[b], num / np.maximum(a, 1e-6)[..., None])
        out[b] = ext * a[..., None] + bg[b] * (1 - a[..., None])
    return out


def _hue_matrix(turns: float) -> np.ndarray:
    """3x3 RGB matrix rotating the hue by ``turns`` (rotation of the YIQ chroma plane)."""
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = math.cos(2 * math.pi * turns), math.sin(2 * math.pi * turns)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.linalg.inv(yiq) @ rot @ yiq


def colour_jitter(img: np.ndarray, brightness: float, contrast: float, gains, hue: float,
                  mean: float | None = None) -> np.ndarray:
    """Colour jitter of images (..., 3) in [0, 1]: hue rotation, per-channel gains, contrast about
    ``mean`` (default: the images' mean luminance), brightness factor. Not clipped."""
    M = np.diag(np.asarray(gains, np.float64)) @ _hue_matrix(hue)
    x = img @ M.T.astype(img.dtype)
    if mean is None:
        mean = float((x @ np.array([0.299, 0.587, 0.114], x.dtype)).mean())
    return ((x - mean) * contrast + mean) * brightness


def render_pair(geom: HeadGeometry, skin_colours: np.ndarray, clips: list[Clip], cfg: SyntheticConfig,
                p: PairParams) -> dict[str, np.ndarray]:
    """Render pair ``p``: the stored arrays (i1, i2 (224, 224, 3) uint8; pncc (224, 224, 3),
    flow, head_flow float32; mask bool; mesh1, mesh2 (V_reg, 3) the ``'meshreg'`` vertices) plus
    ``verts`` (3, V, 3): the template-space render meshes of frame 1, frame 2 and the
    head-motion-only frame, and ``transform`` (2, 3). ``skin_colours`` (num_skin, 3): the texture
    bank entry ``p.texture``."""

    size = (SIZE, SIZE)
    with torch.no_grad():
        v1, v2, vh, T = pose_meshes(geom, p)
        V = torch.stack([v1, v2])
        frags = rasterize(V, geom.triangles, size, cull_backfaces=True)
        img, cover = shade(V, geom.triangles, size, albedo=albedo(geom, skin_colours, p),
                           to_light=tuple(float(x) for x in p.light), ambient=p.ambient, frags=frags)
        f1 = Fragments(frags.tri_id[:1], frags.bary[:1], frags.depth[:1], frags.mask[:1])
        mask = frags.mask[0] & (frags.tri_id[0] < geom.num_face_triangles)  # visible surface is inner face
        # eq. (2) of DeepFaceFlow, on I1's visible surface
        flow = flow_ground_truth(v1[None], v2[None], geom.triangles, size, frags1=f1)[0][0]
        head = flow_ground_truth(v1[None], vh[None], geom.triangles, size, frags1=f1)[0][0]
        keep = mask[..., None].to(flow.dtype)
        # eq. (3) of DeepFaceFlow, of the mesh 3DMeshReg regresses
        code = pncc(v1[None, geom.meshreg_idx], geom.meshreg_triangles, size, cull_backfaces=True)[0][0]
    comp = composite(img.numpy(), cover.numpy(), background(geom, clips, cfg, p))
    lum = float((comp[0] @ np.array([0.299, 0.587, 0.114], np.float32)).mean())
    comp = colour_jitter(comp, p.brightness, p.contrast, p.gains, p.hue, mean=lum)
    comp[1] *= 1.0 + p.pair_brightness
    if p.noise > 0:
        comp = comp + np.random.default_rng(p.noise_seed).normal(0, p.noise, comp.shape).astype(np.float32)
    ims = (np.clip(comp, 0, 1) * 255 + 0.5).astype(np.uint8)
    return {"i1": ims[0], "i2": ims[1], "pncc": code.numpy(), "mask": mask.numpy(),
            "flow": (flow * keep).numpy(), "head_flow": (head * keep).numpy(),
            "mesh1": v1[geom.meshreg_idx].numpy(), "mesh2": v2[geom.meshreg_idx].numpy(),
            "verts": torch.stack([v1, v2, vh]).numpy(), "transform": T.matrix}

