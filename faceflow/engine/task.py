"""What a training task is: :class:`Task` (what to build, how one step trains, how to validate),
:class:`SimpleTask` (one network, one loss) and :class:`StepContext` (what a step may use: AMP,
the optimizer step with gradient clipping, per-sample randomness). The registered tasks of
``faceflow train NAME`` are :data:`TASKS`, imported by :func:`load_task` when a run starts."""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from faceflow.engine.config import TrainConfig
from faceflow.errors import FaceflowError

# training tasks of `faceflow train NAME`: "module:Class", imported when a run starts (the
# command's options and presets come from faceflow.engine.dff_options without importing them)
TASKS = {
    "meshreg": "faceflow.engine.dff_tasks:MeshRegTask",
    "dffnet": "faceflow.engine.dff_tasks:DFFNetTask",
}


def sample_seed(seed: int, step: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (seed, step, index)."""
    st = np.random.SeedSequence([int(seed), int(step), int(index)]).generate_state(2, np.uint32)
    return int((int(st[0]) << 31) ^ int(st[1]))


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

    def begin(self, iteration: int, indices: torch.Tensor) -> None:
        """Start the step ``iteration`` (0-based) on the samples ``indices`` ((b,) int64 CPU)."""
        self.iteration, self.indices = iteration, indices
        self.stepped.clear()
        self.grad_norms.clear()

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

    # task-config options added after runs were recorded: {"key" or "key.sub": what a record
    # without it meant}, so those runs still resume (faceflow.engine.checkpoint.config_diff)
    added_later: dict = {}

    def config_dict(self) -> dict:
        return asdict(self.config) if self.config is not None else {}

    # ---- command line (``faceflow train NAME``: faceflow/commands/train.py adds the flags of the
    # registered tasks from faceflow.engine.dff_options, then builds the task with presets() and from_args)
    @classmethod
    def presets(cls) -> dict[str, dict]:
        """``{preset: {"train": TrainConfig kwargs, "task": task-config kwargs}}``."""
        return {"default": {"train": {}, "task": {}}}

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
