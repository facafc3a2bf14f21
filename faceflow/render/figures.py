"""Figures that read without the paper: titled panels, the legends of the flow colour codes
(:mod:`faceflow.render.flowcolor`, thesis Sec. 6.3.3) and their magnitude scale.

Every flow picture the project writes goes through :func:`flow_figure` (one flow with its legend)
or :func:`legend_strip` (the legend under a row of panels, e.g. a video frame), so that the
colour scale in pixels, the "no motion" threshold and the meaning of the colours are on the
picture itself:

- 2D code: hue = direction of the image motion (right red, down yellow-green, left cyan, up
  violet), saturation = speed; white = no motion;
- 3D code: hue = direction of the in-plane part, brightness = speed (3D length); black = no
  motion; saturation = the depth direction: vivid = toward the camera, pale = away from it.

Images are RGB uint8 (H, W, 3); text is OpenCV's Hershey font.
"""
from __future__ import annotations

import cv2
import numpy as np

from faceflow.render.flowcolor import colour_wheel, flow2d_to_rgb, flow3d_to_rgb, hsv_to_rgb

__all__ = ["caption", "hstack", "vstack", "text_panel", "legend_2d", "legend_3d", "legend_strip", "flow_figure",
           "scale_text", "EXPLAIN_2D", "EXPLAIN_3D"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
EXPLAIN_2D = "2D flow: hue = direction (wheel), colour strength = speed, white = no motion."
EXPLAIN_3D = ("3D flow: hue = in-plane direction (disc), brightness = speed, black = no motion; "
              "vivid = moving toward the camera, pale = away from it (bar).")


def _put(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour=(255, 255, 255)) -> None:
    cv2.putText(img, text, (int(org[0]), int(org[1])), FONT, scale, colour, 1, cv2.LINE_AA)


def _fit_scale(text: str, width: int, height: int) -> float:
    """The font scale at which ``text`` fits ``width`` pixels and a line of ``height`` pixels."""
    scale = height / 30.0
    (tw, _), _ = cv2.getTextSize(text, FONT, scale, 1)
    return scale * min(1.0, (width - 4) / max(tw, 1))


def caption(img: np.ndarray, text: str, band: int | None = None, *, background=(0, 0, 0),
            colour=(255, 255, 255)) -> np.ndarray:
    """``img`` (H, W, 3) uint8 with a title band of ``band`` pixels on top (default H / 10, at
    least 16); the text shrinks to fit the width."""
    img = np.ascontiguousarray(img, np.uint8)
    h, w = img.shape[:2]
    band = int(band or max(16, h // 10))
    top = np.empty((band, w, 3), np.uint8)
    top[:] = background
    _put(top, text, (2, band * 0.72), _fit_scale(text, w, band), colour)
    return np.concatenate([top, img], 0)


def _pad_to(img: np.ndarray, h: int | None = None, w: int | None = None, fill: int = 255) -> np.ndarray:
    H, W = img.shape[:2]
    out = np.full((h or H, w or W, 3), fill, np.uint8)
    out[:H, :W] = img
    return out


def hstack(panels: list[np.ndarray], gap: int = 2, fill: int = 255) -> np.ndarray:
    """Panels (H_i, W_i, 3) side by side, top-aligned, padded to the tallest with ``fill``."""
    h = max(p.shape[0] for p in panels)
    parts = []
    for k, p in enumerate(panels):
        parts.append(_pad_to(p, h=h, fill=fill))
        if gap and k < len(panels) - 1:
            parts.append(np.full((h, gap, 3), fill, np.uint8))
    return np.concatenate(parts, 1)


def vstack(panels: list[np.ndarray], fill: int = 255) -> np.ndarray:
    """Panels one above the other, left-aligned, padded to the widest with ``fill``."""
    w = max(p.shape[1] for p in panels)
    return np.concatenate([_pad_to(p, w=w, fill=fill) for p in panels], 0)


def wrap_text(text: str, width: int, scale: float) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels at font ``scale``."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, FONT, scale, 1)[0][0] <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def text_panel(paragraphs: list[str], width: int, line_height: int = 16, *, background=(255, 255, 255),
               colour=(0, 0, 0)) -> np.ndarray:
    """Paragraphs of text wrapped to ``width`` pixels, one line per ``line_height`` pixels."""
    scale = line_height / 30.0
    lines = [ln for p in paragraphs for ln in wrap_text(p, width - 6, scale)]
    out = np.empty((line_height * len(lines) + 4, width, 3), np.uint8)
    out[:] = background
    for k, line in enumerate(lines):
        _put(out, line, (3, 2 + line_height * (k + 0.78)), _fit_scale(line, width, line_height), colour)
    return out


def _label_disc(disc: np.ndarray, labels: tuple[str, str, str, str], pad: int) -> np.ndarray:
    """A disc legend with direction labels (right, down, left, up) around it."""
    s = disc.shape[0]
    out = np.full((s + 2 * pad, s + 2 * pad, 3), 255, np.uint8)
    out[pad:pad + s, pad:pad + s] = disc
    sc = pad / 30.0
    for text, (x, y) in zip(labels, ((pad + s + 1, pad + s / 2 + pad / 4), (pad + s / 2 - pad / 2, 2 * pad + s - 3),
                                     (1, pad + s / 2 + pad / 4), (pad + s / 2 - pad / 2, pad - 4))):
        _put(out, text, (x, y), sc, (0, 0, 0))
    return out


def legend_2d(size: int = 96) -> np.ndarray:
    """The 2D code's legend: its colour wheel (centre = no motion, rim = the scale's maximum)
    with the image directions marked; (size, size, 3) uint8."""
    pad = max(10, size // 7)
    return cv2.resize(_label_disc(colour_wheel(size - 2 * pad), (">", "v", "<", "^"), pad), (size, size),
                      interpolation=cv2.INTER_AREA)


def legend_3d(size: int = 96) -> np.ndarray:
    """The 3D code's legend, (size, ~1.4 size, 3) uint8: a disc of in-plane motion (hue =
    direction, brightness = speed, centre black = none) and a bar of the depth direction at full
    speed for motion to the right: top vivid = toward the camera, middle = in the image plane,
    bottom pale = away from it."""
    pad = max(10, size // 7)
    d = size - 2 * pad
    c = (np.arange(d) + 0.5 - d / 2) / (d / 2)
    x, y = np.meshgrid(c, c)
    inside = x * x + y * y <= 1.0
    disc = flow3d_to_rgb(np.stack([x, y, np.zeros_like(x)], -1), mask=inside, max_magnitude=1.0)
    disc[~inside] = 255
    disc = _label_disc(disc, (">", "v", "<", "^"), pad)
    phi = np.linspace(np.pi, 0, d)[:, None].repeat(max(6, d // 6), 1)  # toward the camera on top
    bar = np.round(hsv_to_rgb(np.zeros_like(phi), phi / np.pi, np.ones_like(phi)) * 255).astype(np.uint8)
    sc = pad / 34.0
    text_w = cv2.getTextSize("in-plane", FONT, sc, 1)[0][0]
    col = np.full((size, bar.shape[1] + text_w + 8, 3), 255, np.uint8)
    col[pad:pad + d, 2:2 + bar.shape[1]] = bar
    for text, yy in (("toward", pad + 8), ("in-plane", pad + d / 2 + 3), ("away", pad + d)):
        _put(col, text, (bar.shape[1] + 4, yy), sc, (0, 0, 0))
    return np.concatenate([disc, col], 1)


def scale_text(max_flow: float, min_flow: float = 0.0, unit: str = "px") -> str:
    """'colour scale 0 .. 5 px (no motion below 0.1 px)'."""
    text = f"colour scale 0 .. {max_flow:g} {unit}"
    return text + (f" (no motion below {min_flow:g} {unit})" if min_flow > 0 else "")


def legend_strip(width: int, max_flow: float, min_flow: float = 0.0, kinds: tuple[str, ...] = ("3d", "2d"),
                 height: int = 80, note: str | None = None) -> np.ndarray:
    """A legend band (height, width, 3) to put under a figure: the legends of ``kinds`` ('3d',
    '2d'), the magnitude scale and one line explaining each code (and ``note``)."""
    icons = [legend_3d(height) if k == "3d" else legend_2d(height) for k in kinds]
    lines = [scale_text(max_flow, min_flow)] + [EXPLAIN_3D if k == "3d" else EXPLAIN_2D for k in kinds]
    lines += [note] if note else []
    icon_w = sum(i.shape[1] for i in icons) + 2 * len(icons)
    if width - icon_w >= 240:  # the text beside the icons
        strip = hstack(icons + [text_panel(lines, width - icon_w, line_height=15)], gap=2)
    else:  # a narrow figure: the text below the icons
        row = hstack(icons, gap=2)
        if row.shape[1] > width:
            size = (width, int(round(row.shape[0] * width / row.shape[1])))
            row = cv2.resize(row, size, interpolation=cv2.INTER_AREA)
        strip = vstack([row, text_panel(lines, width, line_height=14)])
    return _pad_to(strip, w=width)


def flow_figure(flow: np.ndarray, mask: np.ndarray | None, kind: str, max_flow: float, min_flow: float = 0.0,
                title: str | None = None, legend_height: int = 80) -> np.ndarray:
    """One colour-coded flow (H, W, 2|3) with a title on top and its legend and scale below;
    ``kind`` '2d' or '3d' picks the code. Returns (H', W', 3) uint8."""
    if kind not in ("2d", "3d"):
        raise ValueError(f"kind must be '2d' or '3d', got {kind!r}")
    code = flow3d_to_rgb if kind == "3d" else flow2d_to_rgb
    img = code(flow, mask, max_magnitude=max_flow, min_magnitude=min_flow)
    w = max(img.shape[1], 360)
    img = _pad_to(img, w=w, fill=0 if kind == "3d" else 255)
    top = caption(img, title or f"{kind.upper()} flow", band=max(16, min(24, img.shape[0] // 12)))
    return vstack([top, legend_strip(w, max_flow, min_flow, (kind,), height=legend_height)])
