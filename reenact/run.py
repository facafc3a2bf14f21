"""Reenactment with a trained person-specific model:
``python -m reenact run MODEL_DIR --mode self|face|head [--source VIDEO] --out OUT.mp4``.

- ``self``: drive the target with its own held-out frames (the last third; ground truth exists,
  so the APD is printed).
- ``head``: the source's expression and head pose (camera adapted to the target's
  scale / translation statistics) on the target's identity, with the source's eyes.
- ``face``: the source's expression only; the target's pose and eyes.

The conditioning (NMFC + eye sketches) comes from :mod:`reenact.drive`; the generator runs frame
by frame exactly as in training (:class:`vid2vid.collector.StreamGenerator`). The output is an
mp4 at the source's frame rate with the source's audio; ``--side-by-side`` writes source | NMFC |
result. Written atomically: an interrupted run leaves no OUT.mp4. Beside it, ``OUT.json``
records the run (summary, model, target data and source video relative to OUT's folder or by
name, the source's sha256, and the provenance: command, versions, commit, device, the
checkpoint's sha256).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from faceflow import io as vio
from faceflow.engine.checkpoint import checkpoint_path, load_checkpoint
from faceflow.errors import FaceflowError
from faceflow.nets.modules import resolve_device
from faceflow.runtime.provenance import file_record, portable_json, portable_path, provenance
from reenact import drive as drv
from reenact.data import to_signed, to_uint8
from reenact.metrics import apd
from reenact.package import GENERATOR_FILE, is_package, load_package, resolve_model
from reenact.task import ReenactConfig, ReenactTask
from vid2vid.collector import SequenceGenerator, StreamGenerator
from vid2vid.generator import Generator, GeneratorConfig

__all__ = ["MODES", "Driven", "load_model", "drive_model", "reenact", "side_by_side", "write_frames", "write_record"]

MODES = ("self", "face", "head", "cycle")


def load_model(model_dir: str | Path, device: torch.device | str = "cpu", which: str = "last"):
    """(generator :class:`vid2vid.collector.SequenceGenerator` in eval mode, task config,
    checkpoint step) of a training run directory, a packed model (:mod:`reenact.package`) or
    ``"demo"`` (the shipped package)."""

    model_dir = resolve_model(model_dir)
    if is_package(model_dir):
        return load_package(model_dir, device)
    if model_dir.is_file():
        run_dir = model_dir.parent.parent if model_dir.parent.name == "checkpoints" else model_dir.parent
        raise FaceflowError(f"{model_dir} is a file: give the model's run directory (the folder that holds "
                            f"checkpoints/), e.g. {run_dir}")
    if not model_dir.is_dir():
        raise FaceflowError(f"model directory not found: {model_dir} (train one with python -m reenact train "
                            f"DATA_DIR {model_dir})")
    ck_path = checkpoint_path(model_dir, which)
    if not ck_path.is_file():
        raise FaceflowError(f"{model_dir} holds no trained model ({ck_path} is missing); train it with "
                            f"python -m reenact train DATA_DIR {model_dir}")
    ck = load_checkpoint(ck_path)
    if ck.get("task") != ReenactTask.name:
        raise FaceflowError(f"{ck_path} is a {ck.get('task')!r} run, not a reenactment model")
    tc = ReenactConfig(**ck["config"]["task_config"])

    gcfg = GeneratorConfig.from_saved(tc.generator)
    G = SequenceGenerator(Generator(gcfg), gcfg.n_frames)
    G.load_state_dict(ck["models"]["G"])
    return G.to(device).eval(), tc, int(ck["step"])


def side_by_side(panels: list[np.ndarray], height: int) -> np.ndarray:
    """Panels (H_i, W_i, 3) uint8 resized to ``height`` (aspect kept) and concatenated left to right."""

    out = []
    for p in panels:
        h, w = p.shape[:2]
        out.append(p if h == height else cv2.resize(p, (max(1, round(w * height / h)), height),
                                                    interpolation=cv2.INTER_AREA))
    return np.concatenate(out, 1)


def generate_frames(G, cond: np.ndarray, device: torch.device, progress: bool = False) -> tuple[np.ndarray, float]:
    """Run a loaded model (:func:`load_model`) frame by frame over conditioning ``cond``
    (T, S, S, 6) uint8, exactly as in training's roll-out. Returns the frames (T, S, S, 3) uint8
    and the generator's frames per second."""



    stream = StreamGenerator(G.G, G.n_frames)
    fake = np.zeros((*cond.shape[:3], 3), np.uint8)
    t0 = time.perf_counter()
    for t in tqdm(range(len(cond)), unit="frame", desc="reenact", disable=not progress):
        fake[t] = to_uint8(stream(to_signed(cond[t]).unsqueeze(0).to(device))[0])
    return fake, len(cond) / max(time.perf_counter() - t0, 1e-9)


@dataclass
class Driven:
    """One driven model: the conditioning (:class:`reenact.drive.Drive`), the generated frames
    ``fake`` (T, S, S, 3) uint8, the generator's frames per second, the model's folder, target
    data folder, crop size and checkpoint step."""

    drive: drv.Drive
    fake: np.ndarray
    generation_fps: float
    model_dir: Path
    data_dir: Path
    size: int
    step: int


def drive_model(model_dir, mode: str, source=None, *, max_frames: int | None = None, device="auto", work_dir=None,
                progress: bool = True, say=print) -> Driven:
    """Drive a model (a training run, a package or ``"demo"``) in ``self``, ``face`` or ``head``
    mode and generate its frames (nothing written but the source's cached analysis in
    ``work_dir``)."""
    if mode not in ("self", "face", "head"):
        raise FaceflowError(f"unknown mode {mode!r}; drive_model takes self, face or head")
    if mode != "self" and work_dir is None:
        raise FaceflowError("face and head reenactment need a work_dir for the source's cached tracking and fit")
    dev = resolve_device(device)
    G, tc, step = load_model(model_dir, dev)
    model_dir = resolve_model(model_dir)
    data_dir = Path(tc.data)
    ann = data_dir / "annotation"
    if not (ann / "manifest.json").is_file():
        raise FaceflowError(f"the model's target data {data_dir} is missing; it is needed for the target's "
                            f"identity and cameras (rerun python -m reenact preprocess into it)")
    manifest = json.loads((data_dir / "manifest.json").read_text())
    size = int(manifest["size"])
    if tc.size and tc.size != size:
        raise FaceflowError(f"resolution mismatch: the model was trained at {tc.size}x{tc.size} but its target data "
                            f"{data_dir} now holds {size}x{size} frames (it was preprocessed again with another "
                            f"--size); preprocess at --size {tc.size} or retrain")
    if mode == "self":
        if manifest.get("packed"):
            raise FaceflowError(f"{model_dir} is a packed model: it holds no held-out real frames, so self "
                                f"reenactment needs the training run and its data; use --mode head or face")
        lo, hi = manifest["split"]["test"]
        if max_frames:
            hi = min(hi, lo + int(max_frames))
        d = drv.drive_self(ann, lo, hi)
    else:
        if source is None:
            raise FaceflowError(f"--mode {mode} needs --source VIDEO (the driving video)")
        d = drv.drive_from_source(ann, source, mode, Path(work_dir), max_frames=max_frames, say=say)
    if d.cond.shape[1] != size:
        raise FaceflowError(f"conditioning is {d.cond.shape[1]}x{d.cond.shape[2]} but the model was trained at "
                            f"{size}x{size}")
    say(f"reenacting {len(d.cond)} frames ({mode}) with {model_dir} (step {step}) on {dev}")
    fake, gen_fps = generate_frames(G, d.cond, dev, progress)
    return Driven(d, fake, gen_fps, model_dir, data_dir, size, step)


def reenact(model_dir: str | Path, mode: str, out: str | Path, source: str | Path | None = None, *,
            side: bool = False, max_frames: int | None = None, device: str = "auto", work_dir=None,
            progress: bool = True, say=print) -> dict:
    """Drive a trained model in ``self``, ``face`` or ``head`` mode and write ``out`` (mp4).
    Returns a summary (frames, fps, APD in self mode). Cycle mode: :func:`reenact.cycle.cycle`."""

    if mode not in MODES:
        raise FaceflowError(f"unknown mode {mode!r}; use self, face, head or cycle")
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise FaceflowError(f"--out must be an .mp4 file, got {out}")
    work = Path(work_dir) if work_dir else out.parent / f".{out.stem}.source"
    if mode == "cycle":
        raise FaceflowError("cycle mode runs two models: use reenact.cycle.cycle (python -m reenact run ... "
                            "--mode cycle --back-model SOURCE_MODEL)")
    r = drive_model(model_dir, mode, source, max_frames=max_frames, device=device, work_dir=work, progress=progress,
                    say=say)
    d, fake = r.drive, r.fake
    write_frames(out, fake, d.fps, d.audio, [d.source, d.cond[..., :3]] if side else None)
    summary = {"frames": len(fake), "mode": mode, "out": str(out.resolve()), "fps_video": d.fps,
               "generation_fps": r.generation_fps, "checkpoint_step": r.step}
    if d.real is not None:
        summary["apd"] = float(apd(to_signed(fake), to_signed(np.asarray(d.real))))
    write_record(out, summary, r.model_dir, r.data_dir, source, resolve_device(device))
    return summary


def write_frames(out: Path, frames: np.ndarray, fps: float, audio=None, before: list | None = None) -> None:
    """``frames`` (T, S, S, 3) uint8 as an mp4 at ``fps`` (atomically), with the audio of the file
    ``audio``; ``before``: panels (each (T, h, w, 3)) put left of each frame, side by side."""
    out.parent.mkdir(parents=True, exist_ok=True)
    S = frames.shape[1]
    with vio.VideoWriter(out, fps, audio_from=audio) as writer:
        for t, y in enumerate(frames):
            writer.write(y if not before else side_by_side([p[t] for p in before] + [y], S))


def model_weights_file(model_dir) -> Path:
    """The file holding a model's generator: a package's ``generator.pt`` or a run's last checkpoint."""
    model_dir = resolve_model(model_dir)
    return model_dir / GENERATOR_FILE if is_package(model_dir) else checkpoint_path(model_dir, "last")


def write_record(out: Path, summary: dict, model_dir, data_dir: Path, source, dev) -> None:
    """``OUT.json`` beside ``OUT.mp4``: the summary, the model, target data and source video
    (relative to OUT's folder, or by name), the source's size and sha256, and the provenance
    (command, versions, commit, device, the checkpoint's sha256); no absolute paths."""

    base = out.parent
    rec = {**summary, "out": out.name, "model_dir": portable_path(model_dir, base, climb=True),
           "target_data": portable_path(data_dir, base, climb=True),
           "source": portable_path(source, base, climb=True) if source is not None else None,
           "source_file": file_record(source, base) if source is not None and Path(source).is_file() else None,
           "provenance": provenance(weights={"generator": model_weights_file(model_dir)}, device=dev, base=base)}
    vio.save_json(out.with_suffix(".json"), portable_json(rec, base))
