"""Weights files: the one format trained networks are shipped in.

A weights file is a ``torch.save``d dict, loadable with ``torch.load(weights_only=True)``::

    {"format": "faceflow-weights/1",
     "kind": "meshreg" | "meshreg_landmarks" | "dffnet",  # which network class (see KINDS)
     "config": {...},                        # the class's constructor kwargs (JSON-able)
     "state_dict": {...},                    # parameters fp16 when saved with half=True
     "meta": {...}}                          # JSON-able: command, data, iterations, metrics

With ``half=True`` only *parameters* are stored in float16 (halving the file); buffers (the
3DMeshReg template, ImageNet mean/std, BatchNorm statistics) stay exact in float32, and a
parameter whose fp16 copy would overflow is kept in float32 too. :func:`load_weights` always
returns a float32 module in eval mode.

- :func:`save_weights` / :func:`load_weights` / :func:`weights_info`;
- files are read through :func:`faceflow.io.safeload.load_tensors`, the one ``torch.load`` of
  user-supplied weights and checkpoint files (``weights_only=True``; ``UnsafeFileError`` for a
  file holding other objects);
- :func:`export_run`: a training run directory (:mod:`faceflow.engine.trainer`) -> weights file.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
import torch.nn as nn

from faceflow.engine.checkpoint import atomic_torch_save, checkpoint_path, load_checkpoint, portable_record
from faceflow.errors import AssetNotFoundError, FaceflowError
from faceflow.io.safeload import load_tensors
from faceflow.nets.modules import unwrap
from faceflow.runtime.provenance import portable_command, provenance

FORMAT = "faceflow-weights/1"

# kind -> "module:Class" constructed as Class(**config); imported lazily
KINDS = {
    "meshreg": "faceflow.nets.meshreg:MeshReg",
    "meshreg_landmarks": "faceflow.nets.meshreg:LandmarkMeshReg",
    "dffnet": "faceflow.nets.dffnet:DFFNet",
}

MESHREG_KINDS = ("meshreg", "meshreg_landmarks")  # the kinds that regress the 3DMeshReg mesh


def model_class(kind: str) -> type:
    """The network class of a weights ``kind``."""
    if kind not in KINDS:
        raise FaceflowError(f"unknown weights kind {kind!r}; known kinds: {sorted(KINDS)}")
    mod, name = KINDS[kind].split(":")
    return getattr(importlib.import_module(mod), name)


def build_model(kind: str, config: dict) -> nn.Module:
    """``model_class(kind)(**config)`` with a clear error for a bad config."""
    cls = model_class(kind)
    try:
        return cls(**config)
    except TypeError as e:
        raise FaceflowError(f"cannot build a {kind} network from config {config}: {e}") from e


def _jsonable(obj, what: str):
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as e:
        raise FaceflowError(f"{what} must be JSON-serialisable: {e}") from e



def half_state_dict(model: nn.Module, half: bool = True) -> dict[str, torch.Tensor]:
    """CPU copy of ``model``'s state dict; parameters in float16 when ``half`` (unless the fp16
    copy would overflow), buffers unchanged."""
    model = unwrap(model)
    params = {n for n, _ in model.named_parameters()}
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and k in params and v.is_floating_point() and v.dtype != torch.float16:
            h = v.half()
            if bool(torch.isfinite(h).all()) or not bool(torch.isfinite(v).all()):
                v = h
        out[k] = v.clone().contiguous()
    return out


def save_weights(model: nn.Module, kind: str, config: dict, path: str | os.PathLike, half: bool = True,
                 meta: dict | None = None) -> str:
    """Write ``model`` as a weights file at ``path`` atomically; return the absolute path.

    ``kind``: a key of :data:`KINDS`; ``config``: the constructor kwargs that rebuild ``model``
    (JSON-able); ``half``: parameters in float16; ``meta``: JSON-able provenance
    (training command, data, iterations, metrics).
    """

    model_class(kind)  # validates the kind
    obj = {"format": FORMAT, "kind": kind, "config": _jsonable(dict(config), "weights config"),
           "state_dict": half_state_dict(model, half), "meta": _jsonable(dict(meta or {}), "weights meta")}
    atomic_torch_save(obj, path)
    return os.path.abspath(os.fspath(path))


# ----------------------------------------------------------------------------- safe loading
def _read(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise AssetNotFoundError(f"weights file not found: {p}")
    obj = load_tensors(p, "weights file", "not a readable weights file (corrupt, truncated or not made by faceflow)")
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith("faceflow-checkpoint"):
            raise FaceflowError(f"{p} is a training checkpoint, not a weights file; export it with "
                                f"'python -m faceflow train export RUN_DIR --out FILE.pt'")
        raise FaceflowError(f"{p}: not a faceflow weights file (format {fmt!r}, expected {FORMAT!r})")
    for key, typ in (("kind", str), ("config", dict), ("state_dict", dict), ("meta", dict)):
        if not isinstance(obj.get(key), typ):
            raise FaceflowError(f"{p}: malformed weights file: {key!r} missing or not a {typ.__name__}")
    return obj


def weights_info(path: str | os.PathLike) -> dict:
    """``{"kind", "config", "meta"}`` of a weights file, without building the network."""
    obj = _read(path)
    return {"kind": obj["kind"], "config": obj["config"], "meta": obj["meta"]}


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu",
                 kind: str | tuple[str, ...] | None = None) -> nn.Module:
    """Rebuild the network of a weights file: float32, on ``device``, in eval mode.

    ``kind``, when given, must match the file's kind (a tuple: be one of them, e.g.
    :data:`MESHREG_KINDS`). Raises :class:`AssetNotFoundError` for a missing file and
    :class:`FaceflowError` (naming the path) for a corrupt or foreign one. The file's ``meta`` is
    attached as ``module.weights_meta`` and its kind as ``module.weights_kind``.
    """
    obj = _read(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and obj["kind"] not in kinds:
        raise FaceflowError(f"{path} holds {obj['kind']!r} weights, expected {' or '.join(map(repr, kinds))}")
    if obj["kind"] not in KINDS:
        raise FaceflowError(f"{path}: unknown weights kind {obj['kind']!r}; known kinds: {sorted(KINDS)}")
    model = build_model(obj["kind"], obj["config"])
    try:
        model.load_state_dict(obj["state_dict"], strict=True)  # copies convert fp16 -> fp32
    except RuntimeError as e:
        raise FaceflowError(f"{path}: weights do not fit a {obj['kind']} network built from "
                            f"{obj['config']}: {str(e)[:400]}") from e
    model = model.float().to(device).eval()
    model.weights_meta = obj["meta"]
    model.weights_kind = obj["kind"]
    return model


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, half: bool = True, which: str = "best") -> str:
    """Turn a training run into a weights file; return its absolute path.

    ``which``: ``'best'`` (``checkpoints/best.pt``, chosen by the validation metric; falls back
    to ``last.pt`` with a note when the run has no validation) or ``'last'``. The meta records
    the training command, data, step, configs and the latest validation metrics.
    """

    if which not in ("best", "last"):
        raise FaceflowError(f"which must be 'best' or 'last', got {which!r}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FaceflowError(f"run directory not found: {run_dir}")
    path = checkpoint_path(run_dir, which)
    if which == "best" and not path.is_file() and checkpoint_path(run_dir, "last").is_file():
        print(f"note: {path} does not exist (no validation data?); exporting last.pt", flush=True)
        path = checkpoint_path(run_dir, "last")
    ckpt = load_checkpoint(path)
    spec = ckpt.get("export")
    if not isinstance(spec, dict) or not spec.get("kind"):
        raise FaceflowError(f"{path}: the task of this run ({ckpt.get('task')!r}) defines no exportable network")
    model = build_model(spec["kind"], spec["config"])
    try:
        model.load_state_dict(ckpt["models"][spec["model"]], strict=True)
    except (KeyError, RuntimeError) as e:
        raise FaceflowError(f"{path}: checkpoint does not hold the {spec['kind']} network: {e}") from e

    # no absolute paths of this machine: the run directory by name, data relative to it (or by name)
    cfg = portable_record(ckpt.get("config", {}), run_dir)
    train_cfg = cfg.get("train", {})
    meta = {
        "run_dir": run_dir.resolve().name, "checkpoint": path.name, "step": ckpt.get("step"),
        "iterations": train_cfg.get("iterations"), "task": ckpt.get("task"),
        "command": portable_command(ckpt.get("command")), "data": train_cfg.get("data"),
        "val_data": train_cfg.get("val_data"), "train_config": train_cfg, "task_config": cfg.get("task_config"),
        "val_metrics": ckpt.get("val_metrics"), "best_val_metric": ckpt.get("best"),
        # the export: its command, versions, commit and the checkpoint's sha256
        "provenance": provenance(weights={"checkpoint": path}, base=run_dir),
    }
    meta.update(spec.get("meta") or {})  # task-specific extras (e.g. the mesh triangles of 3DMeshReg)
    return save_weights(model, spec["kind"], spec["config"], out, half=half, meta=meta)


__all__ = ["FORMAT", "KINDS", "model_class", "build_model", "half_state_dict", "save_weights",
           "load_weights", "weights_info", "export_run"]
