"""Pseudo-ground-truth 3D-flow pairs from annotated real videos (DeepFaceFlow Sec. 3).

:func:`faceflow.annotate.pipeline.annotate` fits the morphable model to every frame of a talking-head
video and stores, per kept frame, the crop, the registered 224 x 224 image, the PNCC, the
fitted coefficients and cameras, and for every consecutive and temporal-gap pair (a, b) the
3D flow a -> b (eq. (2)) in frame a's template (layout: :data:`faceflow.annotate.pipeline.LAYOUT`).
:class:`AnnotatedPairs` serves those pairs as items of the pair-sample contract shared by the
data, training and evaluation code (all at frame a's 224 x 224 registered template):

=================  ======================  =================================================
key                shape, dtype            meaning
=================  ======================  =================================================
``i1``, ``i2``     (3, 224, 224) float32   RGB in [0, 1]; I2 = frame b warped with frame a's
                                           registration, so the flow includes head motion
``pncc``           (3, 224, 224) float32   PNCC of I1 (eq. (3)), 0 off the face
``flow``           (224, 224, 3) float32   3D flow I1 -> I2 in pixels (eq. (2)), 0 off mask
``mask``           (224, 224) bool         I1 pixels where ``flow`` is valid
``head_flow``      (224, 224, 3) float32   flow of the head motion alone (a's expression, b's
                                           camera), 0 off mask; ``has_head_flow`` bool scalar:
                                           whether it was computed (else zeros)
``mesh1/mesh2``    (2713, 3) float32       ``'meshreg'`` vertices of frames a and b in a's
                                           template (what 3DMeshReg regresses)
``identity``       int64 scalar            person index (:func:`faceflow.data.splits.identity_index`)
``kind``           int64 scalar            1 = real pseudo ground truth (0 = synthetic)
=================  ======================  =================================================

Geometry: annotate stores the cameras in crop pixels (``p = f C R S + t``,
:mod:`faceflow.geometry.camera`); a frame's template is reached with the similarity
``aligned_transform`` (x, y by the similarity, z scaled by its scale:
:meth:`~faceflow.geometry.similarity.Similarity.apply_3d`). Meshes of both frames are mapped with
frame a's similarity, exactly as annotate does for ``flow``.

:func:`build_real` annotates every clip of the chosen splits (``python -m faceflow data real``),
:func:`split_dirs` finds the complete annotations of a split and :func:`describe` counts them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from faceflow.annotate.pipeline import AnnotateConfig, annotate
from faceflow.annotate.store import Annotation, read_manifest
from faceflow.data import splits as _splits
from faceflow.errors import FaceflowError
from faceflow.face.registration import warp_image
from faceflow.geometry.camera import project
from faceflow.geometry.morphable import MorphableModel
from faceflow.geometry.similarity import Similarity
from faceflow.io import save_json
from faceflow.render.flow import flow_ground_truth
from faceflow.runtime.provenance import portable_json, portable_path, provenance

TEMPLATE = 224
PAIR_KINDS = {"consecutive": 0, "gap": 1}
KIND_REAL = 1


# ---------------------------------------------------------------------- annotation directories

def clip_stem(directory: str | Path, manifest: dict | None = None) -> str:
    """The clip stem of an annotation directory: the manifest's video stem when it is a clip
    of the split table, else the directory name when that is one, else the video stem."""
    d = Path(directory)
    src = Path(str((manifest or {}).get("source", ""))).stem
    for cand in (src, d.name):
        if cand and cand in _splits._CLIP:
            return cand
    return src or d.name


def _split_or_none(stem: str) -> str | None:
    return _splits.split_of(stem) if stem in _splits._CLIP else None


def split_dirs(annotated_root: str | Path, split: str) -> list[Path]:
    """The complete annotation directories directly under ``annotated_root`` whose clip
    belongs to ``split`` (by the directory name or the manifest's video path), sorted by name.
    Incomplete directories (no ``manifest.json``) and clips outside the split table are left out."""
    _splits._check_split(split)
    root = Path(annotated_root)
    if not root.is_dir():
        raise FaceflowError(f"{root}: annotated root is not a directory")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (d / "manifest.json").is_file():
            continue
        try:
            man = read_manifest(d)
        except FaceflowError:
            continue
        if _split_or_none(clip_stem(d, man)) == split:
            out.append(d)
    return out


# ---------------------------------------------------------------------- geometry

def template_vertices(base: torch.Tensor, exp_basis: torch.Tensor, exp: torch.Tensor, rotation: torch.Tensor,
                      translation: torch.Tensor, scale: torch.Tensor, transform) -> torch.Tensor:
    """Posed meshes in a registered template.

    base (V, 3) = mean + identity part (cm, model space); exp_basis (K, V, 3); exp (B, K);
    cameras rotation (B, 3, 3), translation (B, 3), scale (B,) in crop pixels; ``transform`` a
    :class:`~faceflow.geometry.similarity.Similarity` crop -> template. Returns (B, V, 3): eq. (1)
    shape, ``p = f C R S + t`` (:mod:`faceflow.geometry.camera`), then the similarity (z scaled).
    """

    shape = base.unsqueeze(0) + torch.einsum("bk,kvc->bvc", exp.to(base.dtype), exp_basis)  # eq. (1) of DeepFaceFlow
    return transform.apply_3d(project(shape, rotation, translation, scale))


def head_motion_flow(verts_a: torch.Tensor, verts_head: torch.Tensor, faces: torch.Tensor,
                     size: tuple[int, int] = (TEMPLATE, TEMPLATE)) -> tuple[torch.Tensor, torch.Tensor]:
    """eq. (2) of DeepFaceFlow for the head motion alone: flow (B, H, W, 3) and mask (B, H, W)
    from frame a's mesh (B, V, 3) to the mesh with a's expression under b's camera, both in
    a's template; rasterised like annotate's ``flow`` (same triangles, back faces culled)."""

    return flow_ground_truth(verts_a, verts_head, faces, size, cull_backfaces=True)


# ---------------------------------------------------------------------- dataset

class _Clip:
    """What the dataset keeps of one annotation directory (small arrays; big ones lazily)."""

    def __init__(self, directory: Path, kinds: set[int], mean_face: torch.Tensor, id_basis_face: torch.Tensor,
                 model, cache: int, exp_basis_face: torch.Tensor):
        self.dir = directory
        # either storage form; the compact one draws with the dataset's one copy of the expression basis
        self.ann = Annotation(directory, model=model, cache=cache, exp_basis=exp_basis_face)
        self.ann.require(("aligned_transform", "pairs", "pair_kind") + (
            ("aligned", "pncc", "pncc_mask", "flow") if self.ann.storage == "full" else ()))
        self.manifest = self.ann.manifest
        self.stem = clip_stem(directory, self.manifest)
        load = lambda n: self.ann.small[n]
        pairs, kind = load("pairs"), load("pair_kind")
        sel = np.isin(kind, sorted(kinds))
        self.pairs, self.pair_kind, self.pair_index = pairs[sel], kind[sel], np.flatnonzero(sel)
        self.A = load("aligned_transform")
        self.exp = torch.from_numpy(load("exp").astype(np.float32))
        self.R = torch.from_numpy(load("camera_rotation").astype(np.float32))
        self.t = torch.from_numpy(load("camera_translation").astype(np.float32))
        self.f = torch.from_numpy(load("camera_scale").astype(np.float32))
        ident = torch.from_numpy(load("id").astype(np.float32))
        N = len(self.A)
        if not (len(self.exp) == len(self.R) == len(self.t) == len(self.f) == N):
            raise FaceflowError(f"{directory}: per-frame arrays disagree in length")
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= N):
            raise FaceflowError(f"{directory}: pairs.npy indexes frames outside 0..{N - 1}")
        # mean + identity part of eq. (1), once per clip (the identity is fixed over the video)
        self.base = mean_face + torch.einsum("k,kvc->vc", ident, id_basis_face)
        self.identity = -1  # set by the dataset


class AnnotatedPairs(Dataset):
    """3D-flow pairs of one or more complete annotate output directories (pair-sample contract,
    see the module docstring).

    dirs: a directory or an iterable of them (each must hold ``manifest.json``);
    pair_kinds: which pairs ('consecutive' and/or 'gap'); head_flow: compute each item's
    head-motion flow (``has_head_flow`` True). It is off by default (``head_flow`` zeros,
    ``has_head_flow`` False): training does not read it, and rasterising frame a's mesh for it
    triples an item's cost (about 15 ms instead of 5 ms on one CPU thread). model: a loaded
    :class:`~faceflow.geometry.morphable.MorphableModel` ('skin', as annotate uses) to avoid reloading.
    Either storage form is read (:class:`faceflow.annotate.store.Annotation`): the compact one
    decodes the crops and draws PNCC and flow when an item is read (``cache``: drawn rows kept in
    memory per clip and array). Images are served as stored (training augments them in the task,
    :mod:`faceflow.engine.dff_tasks`).
    Clips outside the split table get identity indices after :data:`~faceflow.data.splits.PERSONS`,
    one per unknown stem (sorted). Arrays are memory-mapped on first use in each process.
    """

    def __init__(self, dirs, pair_kinds=("consecutive", "gap"), head_flow: bool = False, model=None,
                 cache: int = 0):

        if isinstance(dirs, (str, Path)):
            dirs = [dirs]
        dirs = [Path(d) for d in dirs]
        if not dirs:
            raise FaceflowError("AnnotatedPairs needs at least one annotation directory")
        if isinstance(pair_kinds, str):
            pair_kinds = (pair_kinds,)
        bad = set(pair_kinds) - set(PAIR_KINDS)
        if bad or not pair_kinds:
            raise FaceflowError(f"unknown pair kind(s) {sorted(bad)}; use one or more of {sorted(PAIR_KINDS)}")
        self.pair_kinds = tuple(pair_kinds)
        self.head_flow = bool(head_flow)
        model = model if model is not None else MorphableModel.load("skin")
        if model.variant != "skin":
            raise FaceflowError(f"annotations are made with the 'skin' model, got the {model.variant!r} model")
        face, reg = model.subset("face"), model.subset("meshreg")
        face_idx = face.indices.cpu()
        self.faces = face.triangles.cpu()
        pos = torch.full((model.num_vertices,), -1, dtype=torch.long)
        pos[face_idx] = torch.arange(face_idx.numel())
        self.meshreg_pos = pos[reg.indices.cpu()]  # 'meshreg' vertices as positions in the 'face' subset
        if (self.meshreg_pos < 0).any():
            raise FaceflowError("the 'meshreg' subset is not inside the 'face' subset")
        self.exp_basis = model.exp_basis[:, face_idx].cpu().contiguous()
        mean_face, id_basis_face = model.mean[face_idx].cpu(), model.id_basis[:, face_idx].cpu()
        kinds = {PAIR_KINDS[k] for k in self.pair_kinds}
        self.clips = [_Clip(d, kinds, mean_face, id_basis_face, model, cache, self.exp_basis) for d in dirs]
        unknown = sorted({c.stem for c in self.clips if c.stem not in _splits._CLIP})
        for c in self.clips:
            c.identity = (_splits.identity_index(c.stem) if c.stem in _splits._CLIP
                          else len(_splits.PERSONS) + unknown.index(c.stem))
        counts = np.array([len(c.pairs) for c in self.clips], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int, int, int]:
        """Item ``index`` -> (clip number, row in the clip's ``pairs.npy``, frame a, frame b)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} pairs")
        index %= n
        ci = int(np.searchsorted(self._offsets, index, side="right") - 1)
        k = index - int(self._offsets[ci])
        c = self.clips[ci]
        a, b = (int(v) for v in c.pairs[k])
        return ci, int(c.pair_index[k]), a, b

    def pair_geometry(self, ci: int, a: int, b: int, exp_b: torch.Tensor | None = None,
                      head_flow: bool = True) -> dict[str, torch.Tensor]:
        """Meshes of a pair in frame a's template: ``verts1``, ``verts2`` (V_face, 3) (the
        'face' subset annotate's flow uses), ``head`` (a's expression, b's camera), and, with
        ``head_flow``, ``head_flow`` (H, W, 3) / ``head_mask`` (H, W). ``exp_b`` (K,) replaces
        b's expression."""

        c = self.clips[ci]
        exp = c.exp[[a, b, a]].clone()
        if exp_b is not None:
            exp[1] = torch.as_tensor(exp_b, dtype=exp.dtype)
        cam = [a, b, b]  # frame a, frame b, head motion only: a's expression under b's camera
        v = template_vertices(c.base, self.exp_basis, exp, c.R[cam], c.t[cam], c.f[cam], Similarity(c.A[a]))
        out = {"verts1": v[0], "verts2": v[1], "head": v[2]}
        if head_flow:
            hf, hm = head_motion_flow(v[:1], v[2:], self.faces)
            out.update(head_flow=hf[0], head_mask=hm[0])
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:

        ci, row, a, b = self.locate(index)
        c = self.clips[ci]
        i1 = torch.from_numpy(c.ann.aligned(a)).permute(2, 0, 1).float() / 255
        # frame b in frame a's registered template: the warp annotate used for aligned[a]
        i2 = warp_image(c.ann.crop(b), Similarity(c.A[a]), TEMPLATE, border="border")
        i2 = torch.from_numpy(i2).permute(2, 0, 1).float() / 255
        p = c.ann.pair(row)  # stored (full form) or drawn (compact form)
        pncc = torch.from_numpy(np.array(p["pncc"], dtype=np.float32)).permute(2, 0, 1).contiguous()
        flow = torch.from_numpy(np.array(p["flow"], dtype=np.float32))
        mask = torch.from_numpy(np.array(p["pncc_mask"])) & torch.isfinite(flow).all(-1)
        flow = torch.where(mask[..., None], flow, torch.zeros(()))
        with torch.no_grad():
            g = self.pair_geometry(ci, a, b, head_flow=self.head_flow)
        if self.head_flow:
            head_flow = torch.where(mask[..., None], g["head_flow"], torch.zeros(())).float()
        else:  # the contract's keys either way, so real and synthetic items collate together
            head_flow = torch.zeros(TEMPLATE, TEMPLATE, 3)
        return {
            "i1": i1.contiguous(), "i2": i2.contiguous(), "pncc": pncc, "flow": flow, "mask": mask,
            "head_flow": head_flow, "has_head_flow": torch.tensor(self.head_flow),
            "mesh1": g["verts1"][self.meshreg_pos].float(), "mesh2": g["verts2"][self.meshreg_pos].float(),
            "identity": torch.tensor(c.identity, dtype=torch.int64), "kind": torch.tensor(KIND_REAL, dtype=torch.int64),
        }


# ---------------------------------------------------------------------- description

def describe(dirs) -> dict:
    """Per-split counts of complete annotation directories: ``{split: {"clips", "persons",
    "frames", "pairs", "consecutive", "gap"}}`` for 'train', 'val', 'test', 'total' (and
    'unknown' for clips outside the split table, when there are any)."""
    keys = ("clips", "persons", "frames", "pairs", "consecutive", "gap")
    out = {s: dict.fromkeys(keys, 0) for s in (*_splits.SPLITS, "total")}
    persons: dict[str, set] = {s: set() for s in out}
    for d in ([dirs] if isinstance(dirs, (str, Path)) else dirs):
        d = Path(d)
        man = read_manifest(d)
        stem = clip_stem(d, man)
        split = _split_or_none(stem) or "unknown"
        if split not in out:
            out[split] = dict.fromkeys(keys, 0)
            persons[split] = set()
        kind = np.load(d / "data" / "pair_kind.npy")
        who = _splits.identity_of(stem) if split != "unknown" else stem
        for s in (split, "total"):
            row = out[s]
            row["clips"] += 1
            row["frames"] += int(man["frames_kept"])
            row["pairs"] += int(len(kind))
            row["consecutive"] += int((kind == PAIR_KINDS["consecutive"]).sum())
            row["gap"] += int((kind == PAIR_KINDS["gap"]).sum())
            persons[s].add(who)
    for s in out:
        out[s]["persons"] = len(persons[s])
    return out


def format_description(desc: dict) -> str:
    """A Markdown table of :func:`describe`'s counts."""
    keys = ("clips", "persons", "frames", "pairs", "consecutive", "gap")
    lines = ["| split | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for s, row in desc.items():
        lines.append(f"| {s} | " + " | ".join(str(row[k]) for k in keys) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- building

@dataclass
class RealBuildConfig:
    """Options of :func:`build_real` (saved as ``build_real.json`` in the annotated root).
    The annotate options must stay those of any interrupted run to resume it."""

    splits: tuple[str, ...] = _splits.SPLITS
    max_frames: int | None = 300  # None: every frame
    gap_stride: int = 4
    size: int = 256
    previews: int = 6
    tiers: tuple[str, ...] | None = None
    media_root: str | None = None
    clips: list[str] = field(default_factory=list)  # filled in: the stems annotated, in order


def build_real(annotated_root: str | Path, splits=_splits.SPLITS, max_frames: int | None = 300, *,
               gap_stride: int = 4, size: int = 256, previews: int = 6, tiers=None,
               media_root: str | Path | None = None, strict: bool = True, say=print) -> list[Path]:
    """Annotate every clip of ``splits`` into ``annotated_root/<stem>`` with
    :func:`faceflow.annotate.pipeline.annotate` (the LatentSync ones through their ``_facecrop512``
    copies). Complete directories are skipped; interrupted ones resume through annotate's own
    state. Prints one progress line per clip. Returns the complete directories in the order
    built (splits as given, stems sorted). A clip that fails is reported and the others go on;
    with ``strict`` a :class:`FaceflowError` naming the failures is raised at the end.
    Do not run it while another process annotates into the same root (one writer per clip).
    """

    if isinstance(splits, str):
        splits = (splits,)
    for s in splits:
        _splits._check_split(s)
    if max_frames is not None and max_frames < 2:
        raise FaceflowError(f"max_frames must be at least 2 (or None for all frames), got {max_frames}")
    root = Path(annotated_root)
    if root.exists() and not root.is_dir():
        raise FaceflowError(f"{root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    todo = [(s, stem) for s in dict.fromkeys(splits) for stem in _splits.annotation_clips(s, tiers)]
    cfg = RealBuildConfig(splits=tuple(dict.fromkeys(splits)), max_frames=max_frames, gap_stride=gap_stride,
                          size=size, previews=previews, tiers=None if tiers is None else tuple(sorted(tiers)),
                          media_root=None if media_root is None else str(media_root),
                          clips=[stem for _, stem in todo])

    rec = asdict(cfg)  # media_root relative to the root (or its name), with the provenance of this run
    rec["media_root"] = None if media_root is None else portable_path(media_root, root, climb=True)
    save_json(root / "build_real.json", portable_json({**rec, "provenance": provenance(base=root)}, root))
    acfg = AnnotateConfig(size=size, max_frames=max_frames, gap_stride=gap_stride, previews=previews)
    done, failed = [], []
    n = len(todo)
    for k, (split, stem) in enumerate(todo, 1):
        out = root / stem
        head = f"[{k}/{n}] {stem} ({split})"
        if (out / "manifest.json").is_file():
            say(f"{head}: complete, skipped")
            done.append(out)
            continue
        resuming = (out / "state.json").is_file()
        say(f"{head}: annotating" + (" (resuming)" if resuming else ""))
        t0 = time.perf_counter()
        try:
            man = annotate(_splits.video_path(stem, media_root), out, acfg, say=lambda m: say("    " + m))
        except FaceflowError as e:
            say(f"{head}: FAILED: {e}")
            failed.append((stem, str(e)))
            continue
        say(f"{head}: done in {time.perf_counter() - t0:.0f} s: {man['frames_kept']} frames, "
            f"{man['pairs']['pairs']} pairs")
        done.append(out)
    if failed and strict:
        names = "; ".join(f"{s}: {m.splitlines()[0]}" for s, m in failed)
        raise FaceflowError(f"{len(failed)} of {n} clip(s) failed ({names}); the other {len(done)} are complete "
                            f"under {root}")
    return done


__all__ = ["AnnotatedPairs", "RealBuildConfig", "PAIR_KINDS", "read_manifest", "clip_stem",
           "split_dirs", "template_vertices", "head_motion_flow", "describe",
           "format_description", "build_real"]
