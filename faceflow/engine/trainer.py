"""The one training harness: ``python -m faceflow train TASK ...`` and :func:`train`.

A *task* (:class:`Task`) says what to build and how one step trains; the harness does the rest,
identically for every network of the project (3DMeshReg, DFFNet, later the synthesiser's GAN):

- **config**: :class:`TrainConfig` + the task's own dataclass, saved as ``OUT/config.json``;
- **deterministic data order**: the sample indices of global step ``s`` are positions
  ``s*B .. s*B + B - 1`` of an endless stream made of one seeded permutation per epoch
  (``numpy.random.default_rng([seed, epoch])``), so resuming at step ``s`` continues with
  exactly the same batches; under DDP rank ``r`` takes slice ``r`` of the global batch.
  Augmentation randomness comes from :meth:`StepContext.rand`, a function of
  ``(seed, step, sample index)`` only (never of worker or rank state);
- **checkpoints** ``OUT/checkpoints/last.pt`` every ``ckpt_every`` steps, at the end, when the
  time budget ``max_minutes`` is used, on Ctrl-C and on SIGTERM (the running step finishes
  first), and ``best.pt`` whenever the validation metric ``val_metric`` improves (lower is
  better). Written atomically (temporary file in the same folder, flush + fsync,
  ``os.replace``); they hold models, optimizers, LR schedulers, the AMP scaler, step, config
  and RNG states, all loadable with ``torch.load(weights_only=True)``;
- **resume**: rerunning the same command continues from ``last.pt``. A different config is
  refused unless ``--overwrite`` (which starts over); only :data:`RESUMABLE_KEYS` (iteration
  count, time budget, validation/checkpoint/log cadence, workers) may change;
- **logs** ``OUT/log.csv`` (step, epoch, elapsed_s, lr, the train scalars averaged over the last
  ``log_every`` steps), ``OUT/val.csv``, TensorBoard events in ``OUT/tb`` with
  ``--tensorboard``; a tqdm bar with the running loss. ``OUT/manifest.json`` is written last
  when all iterations are done;
- **AMP** on CUDA only (``torch.autocast`` bf16 or fp16 + ``GradScaler`` for fp16), gradient
  clipping, both hidden behind :meth:`StepContext.backward` / :meth:`StepContext.step`;
- **DDP** when started by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU, nccl on CUDA, models
  wrapped in ``DistributedDataParallel`` (BatchNorm synchronised on CUDA), batches sharded,
  validation metrics averaged over ranks (weighted by their sample counts), only rank 0 writes.

LR schedule (our documented choice; DeepFaceFlow's Fig. 4 shows a step schedule without giving
its steps): :func:`lr_factor` = linear warm-up over ``warmup_steps``, then piecewise constant:
the base LR for the first half, multiplied by ``lr_gamma`` (0.5) at 50 %, 70 % and 85 % of the
iterations (``lr_milestones``). The milestones are fractions of the *current* ``iterations``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from faceflow.data.splits import evenly_spaced
from faceflow.engine.config import AMP_MODES, DEVICES, TrainConfig, add_common_arguments, config_from_args
from faceflow.errors import FaceflowError
from faceflow.io import atomic_path
from faceflow.io.safeload import load_tensors
from faceflow.nets.modules import (  # resolve_device: re-exported (faceflow.engine.trainer.resolve_device)
    resolve_device,
    unwrap,
)
from faceflow.runtime.provenance import portable_json, portable_path
from faceflow.runtime.threads import worker_threads

CHECKPOINT_FORMAT = "faceflow-checkpoint/1"
CONFIG_FORMAT = "faceflow-train-config/1"
# TrainConfig fields that may differ when a run is resumed (they do not change what is learnt
# from the steps already taken); ``out`` is where the run lives, not what it is.
RESUMABLE_KEYS = ("out", "iterations", "max_minutes", "val_every", "ckpt_every", "log_every",
                  "num_workers", "tensorboard")
# the files a run writes in OUT (removed by --overwrite; nothing else in OUT is touched)
RUN_FILES = ("checkpoints", "config.json", "log.csv", "val.csv", "tb", "manifest.json", "samples")
# training tasks of `faceflow train NAME`: "module:Class", imported when a run starts (the
# command's options and presets come from faceflow.engine.task_options without importing them)
TASKS = {
    "meshreg": "faceflow.engine.tasks:MeshRegTask",
    "dffnet": "faceflow.engine.tasks:DFFNetTask",
}


def lr_factor(step: int, iterations: int, warmup_steps: int = 50, milestones=(0.5, 0.7, 0.85),
              gamma: float = 0.5) -> float:
    """LR multiplier of the optimisation step with 0-based index ``step`` (our documented step
    schedule, after DeepFaceFlow's Fig. 4): ``min(1, (step + 1) / warmup_steps)`` times
    ``gamma ** k`` with k the number of milestones ``m`` passed (``step >= m * iterations``)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    k = sum(1 for m in milestones if step >= m * iterations)
    return warm * gamma ** k



def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """(autocast dtype or None, note or None). AMP is CUDA-only: on CPU it is turned off with
    a note; bf16 on a GPU without bf16 support falls back to fp16 with a note."""
    if amp not in AMP_MODES:
        raise FaceflowError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "off":
        return None, None
    if device.type != "cuda":
        return None, f"note: --amp {amp} ignored on {device.type} (mixed precision is CUDA-only); training in float32"
    if amp == "bf16":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, None
        return torch.float16, "note: this GPU has no bf16 support; using fp16 with gradient scaling"
    return torch.float16, None


# ============================================================================ tasks
class StepContext:
    """What a task's :meth:`Task.train_step` / :meth:`Task.validate` may use.

    Attributes: ``device``, ``iteration`` (0-based index of the step being taken), ``indices``
    (the local batch's global sample indices, (b,) int64 CPU), ``seed``, ``rank``, ``world_size``.
    """

    def __init__(self, device: torch.device, seed: int, amp_dtype: torch.dtype | None = None,
                 scaler=None, optimizers: dict | None = None, grad_clip: float = 0.0,
                 rank: int = 0, world_size: int = 1):
        self.device, self.seed, self.amp_dtype, self.scaler = device, int(seed), amp_dtype, scaler
        self.optimizers = optimizers or {}
        self.grad_clip, self.rank, self.world_size = float(grad_clip), rank, world_size
        self.iteration = 0
        self.indices = torch.zeros(0, dtype=torch.int64)
        self.stepped: set[str] = set()
        self.grad_norms: dict[str, float] = {}

    def autocast(self):
        """Context manager: ``torch.autocast`` on CUDA with the configured dtype, else a no-op.
        Wrap network forwards in it and compute losses in float32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor, opt_name: str | None = None) -> None:
        """``loss.backward()``, scaled by the fp16 gradient scaler when active."""
        if self.scaler is not None and self.scaler.is_enabled():
            loss = self.scaler.scale(loss)
        loss.backward()

    def step(self, opt_name: str) -> None:
        """Unscale (fp16), clip (``grad_clip``), step the optimizer ``opt_name``, zero its grads."""
        if opt_name not in self.optimizers:
            raise FaceflowError(f"unknown optimizer {opt_name!r}; this task has {sorted(self.optimizers)}")
        opt = self.optimizers[opt_name]
        scaling = self.scaler is not None and self.scaler.is_enabled()
        if self.grad_clip > 0:
            if scaling:
                self.scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            self.grad_norms[opt_name] = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        if scaling:
            self.scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        self.stepped.add(opt_name)

    def rand(self, n: int) -> torch.Tensor:
        """(b, n) float32 uniform [0, 1) on ``device``: row i is drawn from a generator seeded by
        (seed, iteration, indices[i]), so augmentation never depends on workers, ranks or resumes."""
        rows = [torch.rand(n, generator=torch.Generator().manual_seed(sample_seed(self.seed, self.iteration, int(i))))
                for i in self.indices.tolist()]
        if not rows:
            return torch.zeros(0, n, device=self.device)
        return torch.stack(rows).to(self.device)


def sample_seed(seed: int, step: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (seed, step, index)."""
    st = np.random.SeedSequence([int(seed), int(step), int(index)]).generate_state(2, np.uint32)
    return int((int(st[0]) << 31) ^ int(st[1]))


class Task:
    """Base class of a training task. Subclasses set ``name``, ``config`` (a dataclass) and
    implement :meth:`datasets`, :meth:`build`, :meth:`train_step`, :meth:`validate`.

    Dataset items are dicts of tensors (default ``collate``); the harness adds ``"index"``
    (the sample's index in the training set) to every training batch.
    """

    name = "task"
    find_unused_parameters = False  # passed to DistributedDataParallel

    def __init__(self, config=None):
        self.config = config

    # ---- what to train on and what to train
    def datasets(self, cfg: TrainConfig):
        """(train dataset, validation dataset or None)."""
        raise NotImplementedError

    def build(self) -> dict[str, nn.Module]:
        """The models, by name (on CPU; the harness moves them to the device)."""
        raise NotImplementedError

    def optimizers(self, models: dict[str, nn.Module], cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """One Adam (betas 0.9, 0.999) per model with trainable parameters, named like the model."""
        return {name: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=cfg.lr,
                                       betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
                for name, m in models.items() if any(p.requires_grad for p in m.parameters())}

    # ---- one step and validation
    def train_step(self, batch: dict, models: dict[str, nn.Module], ctx: StepContext) -> dict[str, float]:
        """Forward, ``ctx.backward(loss, opt)``, ``ctx.step(opt)``; return scalars."""
        raise NotImplementedError

    def validate(self, models: dict[str, nn.Module], loader, ctx: StepContext) -> dict[str, float]:
        """Metrics over ``loader`` (models in eval mode, no grad); must contain ``val_metric``
        (lower is better) to select ``best.pt``."""
        raise NotImplementedError

    def write_samples(self, models: dict[str, nn.Module], out: Path, step: int, ctx: StepContext) -> None:
        """Called on rank 0 after every validation (models in eval mode, no grad): write sample
        outputs (pictures, videos) under ``out`` (the run directory). Default: nothing."""

    # ---- export
    def export_spec(self, models: dict[str, nn.Module]) -> dict | None:
        """``{"model": name, "kind": weights kind, "config": constructor kwargs}`` of the network
        that ``train export`` writes (see :mod:`faceflow.engine.weights`), or None."""
        return None

    def weights_files(self) -> dict:
        """``{role: path}`` of the pretrained weights files the run reads, recorded with their
        sha256 in ``manifest.json`` (:mod:`faceflow.runtime.provenance`). Default: the task-config
        fields ending in ``_path`` or ``_weights`` that name an existing file."""
        return {k: v for k, v in self.config_dict().items()
                if isinstance(v, str) and k.endswith(("_path", "_weights")) and Path(v).is_file()}

    def config_dict(self) -> dict:
        return asdict(self.config) if self.config is not None else {}

    # ---- command line (``faceflow train NAME``: faceflow/commands/train.py reads the options and
    # presets of the registered tasks from faceflow.engine.task_options, then builds the task with from_args)
    @classmethod
    def presets(cls) -> dict[str, dict]:
        """``{preset: {"train": TrainConfig kwargs, "task": task-config kwargs}}``."""
        return {"default": {"train": {}, "task": {}}}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Task-specific options (defaults None: taken from the preset)."""

    @classmethod
    def from_args(cls, args, preset_task: dict) -> "Task":
        """The task from the preset's task kwargs overridden by the command line."""
        raise NotImplementedError


class SimpleTask(Task):
    """One model ``"net"``, one optimizer ``"net"``, one loss: implement :meth:`build_model` and
    :meth:`loss` (and :meth:`validate`)."""

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build(self) -> dict[str, nn.Module]:
        return {"net": self.build_model()}

    def loss(self, model: nn.Module, batch: dict, ctx: StepContext) -> tuple[torch.Tensor, dict[str, Any]]:
        """(scalar loss, extra scalars to log)."""
        raise NotImplementedError

    def train_step(self, batch, models, ctx):
        loss, parts = self.loss(models["net"], batch, ctx)
        if not torch.isfinite(loss):
            raise FaceflowError(f"{self.name}: non-finite loss {float(loss)} at step {ctx.iteration + 1}")
        ctx.backward(loss, "net")
        ctx.step("net")
        out = {"loss": float(loss.detach())}
        out.update({k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in parts.items()})
        return out


def load_task(name: str) -> type:
    """The task class registered as ``name`` in :data:`TASKS`."""
    if name not in TASKS:
        raise FaceflowError(f"unknown training task {name!r}; choose one of {sorted(TASKS)}")
    mod, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


# ============================================================================ data order
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of ``epoch``: a permutation of ``n`` from ``default_rng([seed, epoch])``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def step_indices(step: int, n: int, batch: int, seed: int, _cache: dict | None = None) -> np.ndarray:
    """Global sample indices (batch,) of the 0-based ``step``: stream positions
    ``step*batch ... step*batch + batch - 1``, position p -> ``perm(p // n)[p % n]``."""
    pos = step * batch + np.arange(batch)
    ep, off = pos // n, pos % n
    out = np.empty(batch, dtype=np.int64)
    for e in np.unique(ep):
        perm = _cache.get(int(e)) if _cache is not None else None
        if perm is None:
            perm = epoch_permutation(n, seed, int(e))
            if _cache is not None:
                _cache.clear()
                _cache[int(e)] = perm
        sel = ep == e
        out[sel] = perm[off[sel]]
    return out


class StepBatchSampler(torch.utils.data.Sampler):
    """Batch sampler over steps ``start .. stop - 1``: this rank's slice of each global batch."""

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world_size: int = 1):
        if batch % world_size:
            raise FaceflowError(f"global batch size {batch} is not divisible by the {world_size} DDP processes")
        self.n, self.batch, self.seed, self.start, self.stop = n, batch, seed, start, stop
        self.rank, self.local = rank, batch // world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        cache: dict = {}
        for s in range(self.start, self.stop):
            idx = step_indices(s, self.n, self.batch, self.seed, cache)
            yield idx[self.rank * self.local:(self.rank + 1) * self.local].tolist()


class _Indexed(torch.utils.data.Dataset):
    """Adds ``"index"`` to the dict items of ``ds``."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = self.ds[i]
        if not isinstance(item, dict):
            raise FaceflowError(f"dataset items must be dicts of tensors, got {type(item).__name__}")
        return {**item, "index": torch.tensor(int(i), dtype=torch.int64)}


def _worker_init(_):
    # Ctrl-C is handled by the main process (it finishes the step and checkpoints); a worker
    # dying on SIGINT would abort the run instead
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # data-loader workers run beside the main process: one thread each


def _to_device(batch, device: torch.device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def val_subset(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices of ``n`` (all when k == 0 or k >= n):
    :func:`faceflow.data.splits.evenly_spaced`."""

    return evenly_spaced(n, k if k > 0 else None)


# ============================================================================ checkpoints, logs
def checkpoint_path(out: str | os.PathLike, which: str = "last") -> Path:
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


def _rng_state() -> dict:
    np_state = np.random.get_state()
    py = random.getstate()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                    "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
          "python": {"version": py[0], "state": list(py[1]), "gauss": py[2]}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.set_rng_state_all(st["cuda"])


class CsvLog:
    """An append-only CSV with a header; new columns rewrite the file with the wider header.
    ``keep_until`` truncates rows of a resumed run beyond the checkpointed step."""

    def __init__(self, path: Path, keep_until: int | None = None):
        self.path = path
        self.fields: list[str] = []
        rows = self._read()
        if keep_until is None:
            rows = []
        else:
            rows = [r for r in rows if _int(r.get("step")) is not None and _int(r["step"]) <= keep_until]
        self._rewrite(rows)

    def _read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            self.fields = list(reader.fieldnames or [])
            return list(reader)

    def _rewrite(self, rows: list[dict]) -> None:

        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                if self.fields:
                    w.writeheader()
                w.writerows(rows)

    def write(self, row: dict) -> None:
        new = [k for k in row if k not in self.fields]
        if new:
            rows = self._read() if self.fields else []
            self.fields = self.fields + new
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(
                {k: _fmt(v) for k, v in row.items()})


def _int(v):
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def _fmt(v):
    if isinstance(v, float):
        return repr(v)  # exact round trip
    return v


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a log CSV as dicts of floats (empty cells dropped)."""
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


# ============================================================================ the loop
class _Dist:
    """torch.distributed state of this process (a no-op when WORLD_SIZE is 1)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = False

    def init(self, device: torch.device) -> None:
        if self.world <= 1:
            return

        if not dist.is_available():
            raise FaceflowError("WORLD_SIZE > 1 but torch.distributed is not available in this PyTorch build")
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # the processes of this machine share its cores: one pool each of cores / processes
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world))
            torch.set_num_threads(worker_threads(local))
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend=backend)
        self.active = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        if not self.active:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean_dict(self, d: dict[str, float], device: torch.device, weight: float = 1.0) -> dict[str, float]:
        """Average of each rank's values, weighted by ``weight`` (e.g. its sample count)."""
        if not self.active:
            return d
        keys = [sorted(d)]
        torch.distributed.broadcast_object_list(keys, src=0)
        keys = keys[0]
        t = torch.tensor([float(d.get(k, 0.0)) * weight for k in keys] + [float(weight)],
                         dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        w = t[-1].item()
        return {k: (t[i].item() / w if w > 0 else float("nan")) for i, k in enumerate(keys)}

    def gather(self, obj):
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self.active = False


class _StopFlags:
    """SIGTERM and a first Ctrl-C only set a flag: the running step finishes, the harness
    checkpoints and stops. A second Ctrl-C interrupts at once (no checkpoint)."""

    def __init__(self):
        self.signal: str | None = None
        self._old = {}

    def _handler(self, signum, frame):
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.signal == "SIGINT":
            raise KeyboardInterrupt
        self.signal = name
        print(f"\n{name} received: finishing this step, saving last.pt, then stopping "
              f"(press Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


def _config_record(task: Task, cfg: TrainConfig) -> dict:
    return json.loads(json.dumps({"format": CONFIG_FORMAT, "task": task.name, "train": cfg.to_dict(),
                                  "task_config": task.config_dict()}))


def portable_record(record: dict, out) -> dict:
    """A config record (:func:`_config_record`, a checkpoint's ``config``) without the machine's
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


def _config_diff(old: dict, new: dict) -> list[str]:
    diffs = []
    if old.get("task") != new.get("task"):
        diffs.append(f"task: {old.get('task')!r} -> {new.get('task')!r}")
    for section in ("train", "task_config"):
        a, b = old.get(section, {}) or {}, new.get(section, {}) or {}
        for k in sorted(set(a) | set(b)):
            if section == "train" and k in RESUMABLE_KEYS:
                continue
            if a.get(k) != b.get(k):
                diffs.append(f"{section}.{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return diffs



def train(task: Task, cfg: TrainConfig, overwrite: bool = False, command: str | None = None,
          progress: bool = True) -> dict:
    """Train ``task`` with ``cfg`` (resuming ``cfg.out`` when it holds the same run).

    Returns a summary: ``step``, ``status`` ('done' | 'time budget' | 'SIGTERM'), ``best``
    (best ``val_metric`` or None), ``val`` (last validation metrics), ``notes``,
    ``seconds_per_step`` (this invocation). A first Ctrl-C finishes the step, saves
    ``last.pt`` and raises ``KeyboardInterrupt``.
    """
    cfg.validate()
    dist = _Dist()
    device = resolve_device(cfg.device, dist.local_rank)
    dist.init(device)
    try:
        return _train(task, cfg, overwrite, command, progress, dist, device)
    finally:
        dist.close()


# complexity: the training loop in one function; issue 13 splits it into the harness's named steps
def _train(task: Task, cfg: TrainConfig, overwrite: bool, command: str | None, progress: bool,  # noqa: C901
           dist: _Dist, device: torch.device) -> dict:
    t_start = time.perf_counter()
    out = Path(cfg.out)
    notes: list[str] = []
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if dist.main else (lambda msg: None)
    amp_dtype, note = resolve_amp(cfg.amp, device)
    if note:
        notes.append(note)
        say(note)
    record = _config_record(task, cfg)
    if command is None:  # the command line as typed (kept in checkpoints and exported weights)
        from faceflow.runtime.provenance import command_line
        command = command_line()

    # ---- existing run: refuse a different config, or start over with overwrite
    last = checkpoint_path(out, "last")
    if overwrite:
        if dist.main:
            for name in RUN_FILES:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        dist.barrier()
    ckpt = None
    old = None
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
        diffs = (_config_diff(old, record) if ckpt is not None
                 else _config_diff(portable_record(old, out), portable_record(record, out)))
        if diffs:
            raise FaceflowError(
                f"{out} holds a run with a different configuration ({'; '.join(diffs)}); only "
                f"{', '.join(RESUMABLE_KEYS[1:])} may change on resume. Use --overwrite to start over "
                f"or choose another --out.")

    # ---- seeds, data, models
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    train_ds, val_ds = task.datasets(cfg)
    if train_ds is None or len(train_ds) == 0:
        raise FaceflowError(f"{task.name}: the training set is empty (data: {cfg.data})")
    if cfg.batch_size % dist.world:
        raise FaceflowError(f"global batch size {cfg.batch_size} is not divisible by the {dist.world} processes")
    models = task.build()
    for m in models.values():
        m.to(device).train()
    optimizers = task.optimizers(models, cfg)
    schedulers = {name: torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.iterations, cfg.warmup_steps, cfg.lr_milestones, cfg.lr_gamma))
        for name, opt in optimizers.items()}
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, elapsed, best, window, n_window, val_metrics = 0, 0.0, None, {}, 0, None

    if ckpt is not None:
        try:
            for name, m in models.items():
                m.load_state_dict(ckpt["models"][name])
            for name, opt in optimizers.items():
                opt.load_state_dict(ckpt["optimizers"][name])
            for name, sch in schedulers.items():
                sch.load_state_dict(ckpt["schedulers"][name])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise FaceflowError(f"{last}: cannot resume from this checkpoint ({type(e).__name__}: {e}); "
                                f"use --overwrite to start over") from e
        step, elapsed, best = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0)), ckpt.get("best")
        window, n_window = dict(ckpt.get("log_window", {})), int(ckpt.get("log_count", 0))
        val_metrics = ckpt.get("val_metrics")
        rng = ckpt.get("rng", [])
        if len(rng) == dist.world:
            _set_rng_state(rng[dist.rank])
        elif rng:
            _set_rng_state(rng[0])
        say(f"resuming {out} at step {step}/{cfg.iterations}")
    for sch in schedulers.values():  # the schedule is a function of the step and `iterations`
        for g, base in zip(sch.optimizer.param_groups, sch.base_lrs):
            g["lr"] = base * lr_factor(step, cfg.iterations, cfg.warmup_steps, cfg.lr_milestones, cfg.lr_gamma)

    # ---- outputs (rank 0)
    log = vlog = tb = None
    if dist.main:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)
        from faceflow.io import save_json
        from faceflow.runtime.provenance import provenance
        save_json(out / "config.json", {**portable_record(record, out),
                                        "provenance": provenance(command, weights=task.weights_files(),
                                                                 device=device, base=out)})
        log = CsvLog(out / "log.csv", keep_until=step if ckpt is not None else None)
        vlog = CsvLog(out / "val.csv", keep_until=step if ckpt is not None else None)
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                tb = SummaryWriter(str(out / "tb"), purge_step=step if ckpt is not None else None)
            except Exception as e:  # tensorboard not installed
                notes.append(f"note: TensorBoard logging disabled ({type(e).__name__}: {e})")
                say(notes[-1])
    dist.barrier()

    # ---- DDP
    wrapped = dict(models)
    if dist.active:
        for name, m in models.items():
            if any(p.requires_grad for p in m.parameters()):
                if device.type == "cuda":
                    m = nn.SyncBatchNorm.convert_sync_batchnorm(m)
                wrapped[name] = nn.parallel.DistributedDataParallel(
                    m, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=task.find_unused_parameters)
        models = {k: unwrap(v) for k, v in wrapped.items()}

    ctx = StepContext(device, cfg.seed, amp_dtype, scaler, optimizers, cfg.grad_clip, dist.rank, dist.world)
    n_train = len(train_ds)
    loader_kw = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                     worker_init_fn=_worker_init if cfg.num_workers else None)

    def make_loader(start: int):
        return torch.utils.data.DataLoader(
            _Indexed(train_ds), batch_sampler=StepBatchSampler(n_train, cfg.batch_size, cfg.seed, start,
                                                               cfg.iterations, dist.rank, dist.world),
            generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)

    val_loader, val_count = None, 0
    if val_ds is not None and len(val_ds) > 0:
        idx = val_subset(len(val_ds), cfg.val_samples)[dist.rank::dist.world]
        val_loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(val_ds, idx.tolist()), batch_size=max(1, cfg.batch_size // dist.world),
            shuffle=False, generator=torch.Generator().manual_seed(cfg.seed), **loader_kw)
        val_count = len(idx)

    def run_validation() -> dict[str, float]:
        for m in models.values():
            m.eval()
        try:
            with torch.no_grad():
                metrics = task.validate(models, val_loader, ctx) if val_count else {}
        finally:
            for m in models.values():
                m.train()
        metrics = dist.mean_dict({k: float(v) for k, v in metrics.items()}, device, weight=val_count)
        if "val_metric" not in metrics:
            raise FaceflowError(f"{task.name}.validate must return a 'val_metric' entry, got {sorted(metrics)}")
        return metrics

    def state(status: str) -> dict:
        rng = dist.gather(_rng_state())
        return {"format": CHECKPOINT_FORMAT, "task": task.name, "status": status, "step": step,
                "elapsed": elapsed + (time.perf_counter() - t_run), "config": record, "command": command,
                "models": {k: m.state_dict() for k, m in models.items()},
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "rng": rng, "best": best, "val_metrics": val_metrics,
                "log_window": dict(window), "log_count": n_window,
                "export": task.export_spec(models)}

    def save(status: str, which=("last",)) -> None:
        st = state(status)  # collective (gathers RNG states): every rank calls it
        if dist.main:
            for w in which:
                atomic_torch_save(st, checkpoint_path(out, w))
        dist.barrier()

    def lrs() -> dict[str, float]:
        if len(optimizers) == 1:
            return {"lr": next(iter(optimizers.values())).param_groups[0]["lr"]}
        return {f"lr_{k}": o.param_groups[0]["lr"] for k, o in optimizers.items()}

    bar = None
    if dist.main and progress and step < cfg.iterations:
        from tqdm import tqdm
        bar = tqdm(total=cfg.iterations, initial=step, desc=f"train {task.name}", unit="it", dynamic_ncols=True)
    status, t_run, start_step, ema = "done", time.perf_counter(), step, None
    budget = cfg.max_minutes * 60.0
    with _StopFlags() as flags:
        try:
            for batch in make_loader(step):
                ctx.iteration = step
                ctx.indices = batch.pop("index").cpu()
                ctx.stepped.clear()
                ctx.grad_norms.clear()
                batch = _to_device(batch, device)
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                lr_used = lrs()
                metrics = task.train_step(batch, wrapped, ctx)
                if scaler.is_enabled():
                    scaler.update()
                for sch in schedulers.values():
                    sch.step()
                step += 1
                metrics = {k: float(v) for k, v in metrics.items()}
                metrics.update({f"grad_norm_{k}": v for k, v in ctx.grad_norms.items()})
                metrics = dist.mean_dict(metrics, device)
                for k, v in metrics.items():
                    window[k] = window.get(k, 0.0) + v
                n_window += 1
                if "loss" in metrics:
                    ema = metrics["loss"] if ema is None else 0.9 * ema + 0.1 * metrics["loss"]
                if bar is not None:
                    bar.update(1)
                    if ema is not None:
                        bar.set_postfix(loss=f"{ema:.4g}")
                now = elapsed + time.perf_counter() - t_run
                if step % cfg.log_every == 0 or step == cfg.iterations:
                    row = {"step": step, "epoch": round(step * cfg.batch_size / n_train, 4),
                           "elapsed_s": round(now, 3), **lr_used,
                           **{k: v / n_window for k, v in window.items()}}
                    if dist.main:
                        log.write(row)
                        if tb is not None:
                            for k, v in row.items():
                                if k not in ("step", "epoch"):
                                    tb.add_scalar(f"train/{k}", v, step)
                    window, n_window = {}, 0
                which = []
                if val_loader is not None and (step % cfg.val_every == 0 or step == cfg.iterations):
                    val_metrics = run_validation()
                    if dist.main:
                        vlog.write({"step": step, "elapsed_s": round(now, 3), **val_metrics})
                        if tb is not None:
                            for k, v in val_metrics.items():
                                tb.add_scalar(f"val/{k}", v, step)
                    if dist.main:
                        for m in models.values():
                            m.eval()
                        try:
                            with torch.no_grad():
                                task.write_samples(models, out, step, ctx)
                        finally:
                            for m in models.values():
                                m.train()
                    if best is None or val_metrics["val_metric"] < best:
                        best = float(val_metrics["val_metric"])
                        which.append("best")
                    if bar is not None:
                        bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in val_metrics.items()))
                stop = None
                if step >= cfg.iterations:
                    stop = "done"
                elif dist.any(budget > 0 and time.perf_counter() - t_start >= budget, device):
                    stop = "time budget"
                elif dist.any(flags.signal is not None, device):
                    stop = flags.signal or "SIGTERM"
                if stop or step % cfg.ckpt_every == 0:
                    which.append("last")
                if which:
                    save(stop or "running", tuple(which))
                if stop:
                    status = stop
                    break
        except KeyboardInterrupt:
            # raised inside a step: only a step that has not stepped any optimizer can be saved
            if not ctx.stepped and not dist.active:
                save("interrupted")
                say(f"interrupted: saved {last} at step {step}; rerun the same command to resume")
            else:
                say(f"interrupted mid-step: kept the previous {last}")
            raise
        finally:
            if bar is not None:
                bar.close()
            if tb is not None:
                tb.close()
    if status == "SIGINT":
        say(f"stopped by Ctrl-C at step {step}; saved {last}; rerun the same command to resume")
        raise KeyboardInterrupt
    if step >= cfg.iterations and status in ("done", "time budget"):
        status = "done"
    run_s = time.perf_counter() - t_run
    summary = {"step": step, "iterations": cfg.iterations, "status": status, "best": best, "val": val_metrics,
               "notes": notes, "seconds_per_step": run_s / max(1, step - start_step),
               "elapsed_s": elapsed + run_s}
    if dist.main:
        if status == "done":
            from faceflow.io import save_json
            from faceflow.runtime.provenance import portable_json, provenance
            ckpts = ["checkpoints/last.pt"] + (["checkpoints/best.pt"] if best is not None else [])
            prov = provenance(command, weights={**task.weights_files(),
                                                **{Path(c).stem + "_checkpoint": out / c for c in ckpts}},
                              device=device, base=out)
            save_json(out / "manifest.json", portable_json(
                {"complete": True, **summary, "command": prov["command"], "task": task.name, "checkpoints": ckpts,
                 "provenance": prov}, out))
            say(f"done: {step} steps in {out}")
        elif status == "time budget":
            say(f"time budget of {cfg.max_minutes} min used at step {step}/{cfg.iterations}; saved {last}; "
                f"rerun the same command to continue")
        else:
            say(f"stopped by {status} at step {step}; saved {last}; rerun the same command to resume")
    return summary


def dist_rank() -> int:
    return int(os.environ.get("RANK", "0"))


__all__ = ["TrainConfig", "Task", "SimpleTask", "StepContext", "train", "lr_factor", "resolve_amp",
           "resolve_device", "step_indices", "epoch_permutation", "StepBatchSampler", "sample_seed",
           "checkpoint_path", "load_checkpoint", "atomic_torch_save", "read_csv", "CsvLog", "TASKS",
           "load_task", "add_common_arguments", "config_from_args", "RESUMABLE_KEYS", "CHECKPOINT_FORMAT",
           "AMP_MODES", "DEVICES"]
