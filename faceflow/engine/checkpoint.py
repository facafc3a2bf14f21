"""The run directory's checkpoints and its config record.

- ``OUT/checkpoints/last.pt`` / ``best.pt`` (:func:`checkpoint_path`), written atomically
  (:func:`atomic_torch_save`: temporary file in the same folder, flush + fsync, ``os.replace``)
  and read back with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`); they hold the
  RNG states of every rank (:func:`rng_state` / :func:`set_rng_state`);
- the config record (:func:`config_record`: format, task name, :class:`TrainConfig` and the task's
  config), stored in checkpoints with full paths and in ``config.json`` / exported weights without
  the machine's paths (:func:`portable_record`); :func:`check_same_run` refuses to resume a run
  whose record differs beyond :data:`~faceflow.engine.config.RESUMABLE_KEYS`;
- a **packed run** (:func:`pack_run`, ``faceflow train pack``): a copy of a run small enough to
  commit -- fp32 weights, the optimizer's moments in bfloat16 (or none), the logs, the config
  record without the machine's paths -- that the harness resumes from like any run directory,
  on any machine, with the data directories matched by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from faceflow.engine.config import RESUMABLE_KEYS, TrainConfig
from faceflow.engine.task import Task
from faceflow.errors import FaceflowError
from faceflow.io import atomic_path
from faceflow.io.safeload import load_tensors
from faceflow.runtime.provenance import portable_json, portable_path

CHECKPOINT_FORMAT = "faceflow-checkpoint/1"
CONFIG_FORMAT = "faceflow-train-config/1"
# the files a run writes in OUT (removed by --overwrite; nothing else in OUT is touched)
RUN_FILES = ("checkpoints", "config.json", "log.csv", "val.csv", "tb", "manifest.json", "samples")


def checkpoint_path(out: str | os.PathLike, which: str = "last") -> Path:
    """``OUT/checkpoints/WHICH.pt`` (``which``: ``last`` or ``best``)."""
    return Path(out) / "checkpoints" / f"{which}.pt"


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, flush + fsync, ``os.replace``.
    An interrupted write leaves ``path`` as it was."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    with contextlib.suppress(OSError):  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint (``weights_only=True``); :class:`FaceflowError` naming the file if it is
    missing, corrupt or not a checkpoint."""
    p = Path(path)
    if not p.is_file():
        raise FaceflowError(f"checkpoint not found: {p}")
    ck = load_tensors(p, "checkpoint", "unreadable checkpoint (corrupt or truncated?)")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise FaceflowError(f"{p}: not a faceflow training checkpoint")
    return ck


def rng_state() -> dict:
    """The torch, numpy, Python (and CUDA) RNG states of this process, as tensors and plain values."""
    np_state = np.random.get_state()
    py = random.getstate()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                    "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
          "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore the RNG states of :func:`rng_state`."""
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(st["cuda"])


def config_record(task: Task, cfg: TrainConfig) -> dict:
    """What a run is: ``{"format", "task", "train": TrainConfig, "task_config"}`` as plain JSON."""
    return json.loads(json.dumps({"format": CONFIG_FORMAT, "task": task.name, "train": cfg.to_dict(),
                                  "task_config": task.config_dict()}))


def portable_record(record: dict, out) -> dict:
    """A config record (:func:`config_record`, a checkpoint's ``config``) without the machine's
    absolute paths, as ``config.json`` and exported weights store it: data directories relative
    to the run directory ``out`` (or their names when the two share no folder), other absolute
    paths by name or relative to the repository (:mod:`faceflow.runtime.provenance`). Idempotent."""
    rec = json.loads(json.dumps(record))
    train = rec.get("train")
    if isinstance(train, dict):
        for k in ("data", "val_data"):
            if isinstance(train.get(k), list):
                train[k] = [portable_path(p, out, climb=True) if os.path.isabs(str(p)) else p for p in train[k]]
    return portable_json(rec, out)


def config_diff(old: dict, new: dict, added_later: dict | None = None) -> list[str]:
    """``section.key: old -> new`` for every difference of two config records, except the
    :data:`RESUMABLE_KEYS` of the train section. ``added_later`` (a task's
    :attr:`~faceflow.engine.task.Task.added_later`): task-config options added after runs were
    recorded, ``{"key" or "key.sub": the value an old record without it meant}``, filled into
    ``old`` where it lacks them."""
    diffs = []
    if old.get("task") != new.get("task"):
        diffs.append(f"task: {old.get('task')!r} -> {new.get('task')!r}")
    for section in ("train", "task_config"):
        a, b = old.get(section, {}) or {}, new.get(section, {}) or {}
        if section == "task_config" and added_later:
            a = _with_added_later(a, added_later)
        for k in sorted(set(a) | set(b)):
            if section == "train" and k in RESUMABLE_KEYS:
                continue
            if a.get(k) != b.get(k):
                diffs.append(f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return diffs


def _with_added_later(record: dict, added_later: dict) -> dict:
    """``record`` with the options it lacks set to what their absence meant (``"key.sub"`` for a
    field of a nested dict)."""
    out = dict(record)
    for path, value in added_later.items():
        key, _, sub = path.partition(".")
        if not sub:
            out.setdefault(key, value)
        elif isinstance(out.get(key), dict) and sub not in out[key]:
            out[key] = {**out[key], sub: value}
    return out


def clear_run(out: Path) -> None:
    """Delete the :data:`RUN_FILES` of the run in ``out`` (``--overwrite``); nothing else."""
    for name in RUN_FILES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _by_data_names(record: dict) -> dict:
    """A config record whose data directories are their folder names (how a packed run, made on
    another machine, is compared)."""
    rec = json.loads(json.dumps(record))
    for k in ("data", "val_data"):
        if isinstance((rec.get("train") or {}).get(k), list):
            rec["train"][k] = [Path(str(p)).name for p in rec["train"][k]]
    return rec


def pack_run(run_dir: str | os.PathLike, out: str | os.PathLike, optimizer: bool = True) -> Path:
    """Write a compact copy of the run in ``run_dir`` to ``out``, a run directory the harness
    resumes from (rerun the training command with ``--out OUT``). Returns ``OUT/checkpoints/last.pt``.

    Its ``last.pt`` holds the weights in fp32, the optimizers' floating state in bfloat16
    (``optimizer``; without it the run resumes with fresh optimizer moments), the schedulers, the
    step, the elapsed training time, the RNG states and the config record without absolute
    paths; ``config.json``, ``log.csv`` and ``val.csv`` are copied. Resuming from it is not
    bit-exact (the moments are rounded) and the data directories are matched by folder name."""
    src, dst = Path(run_dir), Path(out)
    ck = load_checkpoint(checkpoint_path(src, "last"))
    if dst.resolve() == src.resolve():
        raise FaceflowError(f"faceflow train pack: --out must differ from the run directory {src}")
    packed = {k: v for k, v in ck.items() if k != "optimizers"}
    packed["models"] = {n: {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
                        for n, sd in ck["models"].items()}
    if optimizer:
        packed["optimizers"] = {n: _bf16_state(sd) for n, sd in ck["optimizers"].items()}
    packed["config"] = portable_record(ck["config"], dst)
    packed["packed"] = {"from": src.name, "optimizer": "bfloat16" if optimizer else "none"}
    (dst / "checkpoints").mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "log.csv", "val.csv"):
        if (src / name).is_file():
            with atomic_path(dst / name) as tmp:
                shutil.copyfile(src / name, tmp)
    atomic_torch_save(packed, checkpoint_path(dst, "last"))
    return checkpoint_path(dst, "last")


def _bf16_state(state_dict: dict) -> dict:
    """An optimizer state dict with its floating tensors of more than one element in bfloat16
    (``load_state_dict`` casts them back to the parameters' dtype)."""
    out = dict(state_dict)
    out["state"] = {k: {n: v.bfloat16() if torch.is_tensor(v) and v.is_floating_point() and v.numel() > 1 else v
                        for n, v in st.items()} for k, st in state_dict["state"].items()}
    return out


def check_same_run(out: Path, record: dict, added_later: dict | None = None) -> dict | None:
    """The checkpoint to resume (``OUT/checkpoints/last.pt``) or None. :class:`FaceflowError`
    when ``out`` holds a run (checkpoint or ``config.json``) with a config other than ``record``
    (options in ``added_later`` that an older run lacks count as their old meaning: :func:`config_diff`)."""
    last = checkpoint_path(out, "last")
    ckpt = old = None
    if last.is_file():
        ckpt = load_checkpoint(last)
        old = ckpt.get("config")
    elif (out / "config.json").is_file():
        try:
            old = json.loads((out / "config.json").read_text())
        except (OSError, ValueError):
            old = None
    if old is not None:
        # a checkpoint holds the full paths: compare them as they are; config.json holds portable
        # paths only (faceflow.runtime.provenance), so then compare the portable forms
        if ckpt is not None and ckpt.get("packed"):  # made elsewhere: data matched by name
            diffs = config_diff(_by_data_names(old), _by_data_names(portable_record(record, out)), added_later)
        elif ckpt is not None:
            diffs = config_diff(old, record, added_later)
        else:
            diffs = config_diff(portable_record(old, out), portable_record(record, out), added_later)
        if diffs:
            raise FaceflowError(
                f"{out} holds a run with a different configuration ({'; '.join(diffs)}); only "
                f"{', '.join(RESUMABLE_KEYS[1:])} may change on resume. Use --overwrite to start over "
                f"or choose another --out.")
    return ckpt
