"""Synthetic training pairs with exact 3D flow, in the spirit of FacialFlowNet:
``python -m faceflow data synth --annotated DIR --split train --pairs 2000 --out OUT``.

Every pair is a random morphable-model head (ICT FaceKit, the ``full`` variant: skin, eyeballs,
teeth, tongue, mouth and eye sockets, so the eye and mouth openings never show the background)
seen in two frames:

- identity ``i ~ N(0, 1)``; expressions from a real fitted sequence of the split (frames t and
  t + g of an annotated clip, g in 1..6) or a sparse random blendshape mix and a small change of
  it; sometimes the same expression twice (pure head motion);
- head pose of frame 1 (yaw, pitch, roll, favouring near-frontal) and a small pose change for
  frame 2 (rotation, translation, scale), sometimes none;
- registration as at inference: frame 1's 68 landmarks are aligned to the template
  (:func:`faceflow.registration.estimate_similarity`) and the SAME similarity is applied to both
  frames, so I1 is registered like a real frame and I2 is expressed in I1's frame;
- appearance: per-vertex colours sampled from real registered frames of the split through their
  fitted meshes (a cached texture bank), a procedural iris, teeth and mouth, Lambert light,
  colour jitter shared by both frames (plus a +-3% brightness change), a blurred real
  background of the split, mild noise.

Ground truth, all at the 224 x 224 template of frame 1 (the pair-sample contract):
``flow`` is eq. (2) of DeepFaceFlow on the inner face (``'face'`` subset), valid on ``mask``, the
I1 pixels whose visible surface (z-buffer of the whole head) is an inner-face triangle;
``head_flow`` is the flow to frame 2's pose with frame 1's expression on the same pixels;
``pncc`` is eq. (3) of the ``'meshreg'`` mesh of frame 1 (what DFFNet sees at inference);
``mesh1`` / ``mesh2`` are the ``'meshreg'`` vertices of both frames.

Pair k depends only on (config, k) and the texture bank (itself a function of the config), so
generation resumes after an interruption and may be split across processes. Storage: see
:data:`LAYOUT`; a directory is complete when ``manifest.json`` (written last) exists.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from .. import io as fio
from ..errors import FaceflowError

SIZE = 224  # the registered template (faceflow.registration.TEMPLATE_SIZE)
FORMAT = "faceflow-synthetic/1"
_EXTENT_CM = 22.0  # head height used to frame the unregistered render (chin to crown)

LAYOUT = {
    "i1.npy": "(N, 224, 224, 3) uint8 RGB frame 1, registered to the 68-point template",
    "i2.npy": "(N, 224, 224, 3) uint8 RGB frame 2 in frame 1's registered frame",
    "pncc.npy": "(N, 224, 224, 3) float16 PNCC of frame 1's 'meshreg' mesh (eq. (3), default depth range), 0 off it",
    "mask.npy": "(N, 224, 224) bool frame-1 pixels whose visible surface is the inner face ('face' subset)",
    "flow.npy": "(N, 224, 224, 3) float16 3D flow 1 -> 2 in template pixels (eq. (2)), 0 off the mask",
    "head_flow.npy": "(N, 224, 224, 3) float16 flow to frame 2's pose with frame 1's expression, 0 off the mask",
    "mesh1.npy": "(N, 2713, 3) float32 'meshreg' vertices of frame 1, template pixels (z depth, smaller = nearer)",
    "mesh2.npy": "(N, 2713, 3) float32 'meshreg' vertices of frame 2, same space",
    "identity.npy": "(N,) int64 synthetic identity index (pair k // pairs_per_identity)",
    "id.npy": "(N, 100) float32 identity coefficients",
    "exp1.npy": "(N, 53) float32 expression of frame 1", "exp2.npy": "(N, 53) float32 expression of frame 2",
    "pose1.npy": "(N, 3) float32 frame-1 head angles (pitch, yaw, roll), degrees",
    "pose_change.npy": "(N, 6) float32 frame 2: rotation change (pitch, yaw, roll) degrees, "
                       "translation (x, y) template px, relative scale change",
    "transform.npy": "(N, 2, 3) float64 similarity render frame -> template (from frame 1's landmarks)",
    "light.npy": "(N, 4) float32 direction toward the light (image space, x right, y down, z into the screen) "
                 "and ambient",
    "texture.npy": "(N,) int64 index into textures.npz",
    "exp_source.npy": "(N, 3) int64 clip index (into config sources), frame t, gap g of a real expression "
                      "pair (frames t and t + g, in either order); -1 for a random mix",
    "background.npy": "(N, 2) int64 clip index and kept-frame index of the background",
}

_TEMPLATE_ARRAYS = {  # name: (trailing shape, dtype) of the per-pair arrays
    "i1": ((SIZE, SIZE, 3), np.uint8), "i2": ((SIZE, SIZE, 3), np.uint8),
    "pncc": ((SIZE, SIZE, 3), np.float16), "mask": ((SIZE, SIZE), np.bool_),
    "flow": ((SIZE, SIZE, 3), np.float16), "head_flow": ((SIZE, SIZE, 3), np.float16),
    "identity": ((), np.int64),
    "id": ((100,), np.float32), "exp1": ((53,), np.float32), "exp2": ((53,), np.float32),
    "pose1": ((3,), np.float32), "pose_change": ((6,), np.float32), "transform": ((2, 3), np.float64),
    "light": ((4,), np.float32), "texture": ((), np.int64), "exp_source": ((3,), np.int64),
    "background": ((2,), np.int64),
}

# procedural albedo of the parts a real frame rarely shows (RGB in [0, 1])
_INNER_COLOURS = {
    "mouth_socket": (0.30, 0.10, 0.10), "gums_tongue": (0.62, 0.28, 0.28), "teeth": (0.90, 0.87, 0.78),
    "eye_socket_left": (0.55, 0.32, 0.30), "eye_socket_right": (0.55, 0.32, 0.30),
}
_IRIS_COLOURS = ((0.33, 0.19, 0.09), (0.18, 0.10, 0.05), (0.30, 0.44, 0.58), (0.34, 0.44, 0.30),
                 (0.45, 0.34, 0.19), (0.40, 0.42, 0.44))
_IRIS_DEG, _PUPIL_DEG = 34.0, 14.0  # angular radii on the eyeball, seen from its centre


@dataclass
class SyntheticConfig:
    """Everything that determines a synthetic set (saved as ``config.json``).

    Angles in degrees, translations in template pixels. ``sources`` (clip stems) is filled in
    by :func:`generate` from the annotated clips of ``split``.
    """

    split: str = "train"
    num_pairs: int = 2000
    seed: int = 0
    textures: int = 50  # texture bank size (real frames of the split)
    pairs_per_identity: int = 1  # consecutive pairs sharing identity and texture
    id_scale: float = 1.0  # std of the identity draw
    # expressions
    real_exp_prob: float = 0.6
    max_gap: int = 6
    same_exp_prob: float = 0.15
    max_active: int = 5  # active blendshapes of a random mix (1..max_active)
    exp_change: float = 0.15  # std of the frame-2 change of a random mix
    # head pose of frame 1: truncated normals
    yaw_std: float = 20.0
    yaw_max: float = 45.0
    pitch_std: float = 10.0
    pitch_max: float = 25.0
    roll_std: float = 6.0
    roll_max: float = 15.0
    # pose change of frame 2: truncated normals
    rot_change_std: float = 2.5
    rot_change_max: float = 6.0
    trans_change_std: float = 2.5
    trans_change_max: float = 6.0
    scale_change_std: float = 0.02
    scale_change_max: float = 0.05
    still_prob: float = 0.1  # no pose change at all
    # light and colour
    light_max_angle: float = 60.0  # light direction within this angle of the viewing direction
    ambient: tuple[float, float] = (0.3, 0.65)
    brightness: float = 0.25  # factor in 1 +- brightness
    contrast: float = 0.25
    gain: float = 0.1  # per-channel gain in 1 +- gain
    hue: float = 0.04  # hue rotation in turns
    pair_brightness: float = 0.03  # extra brightness change of I2
    noise_prob: float = 0.5
    noise_max: float = 0.02  # Gaussian noise std (images in [0, 1])
    # background
    bg_scale: tuple[float, float] = (0.45, 1.0)  # side of the background window / crop size
    bg_blur: tuple[float, float] = (0.5, 2.0)  # Gaussian sigma in pixels
    bg_shift_prob: float = 0.3
    bg_shift_max: int = 2
    bg_remove_face: bool = True  # fill the real face of the background frame from its surroundings
    # bookkeeping (not part of the data's identity)
    chunk: int = 64
    previews: int = 4
    sources: list[str] = field(default_factory=list)

    def signature(self) -> dict:
        """The fields that must match to resume: all but num_pairs, chunk and previews."""
        d = json.loads(json.dumps(asdict(self)))
        for k in ("num_pairs", "chunk", "previews"):
            d.pop(k)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise FaceflowError(f"unknown synthetic config field(s) {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(getattr(cls, k, None), tuple) else v) for k, v in d.items()}
        return cls(**kw)

    def validate(self) -> None:
        from .splits import SPLITS

        if self.split not in SPLITS:
            raise FaceflowError(f"unknown split {self.split!r}; choose one of {list(SPLITS)}")
        for name in ("num_pairs", "textures", "pairs_per_identity", "max_gap", "max_active", "chunk"):
            if int(getattr(self, name)) < 1:
                raise FaceflowError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("real_exp_prob", "same_exp_prob", "still_prob", "noise_prob", "bg_shift_prob"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise FaceflowError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        lo, hi = self.bg_scale
        if not 0 < lo <= hi <= 1:
            raise FaceflowError(f"bg_scale must satisfy 0 < lo <= hi <= 1, got {self.bg_scale}")
        if self.max_active > 53:
            raise FaceflowError(f"max_active must be <= 53, got {self.max_active}")


# ---------------------------------------------------------------------- geometry

@dataclass
class HeadGeometry:
    """The render mesh: the skin model's vertices first (exactly the ``skin`` model, so the
    ``face`` and ``meshreg`` subsets index it directly), then the ``full`` model's inner parts
    (mouth and eye sockets, gums, tongue, teeth, eyeballs; not the eyelash cards).

    triangles (F, 3): the full model's render triangles, the ``face`` subset's first
    (``num_face_triangles`` of them, so a pixel shows the inner face iff its triangle id is below
    that); face_idx / face_triangles and meshreg_idx / meshreg_triangles: the skin model's
    ``face`` and ``meshreg`` subsets; region (V,) region index per vertex; eye_angle (V,) degrees
    from the eyeball's axis (NaN off the eyeballs); adjacency: row-normalised scipy sparse matrix over skin vertices.
    """

    mean: torch.Tensor
    id_basis: torch.Tensor
    exp_basis: torch.Tensor
    triangles: torch.Tensor
    num_face_triangles: int
    num_skin: int
    region: torch.Tensor
    region_names: list[str]
    lmk68: torch.Tensor
    face_idx: torch.Tensor
    face_triangles: torch.Tensor
    meshreg_idx: torch.Tensor
    meshreg_triangles: torch.Tensor
    eye_angle: np.ndarray
    adjacency: object

    @property
    def num_vertices(self) -> int:
        return self.mean.shape[0]

    def shape(self, id_coeffs: torch.Tensor, exp_coeffs: torch.Tensor, vertex_idx=None) -> torch.Tensor:
        """Model-space vertices (B, V, 3) of identities (B, 100) and expressions (B, 53);
        only the vertices ``vertex_idx`` (N,) when given: (B, N, 3)."""
        mean, ub, eb = self.mean, self.id_basis, self.exp_basis
        if vertex_idx is not None:
            mean, ub, eb = mean[vertex_idx], ub[:, vertex_idx], eb[:, vertex_idx]
        # eq. (1) of DeepFaceFlow
        out = mean + torch.einsum("bk,kvc->bvc", id_coeffs.to(mean), ub)
        return out + torch.einsum("bk,kvc->bvc", exp_coeffs.to(mean), eb)


def load_geometry(device: str | torch.device = "cpu") -> HeadGeometry:
    """Build the :class:`HeadGeometry` from the ICT FaceKit ``skin`` and ``full`` variants."""
    import scipy.sparse as sp

    from ..morphable import MorphableModel

    skin = MorphableModel.load("skin")
    full = MorphableModel.load("full")
    ns = skin.num_vertices
    if full.num_vertices <= ns or not torch.allclose(full.mean[:ns], skin.mean, atol=1e-2):
        raise FaceflowError("the full ICT FaceKit variant does not extend the skin variant's vertices")
    mean = torch.cat([skin.mean, full.mean[ns:]])
    id_basis = torch.cat([skin.id_basis, full.id_basis[:, ns:]], 1)
    exp_basis = torch.cat([skin.exp_basis, full.exp_basis[:, ns:]], 1)
    face = skin.subset("face")
    face_tris = face.indices[face.triangles]  # global indices, the skin model's winding
    tris = full.render_triangles
    V = full.num_vertices
    # eyelashes are cards meant for alpha blending: opaque, they read as thick eyeliner
    lashes = [i for i, n in enumerate(full.region_names) if n.startswith("eyelashes")]
    tris = tris[~torch.isin(full.vertex_region[tris], torch.tensor(lashes)).any(1)]

    def key(t):
        s = t.sort(1).values
        return (s[:, 0] * V + s[:, 1]) * V + s[:, 2]

    is_face = torch.isin(key(tris), key(face_tris))
    if int(is_face.sum()) != face_tris.shape[0]:
        raise FaceflowError("the inner-face triangles are not all render triangles of the full model")
    triangles = torch.cat([face_tris, tris[~is_face]])
    meshreg = skin.subset("meshreg")
    region = full.vertex_region.clone()
    # eyeballs: angle of each vertex from the axis through the sphere centre and the cornea apex
    eye_angle = np.full(V, np.nan)
    for name in ("eyeball_left", "eyeball_right"):
        idx = torch.nonzero(region == full.region_names.index(name)).squeeze(1).numpy()
        P = mean[idx].double().numpy()
        A = np.concatenate([2 * P, np.ones((len(P), 1))], 1)
        sol = np.linalg.lstsq(A, (P ** 2).sum(1), rcond=None)[0]
        c = sol[:3]
        apex = P[np.argmax(P[:, 2])]
        axis = (apex - c) / np.linalg.norm(apex - c)
        d = P - c
        cos = d @ axis / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        eye_angle[idx] = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    st = triangles[(triangles < ns).all(1)].numpy()
    rows = np.concatenate([st[:, 0], st[:, 1], st[:, 2], st[:, 1], st[:, 2], st[:, 0]])
    cols = np.concatenate([st[:, 1], st[:, 2], st[:, 0], st[:, 0], st[:, 1], st[:, 2]])
    A = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(ns, ns)).tocsr()
    A.data[:] = 1.0
    deg = np.asarray(A.sum(1)).ravel()
    adjacency = sp.diags(1.0 / np.maximum(deg, 1)) @ A
    dev = torch.device(device)
    return HeadGeometry(mean.to(dev), id_basis.to(dev), exp_basis.to(dev), triangles.to(dev),
                        int(face_tris.shape[0]), ns, region.to(dev), list(full.region_names), skin.lmk68.to(dev),
                        face.indices.to(dev), face.triangles.to(dev), meshreg.indices.to(dev),
                        meshreg.triangles.to(dev), eye_angle, adjacency.tocsr())


# ---------------------------------------------------------------------- annotated clips

@dataclass
class Clip:
    """One annotated clip (output of ``python -m faceflow annotate``): the arrays the generator
    reads. crops (N, S, S, 3) uint8 memmap; id (100,); exp (N, 53); rotation (N, 3, 3),
    translation (N, 3), scale (N,): the fitted cameras in crop pixels; segment (N,); face_mask
    (N, S, S) bool memmap of the fitted inner face, when the annotation has it."""

    stem: str
    path: Path
    split: str
    crops: np.ndarray
    id: np.ndarray
    exp: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    segment: np.ndarray
    face_mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.exp)


_CLIP_FILES = ("crops.npy", "id.npy", "exp.npy", "camera_rotation.npy", "camera_translation.npy",
               "camera_scale.npy")


def _clip_stem(path: Path) -> str:
    from .pseudo import clip_stem, read_manifest

    return clip_stem(path, read_manifest(path))


def load_clip(path: str | Path, split: str) -> Clip:
    """Open an annotated clip directory (it must hold ``manifest.json``, i.e. be complete)."""
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise FaceflowError(f"{path} is not a complete annotated clip (no manifest.json); finish it with "
                            f"python -m faceflow annotate VIDEO {path}")
    data = path / "data"
    missing = [n for n in _CLIP_FILES if not (data / n).is_file()]
    if missing:
        raise FaceflowError(f"annotated clip {path} lacks {', '.join('data/' + n for n in missing)}")
    ld = lambda n, **kw: np.load(data / n, allow_pickle=False, **kw)  # noqa: E731
    crops = ld("crops.npy", mmap_mode="r")
    exp = ld("exp.npy").astype(np.float32)
    n = len(exp)
    seg = ld("segment.npy").astype(np.int64) if (data / "segment.npy").is_file() else np.zeros(n, np.int64)
    clip = Clip(_clip_stem(path), path, split, crops, ld("id.npy").astype(np.float32).reshape(-1), exp,
                ld("camera_rotation.npy").astype(np.float32), ld("camera_translation.npy").astype(np.float32),
                ld("camera_scale.npy").astype(np.float32).reshape(-1), seg)
    if (data / "face_mask.npy").is_file():
        fm = ld("face_mask.npy", mmap_mode="r")
        if fm.shape == crops.shape[:3]:
            clip.face_mask = fm
    shapes = {"crops": crops.shape[0], "camera_rotation": len(clip.rotation),
              "camera_translation": len(clip.translation), "camera_scale": len(clip.scale), "segment": len(seg)}
    bad = {k: v for k, v in shapes.items() if v != n}
    if n == 0 or bad or crops.ndim != 4 or crops.shape[1] != crops.shape[2] or crops.shape[3] != 3:
        raise FaceflowError(f"annotated clip {path} is inconsistent: {n} expressions, crops {crops.shape}, "
                            f"other lengths {shapes}")
    return clip


def find_clips(sources, split: str) -> list[Clip]:
    """The annotated clips of ``split`` among ``sources``: a directory holding annotated clips
    (its complete sub-directories of that split are used; others are skipped), one clip directory,
    or a list of either. An explicitly named clip of another split is an error (it would leak
    across the identity split). Sorted by stem."""
    from .splits import clips as split_clips
    from .splits import split_of

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [Path(s) for s in sources]
    if not sources:
        raise FaceflowError("no annotated clips given (pass --annotated DIR)")
    found: dict[str, Clip] = {}
    for src in sources:
        if not src.is_dir():
            raise FaceflowError(f"annotated clips: {src} is not a directory")
        if (src / "manifest.json").is_file():
            stem = _clip_stem(src)
            s = _split_of(split_of, stem, src)
            if s != split:
                raise FaceflowError(f"{src} is clip {stem!r} of the {s} split, not of {split}: using it would "
                                    "leak across the identity split")
            found.setdefault(stem, load_clip(src, split))
            continue
        if (src / "data").is_dir() or (src / "state.json").is_file():
            raise FaceflowError(f"{src} is an incomplete annotated clip (no manifest.json); finish it with "
                                f"python -m faceflow annotate VIDEO {src}")
        for sub in sorted(p for p in src.iterdir() if p.is_dir()):
            if not (sub / "manifest.json").is_file():
                continue  # not an annotated clip, or still being written
            stem = _clip_stem(sub)
            try:
                s = split_of(stem)
            except (FaceflowError, KeyError, ValueError):
                continue  # not in the split table: never used
            if s == split and stem not in found:
                found[stem] = load_clip(sub, split)
    if not found:
        where = ", ".join(str(s) for s in sources)
        try:
            wanted = ", ".join(split_clips(split))
        except Exception:  # noqa: BLE001 (only for the message)
            wanted = "?"
        raise FaceflowError(f"no complete annotated clip of the {split!r} split in {where} (clips of that split: "
                            f"{wanted}); make them with: python -m faceflow annotate VIDEO "
                            f"{sources[0]}/<clip_stem> --max-frames 300 --gap-stride 4")
    return [found[k] for k in sorted(found)]


def _split_of(split_of, stem: str, path: Path) -> str:
    try:
        return split_of(stem)
    except (KeyError, ValueError) as e:
        raise FaceflowError(f"{path}: clip {stem!r} is not in the identity split table ({e})") from e


# ---------------------------------------------------------------------- textures

def _project(verts: torch.Tensor, rotation, translation, scale) -> torch.Tensor:
    from ..camera import project

    t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).reshape(1, *np.shape(a))  # noqa: E731
    return project(verts, t(rotation), t(translation), t(scale).reshape(1))


def sample_texture(geom: HeadGeometry, crop: np.ndarray, id_coeffs, exp, rotation, translation, scale, *,
                   min_facing: float = 0.3, depth_tol_cm: float = 0.3, fill_iterations: int = 300):
    """Per-vertex colours of the skin vertices from one real frame through its fitted mesh.

    crop (S, S, 3) uint8; id_coeffs (100,), exp (53,); rotation (3, 3), translation (3,), scale:
    the fitted camera in crop pixels (``p = scale C R S + t``, :mod:`faceflow.camera`). A vertex
    is seen when it projects inside the crop, faces the camera (normal z < -min_facing) and
    passes the depth test against the rasterised head. Seen vertices get the bilinearly sampled
    colour; the others a smooth fill (neighbour averaging started from the median colour of the
    seen inner-face vertices). Returns colours (num_skin, 3) float32 in [0, 1], seen (num_skin,) bool.
    """
    from ..render import rasterize, vertex_normals

    H, W = crop.shape[:2]
    ns = geom.num_skin
    with torch.no_grad():
        S = geom.shape(torch.as_tensor(np.asarray(id_coeffs, np.float32))[None],
                       torch.as_tensor(np.asarray(exp, np.float32))[None])
        v = _project(S, rotation, translation, scale)  # (1, V, 3) crop pixels
        frags = rasterize(v, geom.triangles, (H, W), cull_backfaces=True)
        n = vertex_normals(v, geom.triangles)[0, :ns]
        p = v[0, :ns]
        col, row = p[:, 0].floor().long(), p[:, 1].floor().long()
        inside = (p[:, 0] >= 0.5) & (p[:, 0] <= W - 0.5) & (p[:, 1] >= 0.5) & (p[:, 1] <= H - 0.5)
        r, c = row.clamp(0, H - 1), col.clamp(0, W - 1)
        tol = depth_tol_cm * float(np.asarray(scale))
        seen = inside & frags.mask[0, r, c] & (p[:, 2] <= frags.depth[0, r, c] + tol) & (n[:, 2] < -min_facing)
        img = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        grid = torch.stack([p[:, 0] / W * 2 - 1, p[:, 1] / H * 2 - 1], -1).view(1, 1, -1, 2)
        colours = torch.nn.functional.grid_sample(img, grid, mode="bilinear", padding_mode="border",
                                                  align_corners=False)[0, :, 0].T.numpy()
    seen = seen.numpy()
    return _smooth_fill(geom, colours.astype(np.float32), seen, fill_iterations), seen


def _smooth_fill(geom: HeadGeometry, colours: np.ndarray, seen: np.ndarray, iterations: int) -> np.ndarray:
    """Unseen vertices: neighbour averaging over the mesh with the seen ones held fixed."""
    face = np.zeros(geom.num_skin, bool)
    face[geom.face_idx.cpu().numpy()] = True
    ref = seen & face if (seen & face).any() else seen
    start = np.median(colours[ref], 0) if ref.any() else np.full(3, 0.6)
    x = np.where(seen[:, None], colours, start[None]).astype(np.float64)
    fixed = x[seen]
    for _ in range(iterations):
        x = geom.adjacency @ x
        x[seen] = fixed
    return np.clip(x, 0, 1).astype(np.float32)


def build_texture_bank(geom: HeadGeometry, clips: list[Clip], count: int, seed: int,
                       progress: bool = False) -> dict[str, np.ndarray]:
    """``count`` skin textures from random frames of ``clips`` (texture j from (seed, j) alone).

    Returns colours (count, num_skin, 3) uint8, seen (count, num_skin) bool, clip (count,) int64
    (index into ``clips``), frame (count,) int64 (kept-frame index).
    """
    from tqdm import tqdm

    cols, seens, cl, fr = [], [], [], []
    for j in tqdm(range(count), desc="textures", unit="tex", disable=not progress):
        rng = np.random.default_rng([seed, 2, j])
        ci = int(rng.integers(len(clips)))
        c = clips[ci]
        f = int(rng.integers(len(c)))
        col, seen = sample_texture(geom, np.asarray(c.crops[f]), c.id, c.exp[f], c.rotation[f], c.translation[f],
                                   c.scale[f])
        cols.append(np.round(col * 255).astype(np.uint8))
        seens.append(seen)
        cl.append(ci)
        fr.append(f)
    return {"colours": np.stack(cols), "seen": np.stack(seens), "clip": np.array(cl, np.int64),
            "frame": np.array(fr, np.int64)}


# ---------------------------------------------------------------------- sampling

@dataclass
class PairParams:
    """Everything that determines pair ``index`` (see :func:`sample_params`)."""

    index: int
    identity: int
    id: np.ndarray  # (100,)
    texture: int
    iris: tuple[float, float, float]
    teeth: float  # brightness of the teeth and the sclera
    exp1: np.ndarray  # (53,)
    exp2: np.ndarray
    exp_source: tuple[int, int, int]  # clip, t, g (-1, -1, -1: random mix)
    pose1: np.ndarray  # (3,) pitch, yaw, roll in degrees
    rot_change: np.ndarray  # (3,) degrees
    trans_change: np.ndarray  # (2,) template pixels
    scale_change: float
    light: np.ndarray  # (3,) direction toward the light, image space
    ambient: float
    bg_clip: int
    bg_frame: int
    bg_box: tuple[int, int, int]  # x0, y0, side in crop pixels
    bg_flip: bool
    bg_blur: float
    bg_shift: tuple[int, int]  # (dx, dy) of I2's background
    brightness: float
    contrast: float
    gains: tuple[float, float, float]
    hue: float
    pair_brightness: float
    noise: float
    noise_seed: int


def _truncnorm(rng: np.random.Generator, std: float, limit: float) -> float:
    if std <= 0 or limit <= 0:
        return 0.0
    while True:
        x = float(rng.normal(0.0, std))
        if abs(x) <= limit:
            return x


def sample_params(cfg: SyntheticConfig, clips: list[Clip], num_textures: int, k: int) -> PairParams:
    """The random draws of pair ``k`` from ``numpy.random.default_rng([seed, 0, k])`` (identity,
    texture and eye colour from ``[seed, 1, k // pairs_per_identity]``): reproducible from
    (config, k) alone."""
    u = k // cfg.pairs_per_identity
    rid = np.random.default_rng([cfg.seed, 1, u])
    id_coeffs = (rid.standard_normal(100) * cfg.id_scale).astype(np.float32)
    texture = int(rid.integers(num_textures))
    iris = np.array(_IRIS_COLOURS[int(rid.integers(len(_IRIS_COLOURS)))]) * rid.uniform(0.8, 1.2)
    teeth = float(rid.uniform(0.75, 1.0))

    rng = np.random.default_rng([cfg.seed, 0, k])
    exp1, exp2, source = None, None, (-1, -1, -1)
    if rng.random() < cfg.real_exp_prob:
        ci = int(rng.integers(len(clips)))
        c = clips[ci]
        g = int(rng.integers(1, cfg.max_gap + 1))
        for _ in range(8):
            if len(c) <= g:
                g = max(1, len(c) - 1)
            if len(c) <= g:
                break
            t = int(rng.integers(len(c) - g))
            if c.segment[t] == c.segment[t + g]:
                exp1, exp2 = c.exp[t].copy(), c.exp[t + g].copy()
                source = (ci, t, g)
                if rng.random() < 0.5:  # play it backwards
                    exp1, exp2 = exp2, exp1
                break
    if exp1 is None:
        exp1 = np.zeros(53, np.float32)
        n = int(rng.integers(1, cfg.max_active + 1))
        act = rng.choice(53, n, replace=False)
        exp1[act] = rng.uniform(0, 1, n)
        exp2 = exp1.copy()
        exp2[act] += rng.normal(0, cfg.exp_change, n)
        if rng.random() < 0.5:
            extra = int(rng.integers(53))
            exp2[extra] += rng.uniform(0, 0.4)
        exp2 = np.clip(exp2, 0, 1)
    if rng.random() < cfg.same_exp_prob:
        exp2 = exp1.copy()
    pose1 = np.array([_truncnorm(rng, cfg.pitch_std, cfg.pitch_max), _truncnorm(rng, cfg.yaw_std, cfg.yaw_max),
                      _truncnorm(rng, cfg.roll_std, cfg.roll_max)], np.float32)
    if rng.random() < cfg.still_prob:
        rot, trans, dscale = np.zeros(3, np.float32), np.zeros(2, np.float32), 0.0
    else:
        rot = np.array([_truncnorm(rng, cfg.rot_change_std, cfg.rot_change_max) for _ in range(3)], np.float32)
        trans = np.array([_truncnorm(rng, cfg.trans_change_std, cfg.trans_change_max) for _ in range(2)], np.float32)
        dscale = _truncnorm(rng, cfg.scale_change_std, cfg.scale_change_max)
    a = math.radians(rng.uniform(0, cfg.light_max_angle))
    phi = rng.uniform(0, 2 * math.pi)
    light = np.array([math.sin(a) * math.cos(phi), math.sin(a) * math.sin(phi), -math.cos(a)], np.float32)
    ambient = float(rng.uniform(*cfg.ambient))
    bc = int(rng.integers(len(clips)))
    bf = int(rng.integers(len(clips[bc])))
    S = clips[bc].crops.shape[1]
    side = max(8, int(round(rng.uniform(*cfg.bg_scale) * S)))
    box = (int(rng.integers(S - side + 1)), int(rng.integers(S - side + 1)), side)
    flip = bool(rng.random() < 0.5)
    blur = float(rng.uniform(*cfg.bg_blur))
    shift = (0, 0)
    if rng.random() < cfg.bg_shift_prob:
        shift = tuple(int(x) for x in rng.integers(-cfg.bg_shift_max, cfg.bg_shift_max + 1, 2))
    brightness = float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness))
    contrast = float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast))
    gains = tuple(float(x) for x in rng.uniform(1 - cfg.gain, 1 + cfg.gain, 3))
    hue = float(rng.uniform(-cfg.hue, cfg.hue))
    pair_b = float(rng.uniform(-cfg.pair_brightness, cfg.pair_brightness))
    noise = float(rng.uniform(0, cfg.noise_max)) if rng.random() < cfg.noise_prob else 0.0
    return PairParams(k, u, id_coeffs, texture, tuple(float(x) for x in iris), teeth,
                      np.asarray(exp1, np.float32), np.asarray(exp2, np.float32), source, pose1, rot, trans, dscale,
                      light, ambient, bc, bf, box, flip, blur, shift, brightness, contrast, gains, hue, pair_b, noise,
                      int(rng.integers(2 ** 31)))


# ---------------------------------------------------------------------- rendering

def pose_meshes(geom: HeadGeometry, p: PairParams):
    """Template-space meshes (V, 3) of the pair: frame 1, frame 2 and frame 2's pose with frame
    1's expression (head motion only), plus the registration similarity (render frame -> template).

    Frame 1 is framed by :func:`faceflow.camera.frame_face` at the pose ``p.pose1``; its 68
    landmarks are aligned to :func:`~faceflow.registration.template_landmarks`. Depth gauge: the
    model origin is at depth 0 in both frames, as in the annotation tool's fits and
    :func:`faceflow.nets.tasks.meshreg_template` (the depth translation is unobservable). Frame 2 rotates by
    ``p.rot_change`` (about axes fixed to the camera, pivot 8 cm behind the landmarks' centre),
    scales by ``1 + p.scale_change`` and moves by ``p.trans_change`` template pixels.
    """
    from ..camera import euler_to_rotation, frame_face, project
    from ..registration import estimate_similarity, template_landmarks

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
    import cv2

    from ..render import rasterize

    H, W = img.shape[:2]
    if clip.face_mask is not None:
        m = np.asarray(clip.face_mask[f])
    else:
        with torch.no_grad():
            S = geom.shape(torch.from_numpy(clip.id)[None], torch.from_numpy(clip.exp[f])[None],
                           geom.face_idx)
            v = _project(S, clip.rotation[f], clip.translation[f], clip.scale[f])
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
    import cv2

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
    import cv2

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
    flow, head_flow float32; mask bool; mesh1, mesh2 (2713, 3)) plus ``verts`` (3, V, 3): the
    template-space render meshes of frame 1, frame 2 and the head-motion-only frame, and
    ``transform`` (2, 3). ``skin_colours`` (num_skin, 3): the texture bank entry ``p.texture``."""
    from ..render import Fragments, flow_ground_truth, pncc, rasterize, shade

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


def pair_record(p: PairParams, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-pair entries of every array of :data:`LAYOUT` (one row each)."""
    return {
        "i1": arrays["i1"], "i2": arrays["i2"], "pncc": arrays["pncc"].astype(np.float16), "mask": arrays["mask"],
        "flow": arrays["flow"].astype(np.float16), "head_flow": arrays["head_flow"].astype(np.float16),
        "mesh1": arrays["mesh1"], "mesh2": arrays["mesh2"], "identity": np.int64(p.identity),
        "id": p.id, "exp1": p.exp1, "exp2": p.exp2, "pose1": p.pose1,
        "pose_change": np.concatenate([p.rot_change, p.trans_change, [p.scale_change]]).astype(np.float32),
        "transform": arrays["transform"], "light": np.append(p.light, p.ambient).astype(np.float32),
        "texture": np.int64(p.texture), "exp_source": np.array(p.exp_source, np.int64),
        "background": np.array([p.bg_clip, p.bg_frame], np.int64),
    }


# ---------------------------------------------------------------------- generation

@dataclass
class Generator:
    """What rendering needs, loaded once: the config, the clips of its split, the geometry and
    the texture bank (see :func:`prepare`)."""

    config: SyntheticConfig
    clips: list[Clip]
    geometry: HeadGeometry
    bank: dict[str, np.ndarray]

    def params(self, k: int) -> PairParams:
        return sample_params(self.config, self.clips, len(self.bank["colours"]), k)

    def render(self, p: PairParams) -> dict[str, np.ndarray]:
        return render_pair(self.geometry, self.bank["colours"][p.texture], self.clips, self.config, p)

    def pair(self, k: int) -> dict[str, np.ndarray]:
        """Pair ``k`` as stored (:func:`pair_record`)."""
        p = self.params(k)
        return pair_record(p, self.render(p))


def prepare(config: SyntheticConfig, sources, bank_path: str | Path | None = None,
            progress: bool = False) -> Generator:
    """Load the clips of ``config.split`` from ``sources`` (see :func:`find_clips`), the geometry
    and the texture bank (read from / cached at ``bank_path`` when given). Returns a
    :class:`Generator` whose config lists the source stems."""
    config.validate()
    clips = find_clips(sources, config.split)
    stems = [c.stem for c in clips]
    if config.sources and config.sources != stems:
        raise FaceflowError(f"the config names source clips {config.sources} but {sources} holds {stems}")
    config = replace(config, sources=stems)
    geom = load_geometry()
    bank = None
    if bank_path is not None and Path(bank_path).is_file():
        with np.load(bank_path, allow_pickle=False) as d:
            bank = {k: d[k] for k in d.files}
        ok = (len(bank.get("colours", ())) == config.textures and list(bank.get("stems", [])) == stems
              and int(bank.get("seed", -1)) == config.seed)
        if not ok:
            bank = None
    if bank is None:
        bank = build_texture_bank(geom, clips, config.textures, config.seed, progress=progress)
        bank["stems"] = np.array(stems)
        bank["seed"] = np.int64(config.seed)
        if bank_path is not None:
            fio.save_npz(bank_path, **bank)
    return Generator(config, clips, geom, bank)


class _State:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"done": 0}

    @property
    def done(self) -> int:
        return int(self.data.get("done", 0))

    def save(self, **kw) -> None:
        self.data.update(kw)
        fio.save_json(self.path, self.data)


def _open_array(path: Path, n: int, tail: tuple, dtype, keep: int) -> np.ndarray:
    """Open ``path`` as an (n, *tail) memmap; an existing one of another length keeps its first
    ``keep`` rows (written to a temporary file, then swapped in)."""
    shape = (n, *tail)
    if path.is_file():
        try:
            old = np.load(path, mmap_mode="r+")
        except (OSError, ValueError):
            old = None
        if old is not None and old.shape == shape and old.dtype == np.dtype(dtype):
            return old
        if old is not None and keep > 0 and old.shape[1:] == tuple(tail) and old.dtype == np.dtype(dtype) \
                and old.shape[0] >= keep:
            tmp = path.with_name(path.stem + ".resize.npy")
            new = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            for s in range(0, keep, 256):
                new[s:min(keep, s + 256)] = old[s:min(keep, s + 256)]
            new.flush()
            del new, old
            os.replace(tmp, path)
            return np.load(path, mmap_mode="r+")
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _array_specs() -> dict[str, tuple[tuple, type]]:
    specs = dict(_TEMPLATE_ARRAYS)
    specs["mesh1"] = ((2713, 3), np.float32)
    specs["mesh2"] = ((2713, 3), np.float32)
    return specs


def generate(out_dir: str | Path, config: SyntheticConfig, sources, *, progress: bool = True,
             overwrite: bool = False, say=print) -> dict:
    """Generate (or resume) ``config.num_pairs`` pairs into ``out_dir``; returns the manifest.

    ``sources``: annotated clips (a directory holding them, clip directories, or a list; see
    :func:`find_clips`); only clips of ``config.split`` are used. Rerunning with the same config
    resumes (a larger ``num_pairs`` extends the set); a different config is refused unless
    ``overwrite`` (which deletes the previous output).
    """
    from tqdm import tqdm

    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"output {out} exists and is not a directory")
    clips = find_clips(sources, config.split)
    config = replace(config, sources=[c.stem for c in clips])
    cfg_path, state_path, man_path = out / "config.json", out / "state.json", out / "manifest.json"
    if overwrite and out.exists():
        for name in ("config.json", "state.json", "manifest.json", "textures.npz"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "data", ignore_errors=True)
        shutil.rmtree(out / "previews", ignore_errors=True)
    if cfg_path.is_file():
        try:
            old = SyntheticConfig.from_dict(json.loads(cfg_path.read_text()))
        except (ValueError, TypeError) as e:
            raise FaceflowError(f"{cfg_path} is unreadable ({e}); pass --overwrite to start again") from e
        a, b = old.signature(), config.signature()
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise FaceflowError(f"{out} holds synthetic pairs made with another configuration (differs in: "
                                f"{', '.join(diff)}); pass --overwrite to replace them or choose another output")
    elif out.is_dir() and any(out.iterdir()) and not (out / "data").is_dir():
        raise FaceflowError(f"{out} is not empty and holds no synthetic pairs; choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    state = _State(state_path)
    if state.data.get("format", FORMAT) != FORMAT:
        raise FaceflowError(f"{out} was made by another version of the generator ({state.data.get('format')}, "
                            f"this is {FORMAT}); pass --overwrite to replace it")
    done = state.done
    if done > config.num_pairs:
        raise FaceflowError(f"{out} already holds {done} pairs; ask for at least {done} or pass --overwrite")
    man_path.unlink(missing_ok=True)  # incomplete until rewritten at the end
    fio.save_json(cfg_path, asdict(config))
    t0 = time.perf_counter()
    gen = prepare(config, [c.path for c in clips], out / "textures.npz", progress=progress)
    data = out / "data"
    data.mkdir(exist_ok=True)
    N = config.num_pairs
    arrays = {name: _open_array(data / f"{name}.npy", N, tail, dtype, done)
              for name, (tail, dtype) in _array_specs().items()}
    if done < N:
        say(f"generating {N - done} synthetic {config.split} pairs from {len(clips)} clip(s)"
            + (f" (resuming at {done})" if done else ""))
    bar = tqdm(total=N, initial=done, unit="pair", desc="synth", disable=not progress)
    t_render = time.perf_counter()
    first = done
    while done < N:
        stop = min(N, done + config.chunk)
        for k in range(done, stop):
            rec = gen.pair(k)
            for name, arr in arrays.items():
                arr[k] = rec[name]
            bar.update(1)
        for arr in arrays.values():
            arr.flush()
        done = stop
        state.save(done=done, num_pairs=N, format=FORMAT)
    bar.close()
    rate = (N - first) / max(time.perf_counter() - t_render, 1e-9) if N > first else None
    del arrays
    previews = write_previews(out, config.previews)
    manifest = {
        "kind": "synthetic", "format": FORMAT, "split": config.split, "num_pairs": N, "size": SIZE,
        "sources": [{"stem": c.stem, "dir": str(c.path.resolve()), "frames": len(c)} for c in clips],
        "textures": int(config.textures), "pairs_per_second": rate,
        "this_run_s": time.perf_counter() - t0, "previews": previews, "layout": LAYOUT, "complete": True,
    }
    fio.save_json(man_path, manifest)
    return manifest


def write_previews(root: str | Path, count: int) -> list[str]:
    """PNG rows of ``count`` pairs of a generated set: I1 | I2 | PNCC | 3D flow | flow - head_flow
    (expression motion), the flows colour-coded on a shared scale (:mod:`faceflow.flowviz`)."""
    from ..flowviz import flow3d_to_rgb, shared_max_magnitude

    root = Path(root)
    data = root / "data"
    if count <= 0:
        return []
    (root / "previews").mkdir(exist_ok=True)
    a = {n: np.load(data / f"{n}.npy", mmap_mode="r") for n in ("i1", "i2", "pncc", "mask", "flow", "head_flow")}
    N = len(a["i1"])
    names = []
    for k in np.unique(np.linspace(0, N - 1, min(count, N)).round().astype(int)):
        m = np.asarray(a["mask"][k])
        fl = np.asarray(a["flow"][k], np.float32)
        ex = fl - np.asarray(a["head_flow"][k], np.float32)
        mx = shared_max_magnitude([fl], [m])
        row = [a["i1"][k], a["i2"][k], (np.asarray(a["pncc"][k], np.float32) * 255).clip(0, 255).astype(np.uint8),
               flow3d_to_rgb(fl, m, mx), flow3d_to_rgb(ex, m, mx)]
        name = f"pair{int(k):06d}.png"
        fio.write_image(root / "previews" / name, np.concatenate(row, 1))
        names.append(name)
    return names


# ---------------------------------------------------------------------- dataset

class SyntheticPairs(torch.utils.data.Dataset):
    """A generated synthetic set as a flow dataset (items follow the pair-sample contract,
    ``kind`` 0, ``has_head_flow`` True).

    ``augment``: False, True (the default :class:`faceflow.data.pseudo.AugmentConfig`) or an
    ``AugmentConfig``: the photometric augmentation of the real pairs
    (:func:`faceflow.data.pseudo.augment_pair`, drawn from torch's global generator).
    """

    _NAMES = ("i1", "i2", "pncc", "mask", "flow", "head_flow", "mesh1", "mesh2", "identity")

    def __init__(self, root: str | Path, augment: bool = False):
        self.root = Path(root)
        man = self.root / "manifest.json"
        if not man.is_file():
            raise FaceflowError(f"{self.root} is not a complete synthetic set (no manifest.json): "
                                "generate it (again) with python -m faceflow data synth ... --out " + str(self.root))
        try:
            self.manifest = json.loads(man.read_text())
        except ValueError as e:
            raise FaceflowError(f"{man} is unreadable: {e}") from e
        if self.manifest.get("kind") != "synthetic":
            raise FaceflowError(f"{self.root} is not a synthetic set (manifest kind {self.manifest.get('kind')!r})")
        missing = [n for n in self._NAMES if not (self.root / "data" / f"{n}.npy").is_file()]
        if missing:
            raise FaceflowError(f"{self.root}/data lacks {', '.join(n + '.npy' for n in missing)}")
        self.num_pairs = int(self.manifest["num_pairs"])
        self.split = self.manifest.get("split")
        if augment is True:
            from .pseudo import AugmentConfig

            augment = AugmentConfig()
        self.augment = augment or None
        self._arrays = None  # opened lazily (per DataLoader worker)

    def __len__(self) -> int:
        return self.num_pairs

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {n: np.load(self.root / "data" / f"{n}.npy", mmap_mode="r") for n in self._NAMES}
            if len(self._arrays["i1"]) < self.num_pairs:
                raise FaceflowError(f"{self.root}: arrays hold {len(self._arrays['i1'])} pairs, the manifest "
                                    f"{self.num_pairs}")
        return self._arrays

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        if k < 0:
            k += self.num_pairs
        if not 0 <= k < self.num_pairs:
            raise IndexError(f"pair {k} out of range for {self.num_pairs} pairs")
        a = self._open()
        t = lambda x, dt=torch.float32: torch.from_numpy(np.array(x, copy=True)).to(dt)  # noqa: E731
        i1, i2 = (t(a[n][k]).permute(2, 0, 1).div_(255.0).contiguous() for n in ("i1", "i2"))
        if self.augment is not None:
            from .pseudo import augment_pair

            i1, i2 = augment_pair(i1, i2, self.augment)
        return {
            "i1": i1, "i2": i2,
            "pncc": t(a["pncc"][k]).permute(2, 0, 1).contiguous(),
            "flow": t(a["flow"][k]), "mask": t(a["mask"][k], torch.bool),
            "head_flow": t(a["head_flow"][k]), "has_head_flow": torch.tensor(True),
            "mesh1": t(a["mesh1"][k]), "mesh2": t(a["mesh2"][k]),
            "identity": torch.tensor(int(a["identity"][k]), dtype=torch.int64),
            "kind": torch.tensor(0, dtype=torch.int64),
        }


# ---------------------------------------------------------------------- command line

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m faceflow data synth``."""
    d = SyntheticConfig()
    p.add_argument("--annotated", required=True, nargs="+", metavar="DIR",
                   help="annotated clips (output of python -m faceflow annotate): a directory holding them or "
                        "clip directories; only complete clips of --split are used")
    p.add_argument("--split", required=True, choices=["train", "val", "test"],
                   help="identity split whose clips give textures, expressions and backgrounds")
    p.add_argument("--out", required=True, type=Path, help="output directory (rerun the same command to resume)")
    p.add_argument("--pairs", type=int, default=d.num_pairs, help="number of pairs (a larger number extends a set)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed; pair k depends only on (seed, k)")
    p.add_argument("--textures", type=int, default=d.textures, help="size of the texture bank (real frames)")
    p.add_argument("--pairs-per-identity", type=int, default=d.pairs_per_identity,
                   help="consecutive pairs sharing a synthetic identity and texture")
    p.add_argument("--previews", type=int, default=d.previews, help="number of preview PNGs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (rendering is many small operations: one thread is usually fastest)")
    p.add_argument("--overwrite", action="store_true", help="replace a set made with another configuration")


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise FaceflowError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    cfg = SyntheticConfig(split=args.split, num_pairs=args.pairs, seed=args.seed, textures=args.textures,
                          pairs_per_identity=args.pairs_per_identity, previews=args.previews)
    m = generate(args.out, cfg, args.annotated, overwrite=args.overwrite)
    rate = m["pairs_per_second"]
    print(f"done: {m['num_pairs']} synthetic {m['split']} pairs from {len(m['sources'])} clip(s) "
          f"({', '.join(s['stem'] for s in m['sources'])})" + (f", {rate:.2f} pairs/s" if rate else "")
          + f" -> {args.out}/manifest.json")
    return 0
