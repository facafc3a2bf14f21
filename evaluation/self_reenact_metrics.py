"""The metrics of the self-reenactment tables (:mod:`evaluation.self_reenact`, whose docstring
defines them): generated frames against the real ones.

- image metrics on (T, H, W, 3) frames on 0-255: :func:`apd` (also MAPD with a mask; a numpy
  wrapper over :func:`reenact.metrics.apd`, the one implementation), :func:`mouth_apd`,
  :func:`psnr`, :func:`ssim`, :func:`grid_score` (the checkerboard of transposed convolutions),
  :func:`sharpness` (fine detail against the real frames), and :func:`error_map` for the heatmaps;
- re-fit metrics between two tracked and fitted videos: :func:`compare_fits` (AED, ARD, AELD
  from :func:`expression_distance`, :func:`rotation_difference`, :func:`eye_landmark_distance`)
  and the gaze error :func:`gaze_error` (pupils in their eyes, :func:`gaze_offsets`);
- the temporal warping error :func:`warping_error` under the reference flow :func:`reference_flow`.

LPIPS is :mod:`evaluation.lpips_metric`; :func:`evaluation.self_reenact.score_frames` computes
them all for one cell.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from faceflow.face.registration import CropBox
from reenact import metrics as rm
from vid2vid.warp import warp

__all__ = ["EYE_POINTS", "check_frames", "as_number", "pixel_distance", "apd", "mouth_apd", "psnr", "ssim",
           "grid_score", "sharpness", "gaze_offsets", "gaze_error", "EYE_CORNERS",
           "error_map", "rotation_difference", "expression_distance", "eye_landmark_distance", "compare_fits",
           "warping_error", "reference_flow"]

EYE_POINTS = slice(36, 48)  # the 68-point eye landmarks (both eyes)


def check_frames(fake, real) -> tuple[np.ndarray, np.ndarray]:
    """fake, real as arrays, both (T, H, W, 3) (ValueError otherwise)."""
    fake, real = np.asarray(fake), np.asarray(real)
    if fake.shape != real.shape or fake.ndim != 4 or fake.shape[-1] != 3:
        raise ValueError(f"fake and real must both be (T, H, W, 3), got {fake.shape} and {real.shape}")
    return fake, real


def as_number(v) -> float | None:
    """float, or None for a missing value or NaN (an infinite PSNR of identical frames stays inf)."""
    return None if v is None or math.isnan(float(v)) else float(v)


# ============================================================================ image metrics

def _float64(frames: np.ndarray) -> torch.Tensor:
    """A float64 copy of ``frames`` as a tensor (a copy: the input may be a read-only memmap)."""
    return torch.from_numpy(np.array(frames, np.float64))


def pixel_distance(fake, real) -> np.ndarray:
    """(T, H, W) float64 ``||fake - real||_2`` over RGB; fake, real (T, H, W, 3) on 0-255
    (:func:`reenact.metrics.pixel_distance`)."""
    fake, real = check_frames(fake, real)
    return rm.pixel_distance(_float64(fake), _float64(real), dim=-1).numpy()


def apd(fake, real, mask=None) -> float:
    """APD: mean over frames and pixels of the RGB L2 distance (0-255), in float64
    (:func:`reenact.metrics.apd`). fake, real (T, H, W, 3); ``mask`` (T, H, W) bool pools over its
    pixels only (MAPD); NaN when the mask is empty."""
    fake, real = check_frames(fake, real)
    if mask is None:
        return float(rm.apd(_float64(fake), _float64(real), dim=-1, scale=1.0))
    m = np.array(mask, bool)  # a copy: torch wants a writable array
    if m.shape != fake.shape[:3]:
        raise ValueError(f"mask must be (T, H, W) = {fake.shape[:3]}, got {m.shape}")
    if not m.any():
        return float("nan")
    return float(rm.apd(_float64(fake), _float64(real), torch.from_numpy(m), dim=-1, scale=1.0))


def mouth_apd(fake, real, boxes) -> float:
    """APD pooled over the pixels of per-frame boxes (T, 4) = x0, y0, x1, y1 (half-open, crop
    pixels; clipped to the image)."""
    fake, real = check_frames(fake, real)
    boxes = np.asarray(boxes)
    T, H, W = fake.shape[:3]
    if boxes.shape != (T, 4):
        raise ValueError(f"boxes must be (T, 4) = ({T}, 4), got {boxes.shape}")
    mask = np.zeros((T, H, W), bool)
    for t, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
        mask[t, max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)] = True
    return apd(fake, real, mask)


def psnr(fake, real) -> float:
    """Mean over frames of skimage's PSNR (data_range 255); inf when every frame is identical."""
    fake, real = check_frames(fake, real)
    with np.errstate(divide="ignore"):
        vals = [peak_signal_noise_ratio(r, f, data_range=255) for f, r in zip(fake, real)]
    return float(np.mean(vals))


def ssim(fake, real) -> float:
    """Mean over frames of skimage's SSIM (channel_axis=-1, data_range 255)."""
    fake, real = check_frames(fake, real)
    return float(np.mean([structural_similarity(r, f, channel_axis=-1, data_range=255)
                          for f, r in zip(fake, real)]))


def _luma(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) float64 BT.601 luma of (T, H, W, 3) RGB frames."""
    f = np.asarray(frames, np.float64)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def grid_score(frames, period: int = 8) -> float:
    """The checkerboard ("dot grid") of transposed-conv decoders, measured: the geometric mean over
    the lattice frequencies ``(a H / period, b W / period)`` (a, b integers, not both 0: the
    periods ``period``, ``period / 2``, ..., 2 of three stride-2 upsamplings) of the ratio of the
    frames' mean power spectrum there to the mean of its 8 neighbours two bins away. A periodic
    pattern is a peak on that lattice (ratio >> 1); natural frames score about 1. frames (T, H, W,
    3) with H, W multiples of ``period``."""
    y = _luma(np.asarray(frames))
    T, H, W = y.shape
    if H % period or W % period or min(H, W) < 4 * period:
        raise ValueError(f"grid_score: frames of {H}x{W} need sides that are multiples of {period} and >= {4 * period}")
    y = y - y.mean((1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(y)) ** 2).mean(0)
    ratios = []
    for a in range(period):
        for b in range(period):
            if a == 0 and b == 0:
                continue
            ky, kx = a * H // period, b * W // period
            ring = [power[(ky + dy) % H, (kx + dx) % W] for dy in (-2, 0, 2) for dx in (-2, 0, 2) if dy or dx]
            ratios.append(power[ky, kx] / max(float(np.mean(ring)), 1e-12))
    return float(np.exp(np.mean(np.log(np.maximum(ratios, 1e-12)))))


def sharpness(fake, real) -> float:
    """Detail kept: the energy of the Laplacian (4-neighbour) of the generated frames' luma over
    that of the real frames, both summed over all frames and pixels (1 = as much fine detail as the
    real frames; a blurry result is well under 1)."""
    fake, real = check_frames(fake, real)

    def energy(frames):
        y = _luma(frames)
        lap = 4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]
        return float((lap ** 2).sum())

    return energy(fake) / max(energy(real), 1e-12)


def error_map(fake, real) -> np.ndarray:
    """(H, W) float32: the per-pixel RGB L2 distance averaged over the frames (the heatmaps)."""
    return pixel_distance(fake, real).mean(0).astype(np.float32)


# ============================================================================ re-fit metrics

def rotation_difference(Ra, Rb) -> np.ndarray:
    """(T,) geodesic angle in degrees between rotations Ra, Rb (T, 3, 3): the angle of Ra Rb^T."""
    Ra, Rb = np.asarray(Ra, np.float64), np.asarray(Rb, np.float64)
    if Ra.shape != Rb.shape or Ra.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must both be (T, 3, 3), got {Ra.shape} and {Rb.shape}")
    M = Ra @ np.swapaxes(Rb, -1, -2)
    cos = (np.trace(M, axis1=-2, axis2=-1) - 1.0) / 2.0
    A = M - np.swapaxes(M, -1, -2)  # 2 sin(angle) [axis]_x
    sin = np.linalg.norm(np.stack([A[..., 2, 1], A[..., 0, 2], A[..., 1, 0]], -1), axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))  # atan2: well conditioned near 0 and 180 degrees, unlike arccos


def expression_distance(ea, eb) -> np.ndarray:
    """(T,) L1 distance ``sum_k |ea_k - eb_k|`` of expression coefficients (T, K)."""
    ea, eb = np.asarray(ea, np.float64), np.asarray(eb, np.float64)
    if ea.shape != eb.shape or ea.ndim != 2:
        raise ValueError(f"expressions must both be (T, K), got {ea.shape} and {eb.shape}")
    return np.abs(ea - eb).sum(-1)


def eye_landmark_distance(la, lb) -> np.ndarray:
    """(T,) mean Euclidean distance over the eye landmarks 36-47 of 68-point sets (T, 68, 2)."""
    la, lb = np.asarray(la, np.float64), np.asarray(lb, np.float64)
    if la.shape != lb.shape or la.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must both be (T, 68, 2), got {la.shape} and {lb.shape}")
    return np.linalg.norm(la[:, EYE_POINTS] - lb[:, EYE_POINTS], axis=-1).mean(-1)


EYE_CORNERS = ((36, 39), (42, 45))  # the 68-point outer / inner corners of the right and left eye


def gaze_offsets(lmk68, pupils) -> np.ndarray:
    """(T, 2, 2) where each pupil sits in its eye, in eye widths: for the eye with corners a, b
    (:data:`EYE_CORNERS`), ``((p - c) . u, (p - c) . v) / |b - a|`` with c = (a + b) / 2, u the unit
    vector from a to b and v = u turned by 90 degrees. Invariant to a similarity of the image
    (scale, rotation, shift); NaN where the pupil is (a closed eye). lmk68 (T, 68, 2), pupils
    (T, 2, 2) in the same pixels."""
    lmk, pup = np.asarray(lmk68, np.float64), np.asarray(pupils, np.float64)
    if lmk.ndim != 3 or lmk.shape[1:] != (68, 2) or pup.shape != (lmk.shape[0], 2, 2):
        raise ValueError(f"need lmk68 (T, 68, 2) and pupils (T, 2, 2), got {lmk.shape} and {pup.shape}")
    out = np.empty(pup.shape)
    for e, (ia, ib) in enumerate(EYE_CORNERS):
        a, b = lmk[:, ia], lmk[:, ib]
        w = np.linalg.norm(b - a, axis=-1, keepdims=True)
        u = (b - a) / np.maximum(w, 1e-9)
        v = np.stack([-u[:, 1], u[:, 0]], -1)
        d = pup[:, e] - (a + b) / 2
        out[:, e] = np.stack([(d * u).sum(-1), (d * v).sum(-1)], -1) / np.maximum(w, 1e-9)
    return out


def gaze_error(lmk_a, pupils_a, lmk_b, pupils_b) -> float:
    """Mean over frames and eyes (where both pupils were found) of the distance between the
    :func:`gaze_offsets` of two videos' frames, in percent of the eye width; NaN when no pair."""
    d = np.linalg.norm(gaze_offsets(lmk_a, pupils_a) - gaze_offsets(lmk_b, pupils_b), axis=-1)
    ok = np.isfinite(d)
    return float(100.0 * d[ok].mean()) if ok.any() else float("nan")


def _video_landmarks(an, scale: float) -> np.ndarray:
    """An analysis' 68 landmarks (its crop pixels) in the analysed video's pixels / ``scale``."""
    box = CropBox.from_dict(an.crop_box)
    return box.transform(int(an.size)).inverse().apply(np.asarray(an.lmk68, np.float64)) / scale


def compare_fits(gen, real, scale: float = 1.0) -> dict:
    """AED, ARD, AELD between two analyses (:class:`reenact.drive.SourceAnalysis` or any object
    with frame_index (T,), exp (T, K), rotation (T, 3, 3), lmk68 (T, 68, 2) crop pixels, crop_box,
    size) on the frames both kept. Landmarks are mapped back to the analysed videos' pixels and
    divided by ``scale`` (the analysis upscale factor) so AELD is in target-crop pixels.
    Returns {"aed", "ard", "aeld", "frames"}; NaNs when no frame is common."""
    common, ig, ir = np.intersect1d(np.asarray(gen.frame_index), np.asarray(real.frame_index),
                                    return_indices=True)
    if len(common) == 0:
        return {"aed": float("nan"), "ard": float("nan"), "aeld": float("nan"), "frames": 0}
    lg, lr = _video_landmarks(gen, scale)[ig], _video_landmarks(real, scale)[ir]
    return {"aed": float(expression_distance(np.asarray(gen.exp)[ig], np.asarray(real.exp)[ir]).mean()),
            "ard": float(rotation_difference(np.asarray(gen.rotation)[ig], np.asarray(real.rotation)[ir]).mean()),
            "aeld": float(eye_landmark_distance(lg, lr).mean()), "frames": int(len(common))}


# ============================================================================ temporal metric

@torch.no_grad()
def warping_error(frames, flows, conf, device=None) -> float:
    """Temporal warping error of a sequence under given flows.

    frames (T, H, W, 3) uint8 (or float on 0-255); flows (T, H, W, C>=2) with ``flows[t] =
    F_{t->t-1}`` in pixels (``flows[0]`` unused); conf (T, H, W) in [0, 1]. Returns the mean over
    t >= 1 with ``sum conf_t > 0`` of the conf-weighted mean of ``|Y_t - W(Y_{t-1}, F_t)|`` over
    pixels and channels (0-255); NaN when no pair has a trusted pixel.
    """
    frames, flows, conf = np.asarray(frames), np.asarray(flows), np.asarray(conf)
    T, H, W = frames.shape[:3]
    if frames.shape[-1] != 3 or flows.shape[:3] != (T, H, W) or conf.shape != (T, H, W) or flows.shape[-1] < 2:
        raise ValueError(f"need frames (T, H, W, 3), flows (T, H, W, C>=2) and conf (T, H, W) of the same T, H, W; "
                         f"got {frames.shape}, {flows.shape}, {conf.shape}")
    errs = []
    for t in range(1, T):
        c = torch.from_numpy(conf[t].astype(np.float32)).to(device)
        if float(c.sum()) <= 0:
            continue
        cur = torch.from_numpy(frames[t].astype(np.float32)).permute(2, 0, 1).to(device)
        prev = torch.from_numpy(frames[t - 1].astype(np.float32)).permute(2, 0, 1)[None].to(device)
        f = torch.from_numpy(flows[t][..., :2].astype(np.float32)).permute(2, 0, 1)[None].to(device)
        e = (cur - warp(prev, f)[0]).abs().mean(0)
        errs.append(float((e * c).sum() / c.sum()))
    return float(np.mean(errs)) if errs else float("nan")


def reference_flow(flows) -> str | None:
    """The temporal metric's reference flow among the cached providers ``flows``: dis2d, else
    faceflow3d, else None."""
    for name in ("dis2d", "faceflow3d"):
        if name in flows:
            return name
    return None

