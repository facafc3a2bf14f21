"""A packed reenactment model: only what ``reenact run`` needs to drive a target from a source
video (head and face modes), small enough to ship.

A training run (``python -m reenact train DATA MODEL``) needs its target data directory at run
time (about 100 MB for 20 s at 256 px: crops, NMFCs, flows). Head and face reenactment read only
the target's identity, its cameras and its eye landmarks and pupils; :func:`pack_model` copies
those and the generator (float16) into a folder of about 1 MB::

    PACKAGE/
      generator.pt            {"format", "step", "generator": GeneratorConfig fields, "task_config",
                               "state_dict": float16 tensors, "source", "trained"}
      target/manifest.json    size, fps, split, frames and the source video's record ("packed": true)
      target/annotation/manifest.json, target/annotation/data/{id, camera_scale, camera_translation,
                               camera_rotation, lmk68, pupils}.npy
      model_card.md           data, command, training time, held-out APD (when given)

:func:`resolve_model` turns ``"demo"`` into the package shipped in ``reenact/weights/demo`` and any
other name into a path; :func:`load_package` rebuilds the generator (``torch.load(...,
weights_only=True)``: a package is a file a user may hand us). Self reenactment needs the held-out
real frames, which a package does not carry: it says so.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from faceflow import io as vio
from faceflow.engine.checkpoint import checkpoint_path, load_checkpoint
from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.io.files import partial_name
from faceflow.runtime.assets import REPO_ROOT
from reenact.task import ReenactConfig, ReenactTask
from vid2vid.collector import SequenceGenerator
from vid2vid.generator import Generator, GeneratorConfig

__all__ = ["PACKAGE_FORMAT", "GENERATOR_FILE", "TARGET_ARRAYS", "DEMO_DIR", "is_package", "resolve_model",
           "pack_model", "load_package"]

PACKAGE_FORMAT = "reenact-package/1"
GENERATOR_FILE = "generator.pt"
TARGET_ARRAYS = ("id", "camera_scale", "camera_translation", "camera_rotation", "lmk68", "pupils")
DEMO_DIR = REPO_ROOT / "reenact" / "weights" / "demo"
# the annotation manifest's fields that driving reads (faceflow.annotate layout)
_ANNOTATION_KEYS = ("source_file", "fps", "frames_kept", "crop_size", "template_size", "crop_box", "complete")
_DATA_KEYS = ("format", "complete", "source_file", "fps", "size", "frames", "split")


def is_package(path) -> bool:
    """True when ``path`` is a packed model (a folder holding ``generator.pt``)."""
    return (Path(path) / GENERATOR_FILE).is_file()


def resolve_model(name_or_dir) -> Path:
    """The folder of a model argument: ``"demo"`` is the shipped demo package (AssetNotFoundError
    when this copy lacks it; a folder of that name is ``./demo``), anything else a path (a
    training run or a package)."""
    if isinstance(name_or_dir, str) and name_or_dir == "demo":
        if not is_package(DEMO_DIR):
            raise AssetNotFoundError(f"the demo model is not in this copy of the project ({DEMO_DIR}); pack one "
                                     f"with python -m reenact pack RUN_DIR {DEMO_DIR}")
        return DEMO_DIR
    return Path(name_or_dir)


def pack_model(run_dir, out, *, half: bool = True, card: str = "", say=print) -> dict:
    """Pack the training run ``run_dir`` (its ``checkpoints/last.pt`` and target data) into the
    folder ``out`` (written under a partial name, renamed when complete; an existing ``out`` is
    replaced). ``card``: Markdown appended to the generated model card. Returns the package's
    summary (step, bytes, files)."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not (out.is_dir() and (is_package(out) or not any(out.iterdir()))):
        raise FaceflowError(f"{out} exists and is not a package: give a new or empty folder (an existing package "
                            f"is replaced, nothing else is)")
    ck_path = checkpoint_path(run_dir, "last")
    if not ck_path.is_file():
        raise FaceflowError(f"{run_dir} holds no trained model ({ck_path} is missing)")
    ck = load_checkpoint(ck_path)
    if ck.get("task") != ReenactTask.name:
        raise FaceflowError(f"{ck_path} is a {ck.get('task')!r} run, not a reenactment model")
    tc = ReenactConfig(**ck["config"]["task_config"])
    data = Path(tc.data)
    ann = data / "annotation"
    if not (ann / "manifest.json").is_file() or not (data / "manifest.json").is_file():
        raise FaceflowError(f"the model's target data {data} is missing; packing needs its identity and cameras")
    gcfg = GeneratorConfig.from_saved(tc.generator)
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in ck["models"]["G"].items()}
    task = {**asdict(tc), "data": "target", "generator": asdict(gcfg)}
    dmani = json.loads((data / "manifest.json").read_text())
    amani = json.loads((ann / "manifest.json").read_text())
    for stale in out.parent.glob(f".{out.name}.*.partial"):  # left by a pack that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(partial_name(str(out)))
    try:
        (tmp / "target" / "annotation" / "data").mkdir(parents=True)
        for name in TARGET_ARRAYS:
            np.save(tmp / "target" / "annotation" / "data" / f"{name}.npy", np.load(ann / "data" / f"{name}.npy"))
        vio.save_json(tmp / "target" / "annotation" / "manifest.json",
                      {k: amani[k] for k in _ANNOTATION_KEYS if k in amani} | {"packed": True})
        vio.save_json(tmp / "target" / "manifest.json",
                      {k: dmani[k] for k in _DATA_KEYS if k in dmani} | {"packed": True})
        trained = {"step": int(ck["step"]), "elapsed_s": float(ck.get("elapsed", 0.0)),
                   "command": _short_command(ck.get("command")), "flow": tc.flow, "size": int(tc.size)}
        torch.save({"format": PACKAGE_FORMAT, "step": int(ck["step"]), "generator": asdict(gcfg), "task_config": task,
                    "state_dict": state, "source": dmani.get("source_file"), "trained": trained},
                   tmp / GENERATOR_FILE)
        text = _card(trained, dmani, gcfg, state, half) + (f"\n{card.strip()}\n" if card else "")
        (tmp / "model_card.md").write_text(text)
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    say(f"packed {run_dir} (step {trained['step']}) into {out}: {sum(files.values()) / 1e6:.2f} MB")
    return {"step": trained["step"], "bytes": sum(files.values()), "files": files}


def _short_command(command) -> str | None:
    """The training command with every absolute path cut to its last part (no paths of this machine)."""
    if not command:
        return None
    return " ".join(Path(w).name if w.startswith("/") else w for w in str(command).split())


def _card(trained: dict, dmani: dict, gcfg: GeneratorConfig, state: dict, half: bool) -> str:
    """The generated part of the model card."""
    src = dmani.get("source_file") or {}
    n = sum(v.numel() for v in state.values())
    lo, hi = dmani["split"]["train"]
    return "\n".join([
        "# Reenactment model card", "",
        f"- **Target video**: `{src.get('file', '?')}` (sha256 {str(src.get('sha256', '?'))[:16]}...), "
        f"{dmani.get('frames')} kept frames at {dmani.get('fps')} fps, crops of {dmani.get('size')} px; trained on "
        f"kept frames {lo}-{hi - 1}, the rest held out.",
        f"- **Network**: Head2Head++ generator, ngf {gcfg.ngf}, max {gcfg.max_nf} channels, {gcfg.upsample} "
        f"upsampling, {n / 1e6:.2f}M parameters stored in {'float16' if half else 'float32'}.",
        f"- **Training**: {trained['step']} steps, {trained['elapsed_s'] / 60:.1f} min, flow `{trained['flow']}`; "
        f"command: `{trained.get('command') or '?'}`.",
        "- **Use**: `python -m reenact run PACKAGE --mode head|face --source VIDEO --out OUT.mp4` "
        "(self mode needs the training run and its data).",
        "- **Limits**: one person, frontal talking-head footage like the training clip; a tiny CPU-trained "
        "model gives a recognisable but soft face, not a photorealistic one. Do not use it to impersonate.", ""])


def load_package(path, device: torch.device | str = "cpu"):
    """(generator :class:`vid2vid.collector.SequenceGenerator` in eval mode, task config with
    ``data`` = the package's target folder, step) of a packed model."""
    path = Path(path)
    f = path / GENERATOR_FILE
    try:
        obj = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file
        raise FaceflowError(f"{f} is not a readable reenactment package ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(obj, dict) or obj.get("format") != PACKAGE_FORMAT:
        raise FaceflowError(f"{f} is not a {PACKAGE_FORMAT} file")
    gcfg = GeneratorConfig.from_saved(obj["generator"])
    G = SequenceGenerator(Generator(gcfg), gcfg.n_frames)
    try:
        G.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()})
    except RuntimeError as e:
        raise FaceflowError(f"{f}: the weights do not fit the generator it describes: {str(e)[:300]}") from e
    tc = ReenactConfig(**{**obj["task_config"], "data": str((path / "target").resolve())})
    return G.to(device).eval(), tc, int(obj["step"])
