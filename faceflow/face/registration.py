"""Face registration: similarity transforms between images and the DeepFaceFlow template, and
the fixed per-video crop box of the synthesis side.

DeepFaceFlow (Koujan et al., CVPR 2020, Sec. 4) feeds its networks images "registered to a 2D
template using a similarity transform estimated from 68 facial landmarks" and resized to
224 x 224. This module provides

- :func:`template_landmarks`: the canonical frontal 68-point shape in a ``size x size`` image;
- :func:`register_landmarks`: the similarity image -> template that aligns 68 landmarks to it
  (:class:`~faceflow.geometry.similarity.Similarity` and
  :func:`~faceflow.geometry.similarity.estimate_similarity` live in
  :mod:`faceflow.geometry.similarity`; they are re-exported here);
- :func:`warp_image` / :func:`warp_back` / :func:`flow_to_image`: pure-PyTorch resampling
  (``grid_sample``, ``align_corners=False``) honouring the pixel-centre convention, so that
  PNCCs, masks and flows computed in the template frame map back to original coordinates;
- :class:`CropBox` / :func:`crop_box` / :func:`crop_image`: a fixed square crop per video
  (median of the per-frame landmark boxes, enlarged and shifted up), as Head2Head(++) does so
  that the background stays still in the synthesiser's input.

Conventions: points are (x, y) with y down; pixel (row i, col j) has its centre at
(j + 0.5, i + 0.5), so an image of width W covers x in [0, W]. Image sizes are (H, W).
A transform "image -> template" maps original image coordinates to template coordinates;
:func:`warp_image` fills output pixel q with the input sampled at ``transform.inverse()(q)``.
In image coordinates (y down) a positive :attr:`Similarity.angle` turns +x toward +y, i.e.
clockwise on screen.

Template layout (see :func:`template_from_model`): the ICT FaceKit mean face's 68 landmarks,
x as is and y flipped (model +Y is up), scaled so that the landmarks' bounding box (brows to
chin) spans 0.60 of the template height, centred horizontally, with its top (the brows) at
0.28 of the height. This leaves room for the forehead (~6 cm above the brows at this scale)
and puts the eye line at ~0.40 * size with an inter-ocular distance (eye centres) of ~0.28 * size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from faceflow.errors import FaceflowError, MediaError
from faceflow.geometry.similarity import Similarity, estimate_similarity, float_array
from faceflow.ops.sampling import affine_grid, sample_normalised

TEMPLATE_SIZE = 224
MAX_SIZE = 8192

TEMPLATE_BOX_TOP = 0.28  # top of the 68-landmark bounding box (the brows), fraction of size
TEMPLATE_BOX_HEIGHT = 0.60  # brows-to-chin height, fraction of size

# The 68 landmarks of the ICT FaceKit mean face (skin model, ``model.mean[model.lmk68]``),
# normalised by :func:`template_from_model`, in units of the template size; iBUG order.
# Re-derived from the asset and compared in tests/test_registration.py.
_TEMPLATE_UNIT = np.array([
    (0.1804, 0.3919), (0.1842, 0.4868), (0.1988, 0.5716), (0.2154, 0.6538),  # 0-3 jaw
    (0.2515, 0.7463), (0.3132, 0.8210), (0.3676, 0.8516), (0.4333, 0.8666),  # 4-7
    (0.5000, 0.8800), (0.5667, 0.8666), (0.6324, 0.8516), (0.6868, 0.8210),  # 8-11
    (0.7485, 0.7463), (0.7846, 0.6538), (0.8012, 0.5716), (0.8158, 0.4868),  # 12-15
    (0.8196, 0.3919), (0.2476, 0.3259), (0.2859, 0.2921), (0.3353, 0.2800),  # 16 jaw, 17-19 brow
    (0.3952, 0.2828), (0.4491, 0.2951), (0.5509, 0.2951), (0.6048, 0.2828),  # 20-21, 22-23 brow
    (0.6647, 0.2800), (0.7141, 0.2921), (0.7524, 0.3259), (0.5000, 0.3891),  # 24-26 brow, 27 nose
    (0.5000, 0.4372), (0.5000, 0.4816), (0.5000, 0.5339), (0.4456, 0.6012),  # 28-30 nose, 31 nostril
    (0.4738, 0.6009), (0.5000, 0.6038), (0.5262, 0.6009), (0.5544, 0.6012),  # 32-35 nostrils
    (0.3064, 0.4025), (0.3320, 0.3833), (0.3793, 0.3807), (0.4200, 0.4104),  # 36-39 eye (image left)
    (0.3815, 0.4176), (0.3326, 0.4182), (0.5801, 0.4103), (0.6207, 0.3807),  # 40-41, 42-43 eye
    (0.6680, 0.3833), (0.6936, 0.4025), (0.6674, 0.4182), (0.6185, 0.4176),  # 44-47 eye
    (0.3900, 0.7043), (0.4261, 0.6721), (0.4684, 0.6567), (0.5000, 0.6593),  # 48-51 outer lips
    (0.5316, 0.6567), (0.5739, 0.6721), (0.6100, 0.7043), (0.5782, 0.7276),  # 52-55
    (0.5449, 0.7383), (0.5000, 0.7415), (0.4551, 0.7383), (0.4218, 0.7276),  # 56-59
    (0.4041, 0.7030), (0.4568, 0.6946), (0.5000, 0.6958), (0.5432, 0.6946),  # 60-63 inner lips
    (0.5959, 0.7030), (0.5464, 0.6982), (0.5000, 0.6991), (0.4536, 0.6982),  # 64-67
], dtype=np.float64)
_TEMPLATE_UNIT.setflags(write=False)

# Default crop: side = (1 + 2 * margin) * L = 1.8 L and centre moved up by 0.2 L, with L the
# median max(w, h) of the landmark boxes. On the mean face (L ~ 14.7 cm, ear to ear) this reaches
# ~9 cm above the brows (the top of the head) and ~3.5 cm below the chin (some neck).
CROP_MARGIN = 0.4
CROP_SHIFT = 0.2


def _check_size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FaceflowError(f"{name} must be an integer, got {value!r}")
    if not 0 < int(value) <= MAX_SIZE:
        raise FaceflowError(f"{name} must be in 1..{MAX_SIZE}, got {value}")
    return int(value)


def _check_hw(size, name: str) -> tuple[int, int]:
    """An int or an (H, W) pair -> (H, W), each in 1..MAX_SIZE."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = _check_size(size, name)
        return s, s
    try:
        h, w = size
    except (TypeError, ValueError):
        raise FaceflowError(f"{name} must be an int or an (H, W) pair, got {size!r}") from None
    return _check_size(h, f"{name} height"), _check_size(w, f"{name} width")


# ----------------------------------------------------------------------------- template
def template_from_model(lmk3d) -> np.ndarray:
    """Normalise model-space 68 landmarks (68, 3) (cm, +Y up) into template units (68, 2).

    x as is, y flipped; uniform scale so the bounding box height is ``TEMPLATE_BOX_HEIGHT``;
    box centred horizontally at 0.5 with its top at ``TEMPLATE_BOX_TOP``.
    """
    p = float_array(lmk3d, "model landmarks")
    if p.shape != (68, 3) and p.shape != (68, 2):
        raise FaceflowError(f"model landmarks must be (68, 3), got {p.shape}")
    xy = p[:, :2] * np.array([1.0, -1.0])
    lo, hi = xy.min(0), xy.max(0)
    s = TEMPLATE_BOX_HEIGHT / (hi[1] - lo[1])
    x = (xy[:, 0] - 0.5 * (lo[0] + hi[0])) * s + 0.5
    y = (xy[:, 1] - lo[1]) * s + TEMPLATE_BOX_TOP
    return np.stack([x, y], 1)


def template_landmarks(size: int = TEMPLATE_SIZE) -> np.ndarray:
    """(68, 2) float64: the canonical frontal 68-point shape in a ``size x size`` image."""
    return _TEMPLATE_UNIT * float(_check_size(size, "template size"))


# ----------------------------------------------------------------------------- landmarks -> template
def _landmarks68(lmk68) -> np.ndarray:
    p = float_array(lmk68, "landmarks")
    if p.shape not in ((68, 2), (68, 3)):
        raise FaceflowError(f"landmarks must be (68, 2) (or (68, 3), x y used), got {p.shape}")
    p = p[:, :2]
    if not np.isfinite(p).all(1).any():
        raise FaceflowError("landmarks are all NaN (no face?)")
    return p


def register_landmarks(lmk68, size: int = TEMPLATE_SIZE, weights=None) -> Similarity:
    """The similarity image -> template (``size x size``) that best aligns the 68 landmarks
    (68, 2) to :func:`template_landmarks` in the least-squares sense (NaN rows ignored;
    optional per-landmark ``weights`` (68,))."""
    p = _landmarks68(lmk68)
    try:
        return estimate_similarity(p, template_landmarks(size), weights)
    except FaceflowError as e:
        raise FaceflowError(f"cannot register landmarks: {e}") from e


# ----------------------------------------------------------------------------- warping
_MODES = {"bilinear", "nearest", "bicubic"}
_BORDERS = {"zeros": "zeros", "border": "border", "reflection": "reflection"}


class _Source:
    """An image batch seen as (B, C, H, W); :meth:`region` converts only the part a warp reads
    to a floating tensor (registering a face from a large frame touches a small area)."""

    def __init__(self, image, what: str = "image"):
        if torch.is_tensor(image):
            if image.dim() not in (3, 4):
                raise MediaError(f"{what} tensor must be (C, H, W) or (B, C, H, W), got {tuple(image.shape)}")
            if image.numel() == 0:
                raise MediaError(f"{what} is empty: {tuple(image.shape)}")
            self._torch, self._dtype, self._nd = True, image.dtype, image.dim()
            self._raw = image.unsqueeze(0) if image.dim() == 3 else image
            ft = image.dtype if image.is_floating_point() else torch.float32
            if ft in (torch.float16, torch.bfloat16) and image.device.type == "cpu":
                ft = torch.float32
            self.shape, self.dtype, self.device = tuple(self._raw.shape), ft, image.device
            return
        if not isinstance(image, np.ndarray):
            raise MediaError(f"{what} must be a numpy array or a torch tensor, got {type(image).__name__}")
        if image.ndim not in (2, 3, 4):
            raise MediaError(f"{what} array must be (H, W), (H, W, C) or (B, H, W, C), got {image.shape}")
        if image.size == 0:
            raise MediaError(f"{what} is empty: {image.shape}")
        if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer)
                                       or np.issubdtype(image.dtype, np.floating)):
            raise MediaError(f"{what} must be an integer or float array, got dtype {image.dtype}")
        self._torch, self._dtype, self._nd = False, image.dtype, image.ndim
        arr = image[..., None] if image.ndim == 2 else image
        self._raw = arr[None] if arr.ndim == 3 else arr  # (B, H, W, C)
        self.dtype = torch.float64 if image.dtype == np.float64 else torch.float32
        self.device = torch.device("cpu")
        B, H, W, C = self._raw.shape
        self.shape = (B, C, H, W)

    def region(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Rows r0:r1, columns c0:c1 as a floating (B, C, r1 - r0, c1 - c0) tensor."""
        if self._torch:
            return self._raw[..., r0:r1, c0:c1].to(self.dtype)
        np_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        return torch.from_numpy(self._raw[:, r0:r1, c0:c1].astype(np_dtype)).permute(0, 3, 1, 2)

    def restore(self, y: torch.Tensor, batched_out: bool = False):
        """A (B', C, h, w) result in the input's kind, layout and dtype."""
        if self._torch:
            y = y[0] if self._nd == 3 and not batched_out else y
            return _cast(y, self._dtype)
        out = y.permute(0, 2, 3, 1)
        if self._nd != 4 and not batched_out:
            out = out[0]
        if self._nd == 2:
            out = out[..., 0]
        out = out.detach().cpu().numpy()
        if np.issubdtype(self._dtype, np.integer):
            info = np.iinfo(self._dtype)
            return np.clip(np.rint(out), info.min, info.max).astype(self._dtype)
        return out.astype(self._dtype, copy=False)


def _cast(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return y.to(dtype)
    if dtype == torch.bool:
        return y >= 0.5
    info = torch.iinfo(dtype)
    return y.round().clamp(info.min, info.max).to(dtype)


def _transforms(transform) -> list[Similarity]:
    if isinstance(transform, Similarity):
        return [transform]
    try:
        ts = list(transform)
    except TypeError:
        raise FaceflowError(f"transform must be a Similarity or a sequence of them, "
                            f"got {type(transform).__name__}") from None
    if not ts or not all(isinstance(t, Similarity) for t in ts):
        raise FaceflowError("transform must be a Similarity or a non-empty sequence of Similarity")
    return ts


_READ_MARGIN = 3  # pixels read beyond the sampled area (bicubic needs 2)


def _warp(src: _Source, ts: list[Similarity], out_hw, border: str, interpolation: str) -> torch.Tensor:
    """grid_sample (align_corners=False) of ``src`` at ``t^-1(q)`` for every output pixel centre
    q, one transform per batch element (or one for all). Returns (max(B, N), C, h, w)."""
    B, C, H, W = src.shape
    N = len(ts)
    if N > 1 and B not in (1, N):
        raise FaceflowError(f"{N} transforms for a batch of {B} images (need 1 or {N} images)")
    n, (h, w) = max(B, N), out_hw
    inv = np.stack([np.vstack([t.inverse().matrix, [0.0, 0.0, 1.0]]) for t in ts])  # (N, 3, 3)
    # The sampled area: the affine image of the output pixel centres' corners.
    corners = np.array([[0.5, 0.5, 1], [w - 0.5, 0.5, 1], [0.5, h - 0.5, 1], [w - 0.5, h - 0.5, 1]])
    p = np.einsum("nij,kj->nki", inv[:, :2], corners).reshape(-1, 2)
    r0, r1, c0, c1 = 0, H, 0, W
    if border != "reflection":  # zeros / edge padding only depend on the image edges
        c0 = int(np.clip(math.floor(p[:, 0].min()) - _READ_MARGIN, 0, W - 1))
        c1 = int(np.clip(math.ceil(p[:, 0].max()) + _READ_MARGIN, c0 + 1, W))
        r0 = int(np.clip(math.floor(p[:, 1].min()) - _READ_MARGIN, 0, H - 1))
        r1 = int(np.clip(math.ceil(p[:, 1].max()) + _READ_MARGIN, r0 + 1, H))
    x = src.region(r0, r1, c0, c1)
    # theta: normalised output -> output pixels -> input pixels -> normalised region coordinates;
    # align_corners=False puts x in [0, W] at [-1, 1], pixel centre j + 0.5 at (2j + 1) / W - 1.
    out_px = np.array([[w / 2, 0, w / 2], [0, h / 2, h / 2], [0, 0, 1.0]])
    wr, hr = c1 - c0, r1 - r0
    to_norm = np.array([[2 / wr, 0, -2 * c0 / wr - 1], [0, 2 / hr, -2 * r0 / hr - 1], [0, 0, 1.0]])
    theta = torch.from_numpy((to_norm @ inv @ out_px)[:, :2]).to(x.device)  # (N, 2, 3) float64
    # per-column plus per-row terms in float64, summed in x's dtype (exact and memory-light)
    grid = affine_grid(theta, h, w, x.dtype)  # (N, h, w, 2)
    if N != n:
        grid = grid.expand(n, -1, -1, -1)
    if B != n:
        x = x.expand(n, -1, -1, -1)
    return sample_normalised(x, grid, mode=interpolation, padding_mode=_BORDERS[border])


def _check_modes(border: str, interpolation: str) -> None:
    if border not in _BORDERS:
        raise FaceflowError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    if interpolation not in _MODES:
        raise FaceflowError(f"interpolation must be one of {sorted(_MODES)}, got {interpolation!r}")


def warp_image(image, transform, out_size, *, border: str = "zeros", interpolation: str = "bilinear"):
    """Resample ``image`` so that output pixel centre q shows the input at ``transform^-1(q)``.

    image: torch (B, C, H, W) / (C, H, W) (any dtype; integer ones are rounded back), or numpy
    (H, W), (H, W, C), (B, H, W, C) uint8 / float. ``transform``: a :class:`Similarity` (input ->
    output coordinates) or a sequence of N of them (one per batch element; a single image is
    then broadcast and a numpy (H, W[, C]) input returns (N, h, w[, C])). ``out_size``: (h, w)
    or an int. ``border``: 'zeros' | 'border' (edge replicate) | 'reflection';
    ``interpolation``: 'bilinear' | 'nearest' | 'bicubic'. Returns the same kind and dtype.
    """
    _check_modes(border, interpolation)
    out_hw = _check_hw(out_size, "output size")
    ts = _transforms(transform)
    src = _Source(image)
    return src.restore(_warp(src, ts, out_hw, border, interpolation), batched_out=len(ts) > 1)


def register_image(image: np.ndarray, lmk68, size: int = TEMPLATE_SIZE) -> tuple[np.ndarray, Similarity]:
    """Warp ``image`` (H, W, C) into the ``size x size`` template frame. Returns the
    registered image (size, size, C) (same dtype) and the image -> template transform."""
    size = _check_size(size, "template size")
    t = register_landmarks(lmk68, size)
    return warp_image(image, t, size, border="zeros"), t


def _masked_warp(x: torch.Tensor, mask, ts, out_hw, interpolation: str):
    """Resample x (B, C, h, w) with a validity mask so that invalid pixels do not bleed:
    bilinear is normalised by the sampled mask weight (valid where >= 0.5), nearest copies the
    nearest pixel's validity. Returns (values (B', C, H, W), valid (B', 1, H, W) bool)."""
    if mask is None:
        m = torch.ones_like(x[:, :1])
    else:
        m = mask.detach() if torch.is_tensor(mask) else torch.from_numpy(np.asarray(mask))
        m = m.to(device=x.device, dtype=x.dtype)
        if m.dim() == 2:
            m = m[None, None]
        elif m.dim() == 3:
            m = m[:, None]
        if m.dim() != 4 or m.shape[1] != 1 or m.shape[-2:] != x.shape[-2:] or m.shape[0] not in (1, x.shape[0]):
            raise FaceflowError(f"mask must be (h, w), (B, h, w) or (B, 1, h, w) matching the image "
                                f"{tuple(x.shape[-2:])}, got {tuple(mask.shape)}")
        m = (m > 0.5).to(x.dtype).expand(x.shape[0], -1, -1, -1)
    if interpolation == "nearest":
        vals = _warp(_Source(x * m), ts, out_hw, "zeros", "nearest")
        valid = _warp(_Source(m), ts, out_hw, "zeros", "nearest") > 0.5
        return torch.where(valid, vals, torch.zeros_like(vals)), valid
    if interpolation != "bilinear":
        raise FaceflowError(f"masked resampling supports 'bilinear' or 'nearest', got {interpolation!r}")
    num = _warp(_Source(x * m), ts, out_hw, "zeros", "bilinear")
    den = _warp(_Source(m), ts, out_hw, "zeros", "bilinear")
    valid = den >= 0.5
    vals = torch.where(valid, num / den.clamp(min=1e-6), torch.zeros_like(num))
    return vals, valid


def warp_back(template_image, transform: Similarity, image_size, *, mask=None, border: str = "zeros",
              interpolation: str = "bilinear", return_mask: bool = False):
    """Map a template-frame image (PNCC, mask, ...) back into original image coordinates.

    ``transform`` is the image -> template similarity (e.g. from :func:`register_landmarks`);
    ``image_size`` (H, W) of the original image. Without ``mask`` this is
    ``warp_image(template_image, transform.inverse(), image_size)``. With ``mask`` (template
    (h, w) bool), masked-out template pixels do not bleed into the result (see
    :func:`flow_to_image`); pixels without valid support are 0. ``return_mask`` also returns
    the validity (H, W) bool (numpy) / (B, 1, H, W) (torch).
    """
    _check_modes(border, interpolation)
    hw = _check_hw(image_size, "image size")
    inv = [t.inverse() for t in _transforms(transform)]
    if mask is None and not return_mask:
        return warp_image(template_image, inv, hw, border=border, interpolation=interpolation)
    src = _Source(template_image, "template image")
    vals, valid = _masked_warp(src.region(0, src.shape[2], 0, src.shape[3]), mask, inv, hw, interpolation)
    out = src.restore(vals, batched_out=len(inv) > 1)
    if not return_mask:
        return out
    return out, _valid_out(valid, template_image, len(inv) > 1)


def _valid_out(valid: torch.Tensor, like, batched: bool):
    if torch.is_tensor(like):
        return valid[0] if like.dim() == 3 and not batched else valid
    v = valid[:, 0].cpu().numpy()
    return v if (like.ndim == 4 or batched) else v[0]


def flow_to_image(flow, transform: Similarity, image_size, *, mask=None, interpolation: str = "bilinear",
                  return_mask: bool = False):
    """A flow field computed in the template frame, as a flow field of the original image.

    flow: numpy (h, w, 3) / (h, w, 2) (or (B, h, w, C)), or torch (C, h, w) / (B, C, h, w), in
    template pixels: the surface point seen at template pixel q moves to q + flow[q] (3D flow:
    z in template depth units, i.e. scaled-orthographic depth times the template scale).
    ``transform``: image -> template. In the image, the point at p = T^-1(q) moves to
    T^-1(q + f) = p + (sR)^-1 f, and depth scales by 1/s (DeepFaceFlow eq. (2) in the image
    frame), so the output at pixel p is ``T.inverse().apply_flow3d(flow(T(p)))``.
    Resampling is ``interpolation`` ('bilinear' normalised by the valid weight, or 'nearest'),
    so masked-out pixels (``mask`` (h, w) bool, default all valid) and the area outside the
    template never bleed in; pixels without support are 0. Returns (H, W, C) float (numpy) or
    (B, C, H, W) (torch); with ``return_mask`` also the validity mask.
    """
    if interpolation not in ("bilinear", "nearest"):
        raise FaceflowError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    hw = _check_hw(image_size, "image size")
    if not isinstance(transform, Similarity):
        raise FaceflowError(f"transform must be a Similarity, got {type(transform).__name__}")
    if torch.is_tensor(flow):
        chans = flow.shape[-3] if flow.dim() >= 3 else None
        flow = flow if flow.is_floating_point() else flow.float()
    else:
        flow = np.asarray(flow)
        chans = flow.shape[-1] if flow.ndim in (3, 4) else None
        if flow.ndim in (3, 4) and not np.issubdtype(flow.dtype, np.floating):
            flow = flow.astype(np.float32)
    if chans not in (2, 3):
        raise FaceflowError(f"flow must have 2 or 3 components ((h, w, C) numpy or (C, h, w) torch), "
                            f"got shape {tuple(flow.shape)}")
    inv = transform.inverse()
    src = _Source(flow, "flow")
    vals, valid = _masked_warp(src.region(0, src.shape[2], 0, src.shape[3]), mask, [inv], hw, interpolation)
    v = vals.permute(0, 2, 3, 1)
    v = inv.apply_flow3d(v) if chans == 3 else inv.apply_vectors(v)
    v = torch.where(valid.permute(0, 2, 3, 1), v, torch.zeros_like(v)).permute(0, 3, 1, 2)
    out = src.restore(v)
    return (out, _valid_out(valid, flow, False)) if return_mask else out


# ----------------------------------------------------------------------------- crop box
@dataclass
class CropBox:
    """A fixed square crop: top-left corner (x0, y0) and side, in original image coordinates
    (continuous, y down). It may extend outside the image."""

    x0: float
    y0: float
    side: float

    def __post_init__(self):
        vals = [float(v) for v in (self.x0, self.y0, self.side)]
        if not all(math.isfinite(v) for v in vals) or vals[2] <= 0:
            raise FaceflowError(f"crop box needs finite x0, y0 and side > 0, got {vals}")
        self.x0, self.y0, self.side = vals

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.x0 + self.side / 2, self.y0 + self.side / 2])

    def transform(self, size: int) -> Similarity:
        """Original image -> crop of ``size x size``: ``x' = (x - x0) * size / side``."""
        s = _check_size(size, "crop size") / self.side
        return Similarity(np.array([[s, 0.0, -s * self.x0], [0.0, s, -s * self.y0]]))

    def to_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "side": self.side}

    @classmethod
    def from_dict(cls, d: dict) -> "CropBox":
        try:
            return cls(float(d["x0"]), float(d["y0"]), float(d["side"]))
        except (KeyError, TypeError, ValueError) as e:
            raise FaceflowError(f"a crop box dict needs numeric 'x0', 'y0' and 'side', got {d!r}") from e


def crop_box(boxes, valid=None, margin: float = CROP_MARGIN, image_size=None,
             shift: float = CROP_SHIFT) -> CropBox:
    """One square crop for a whole video, from per-frame (smoothed) landmark boxes.

    boxes (T, 4) = x0, y0, x1, y1; rows with NaN or ``valid`` (T,) False are ignored. With
    L = median over frames of max(w, h): centre = median of the box centres moved up by
    ``shift * L`` (the 68 landmarks stop at the brows), side = (1 + 2 * margin) * L. The
    defaults (margin 0.4, shift 0.2: a 1.8x box) fit the whole head with hair and some neck,
    close to Head2Head's generous crops. With ``image_size`` (H, W) the box is shifted (never
    resized) to lie inside the image along each axis where it fits, which avoids padding and
    keeps the face inside the crop; otherwise it may extend outside (then the crop pads).
    """
    b = float_array(boxes, "boxes")
    if b.ndim != 2 or b.shape[1] != 4 or len(b) == 0:
        raise FaceflowError(f"boxes must be (T, 4) x0, y0, x1, y1 with T >= 1, got {b.shape}")
    ok = np.isfinite(b).all(1)
    if valid is not None:
        v = np.asarray(valid)
        if v.shape != (len(b),):
            raise FaceflowError(f"valid must be ({len(b)},), got {v.shape}")
        ok &= v.astype(bool)
    if not math.isfinite(margin) or margin < 0 or not math.isfinite(shift):
        raise FaceflowError(f"margin must be >= 0 and shift finite, got margin={margin}, shift={shift}")
    b = b[ok]
    size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    b, size = b[size > 0], size[size > 0]
    if len(b) == 0:
        raise FaceflowError("no valid face box (every row is NaN, invalid or empty)")
    L = float(np.median(size))
    cx = float(np.median((b[:, 0] + b[:, 2]) / 2))
    cy = float(np.median((b[:, 1] + b[:, 3]) / 2)) - shift * L
    side = (1 + 2 * margin) * L
    x0, y0 = cx - side / 2, cy - side / 2
    if image_size is not None:
        H, W = _check_hw(image_size, "image size")
        if side <= W:
            x0 = min(max(x0, 0.0), W - side)
        if side <= H:
            y0 = min(max(y0, 0.0), H - side)
    return CropBox(x0, y0, side)


def crop_image(image, box: CropBox, size: int = 256, border: str = "border",
               interpolation: str = "bilinear"):
    """Crop ``box`` out of ``image`` and resize to ``size x size``.

    image numpy (H, W, C) / (H, W) / (B, H, W, C) or torch (as :func:`warp_image`); ``border``
    'border' (edge replicate) or 'zeros' for the parts of the box outside the image.
    Returns (size, size, C) (numpy) in the input's dtype.
    """
    if not isinstance(box, CropBox):
        raise FaceflowError(f"box must be a CropBox, got {type(box).__name__}")
    size = _check_size(size, "crop size")
    return warp_image(image, box.transform(size), size, border=border, interpolation=interpolation)


__all__ = [
    "TEMPLATE_SIZE", "template_landmarks", "template_from_model", "Similarity", "estimate_similarity",
    "register_landmarks", "warp_image", "register_image", "warp_back", "flow_to_image",
    "CropBox", "crop_box", "crop_image",
]
