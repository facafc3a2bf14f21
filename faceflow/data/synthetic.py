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
  (:func:`faceflow.geometry.similarity.estimate_similarity`) and the SAME similarity is applied to both
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
# Modules: the draws of a pair (.synth_sampling: SyntheticConfig, sample_params), the render
# head (.synth_geometry), the annotated source clips (.synth_sources), the texture bank
# (.synth_texture) and the rendering (.synth_render); this module stores the pairs (generate) and
# serves them (SyntheticPairs); the command line is faceflow/commands/data_synth.py. All their
# public names are importable from here.

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from faceflow import io as fio
from faceflow.data.splits import evenly_spaced
from faceflow.data.synth_geometry import HeadGeometry, load_geometry, project_fitted
from faceflow.data.synth_render import SIZE, albedo, background, colour_jitter, composite, pose_meshes, render_pair
from faceflow.data.synth_sampling import PairParams, SyntheticConfig, sample_params
from faceflow.data.synth_sources import Clip, find_clips, load_clip
from faceflow.data.synth_texture import build_texture_bank, sample_texture
from faceflow.errors import FaceflowError
from faceflow.geometry.morphable import model_files
from faceflow.io.rundir import RunState
from faceflow.render.figures import caption, hstack, legend_strip, vstack
from faceflow.render.flowcolor import flow3d_to_rgb, nice_scale, shared_max_magnitude
from faceflow.runtime.provenance import portable_path, provenance

FORMAT = "faceflow-synthetic/1"
# what --overwrite deletes in the output directory
OUTPUTS = ("config.json", "state.json", "manifest.json", "textures.npz", "data", "previews")

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
    return _prepare(config, find_clips(sources, config.split), bank_path, progress)


def _prepare(config: SyntheticConfig, clips: list[Clip], bank_path: str | Path | None, progress: bool) -> Generator:
    """:func:`prepare` on the clips of the split, already loaded."""
    stems = [c.stem for c in clips]
    if config.sources and config.sources != stems:
        raise FaceflowError(f"the config names source clips {config.sources} but the annotated clips of the "
                            f"{config.split!r} split are {stems}")
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


def _array_specs(num_mesh_vertices: int) -> dict[str, tuple[tuple, type]]:
    """(trailing shape, dtype) of every stored array; the meshes have the ``'meshreg'`` subset's
    ``num_mesh_vertices`` vertices."""
    specs = dict(_TEMPLATE_ARRAYS)
    specs["mesh1"] = ((num_mesh_vertices, 3), np.float32)
    specs["mesh2"] = ((num_mesh_vertices, 3), np.float32)
    return specs


def generate(out_dir: str | Path, config: SyntheticConfig, sources, *, progress: bool = True,
             overwrite: bool = False, say=print) -> dict:
    """Generate (or resume) ``config.num_pairs`` pairs into ``out_dir``; returns the manifest.

    ``sources``: annotated clips (a directory holding them, clip directories, or a list; see
    :func:`find_clips`); only clips of ``config.split`` are used. Rerunning with the same config
    resumes (a larger ``num_pairs`` extends the set); a different config is refused unless
    ``overwrite`` (which deletes the previous output).
    """
    config.validate()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"output {out} exists and is not a directory")
    clips = find_clips(sources, config.split)
    config = replace(config, sources=[c.stem for c in clips])
    state = _open_output(out, config, overwrite)
    done = int(state.data.get("done", 0))
    (out / "manifest.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    fio.save_json(out / "config.json", asdict(config))
    t0 = time.perf_counter()
    gen = _prepare(config, clips, out / "textures.npz", progress)
    N = config.num_pairs
    if done < N:
        say(f"generating {N - done} synthetic {config.split} pairs from {len(clips)} clip(s)"
            + (f" (resuming at {done})" if done else ""))
    rate = _generate_pairs(gen, out / "data", state, done, progress)
    previews = write_previews(out, config.previews)
    manifest = {
        "kind": "synthetic", "format": FORMAT, "split": config.split, "num_pairs": N, "size": SIZE,
        # dir: the annotated clip relative to this directory (faceflow.runtime.provenance.resolve_recorded) or its name
        "sources": [{"stem": c.stem, "dir": portable_path(c.path, out, climb=True), "frames": len(c)} for c in clips],
        "textures": int(config.textures), "pairs_per_second": rate,
        "this_run_s": time.perf_counter() - t0, "previews": previews, "layout": LAYOUT, "complete": True,
        "provenance": provenance(weights=model_files("skin", "full"), base=out),
    }
    fio.save_json(out / "manifest.json", manifest)
    return manifest


def _open_output(out: Path, config: SyntheticConfig, overwrite: bool) -> RunState:
    """The output directory's ``state.json`` (``done``: the pairs written, ``num_pairs``, ``format``),
    after refusing a directory made with another generator version or configuration
    (``config.json``), one that holds something else, or one with more pairs than asked for."""
    state = RunState(out, {"done": 0, "num_pairs": config.num_pairs, "format": FORMAT}, overwrite=overwrite,
                     outputs=OUTPUTS, match=("format",),
                     refuse=lambda old: f"{out} was made by another version of the generator ({old.get('format')}, "
                                        f"this is {FORMAT}); pass --overwrite to replace it")
    cfg_path = out / "config.json"
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
    done = int(state.data.get("done", 0))
    if done > config.num_pairs:
        raise FaceflowError(f"{out} already holds {done} pairs; ask for at least {done} or pass --overwrite")
    return state


def _generate_pairs(gen: Generator, data: Path, state: RunState, done: int, progress: bool) -> float | None:
    """Render pairs ``done`` .. ``num_pairs`` - 1 into the arrays in ``data`` (resized when the set
    grows), a chunk of ``config.chunk`` pairs at a time; after each chunk the arrays are flushed
    and ``state.json`` records the pairs done. Returns the pairs rendered per second (None: none)."""
    config, N = gen.config, gen.config.num_pairs
    data.mkdir(exist_ok=True)
    arrays = {name: _open_array(data / f"{name}.npy", N, tail, dtype, done)
              for name, (tail, dtype) in _array_specs(int(gen.geometry.meshreg_idx.numel())).items()}
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
        state.data.update(done=done, num_pairs=N, format=FORMAT)
        state.save()
    bar.close()
    return (N - first) / max(time.perf_counter() - t_render, 1e-9) if N > first else None


def write_previews(root: str | Path, count: int) -> list[str]:
    """PNG rows of ``count`` pairs of a generated set: I1 | I2 | PNCC | 3D flow | flow - head_flow
    (expression motion), each panel titled, the flows colour-coded on a shared scale with the
    legend under the row (:mod:`faceflow.render.figures`)."""

    root = Path(root)
    data = root / "data"
    if count <= 0:
        return []
    (root / "previews").mkdir(exist_ok=True)
    a = {n: np.load(data / f"{n}.npy", mmap_mode="r") for n in ("i1", "i2", "pncc", "mask", "flow", "head_flow")}
    N = len(a["i1"])
    names = []
    for k in evenly_spaced(N, count):
        m = np.asarray(a["mask"][k])
        fl = np.asarray(a["flow"][k], np.float32)
        ex = fl - np.asarray(a["head_flow"][k], np.float32)
        mx = nice_scale(shared_max_magnitude([fl], [m]))
        panels = [a["i1"][k], a["i2"][k], (np.asarray(a["pncc"][k], np.float32) * 255).clip(0, 255).astype(np.uint8),
                  flow3d_to_rgb(fl, m, mx, 0.05), flow3d_to_rgb(ex, m, mx, 0.05)]
        titles = ["I1", "I2", "PNCC of I1", "3D flow (exact)", "expression part"]
        row = hstack([caption(np.asarray(x), t, 16) for x, t in zip(panels, titles)])
        name = f"pair{int(k):06d}.png"
        fio.write_image(root / "previews" / name, vstack([row, legend_strip(row.shape[1], mx, 0.05, ("3d",))]))
        names.append(name)
    return names



# ---------------------------------------------------------------------- dataset

class SyntheticPairs(torch.utils.data.Dataset):
    """A generated synthetic set as a flow dataset (items follow the pair-sample contract,
    ``kind`` 0, ``has_head_flow`` True). Images are served as stored: training augments them
    in the task (:mod:`faceflow.engine.dff_tasks`, randomness from the harness's ``ctx.rand``).
    """

    _NAMES = ("i1", "i2", "pncc", "mask", "flow", "head_flow", "mesh1", "mesh2", "identity")

    def __init__(self, root: str | Path):
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
        t = lambda x, dt=torch.float32: torch.from_numpy(np.array(x, copy=True)).to(dt)
        i1, i2 = (t(a[n][k]).permute(2, 0, 1).div_(255.0).contiguous() for n in ("i1", "i2"))
        return {
            "i1": i1, "i2": i2,
            "pncc": t(a["pncc"][k]).permute(2, 0, 1).contiguous(),
            "flow": t(a["flow"][k]), "mask": t(a["mask"][k], torch.bool),
            "head_flow": t(a["head_flow"][k]), "has_head_flow": torch.tensor(True),
            "mesh1": t(a["mesh1"][k]), "mesh2": t(a["mesh2"][k]),
            "identity": torch.tensor(int(a["identity"][k]), dtype=torch.int64),
            "kind": torch.tensor(0, dtype=torch.int64),
        }


__all__ = [
    "SIZE", "FORMAT", "LAYOUT", "SyntheticConfig", "HeadGeometry", "load_geometry", "project_fitted", "Clip",
    "load_clip", "find_clips", "sample_texture", "build_texture_bank", "PairParams", "sample_params",
    "pose_meshes", "albedo", "background", "composite", "colour_jitter", "render_pair", "pair_record",
    "Generator", "prepare", "generate", "write_previews", "SyntheticPairs",
]
