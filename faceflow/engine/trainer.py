"""The one training harness: ``python -m faceflow train TASK ...`` and :func:`train`.

A *task* (:class:`~faceflow.engine.task.Task`) says what to build and how one step trains; the
harness does the rest, identically for every network of the project (3DMeshReg, DFFNet, the
synthesiser's GAN). Its parts, one module each under ``faceflow/engine/``:

- **config** (:mod:`~faceflow.engine.config`, :mod:`~faceflow.runtime.flags`): :class:`TrainConfig`
  + the task's own dataclass, saved as ``OUT/config.json``; each field is a command-line flag;
- **deterministic data order** (:mod:`~faceflow.engine.sampler`): the sample indices of global
  step ``s`` are positions ``s*B .. s*B + B - 1`` of an endless stream made of one seeded
  permutation per epoch (``numpy.random.default_rng([seed, epoch])``), so resuming at step ``s``
  continues with exactly the same batches; under DDP rank ``r`` takes slice ``r`` of the global
  batch. Augmentation randomness comes from :meth:`StepContext.rand`, a function of
  ``(seed, step, sample index)`` only (never of worker or rank state);
- **checkpoints** (:mod:`~faceflow.engine.checkpoint`) ``OUT/checkpoints/last.pt`` every
  ``ckpt_every`` steps, at the end, when the time budget ``max_minutes`` is used, on Ctrl-C and on
  SIGTERM (the running step finishes first), and ``best.pt`` whenever the validation metric
  ``val_metric`` improves (lower is better). Written atomically (temporary file in the same
  folder, flush + fsync, ``os.replace``); they hold models, optimizers, LR schedulers, the AMP
  scaler, step, config and RNG states, all loadable with ``torch.load(weights_only=True)``;
- **resume**: rerunning the same command continues from ``last.pt``. A different config is
  refused unless ``--overwrite`` (which starts over); only :data:`RESUMABLE_KEYS` (iteration
  count, time budget, validation/checkpoint/log cadence, workers) may change;
- **logs** (:mod:`~faceflow.engine.logbook`) ``OUT/log.csv`` (step, epoch, elapsed_s, lr, the
  train scalars averaged over the last ``log_every`` steps), ``OUT/val.csv``, TensorBoard events
  in ``OUT/tb`` with ``--tensorboard``; a tqdm bar with the running loss. ``OUT/manifest.json``
  is written last when all iterations are done;
- **AMP** on CUDA only (``torch.autocast`` bf16 or fp16 + ``GradScaler`` for fp16), gradient
  clipping, both hidden behind :meth:`StepContext.backward` / :meth:`StepContext.step`;
- **DDP** (:mod:`~faceflow.engine.distributed`) when started by ``torchrun`` (``WORLD_SIZE`` > 1):
  gloo on CPU, nccl on CUDA, models wrapped in ``DistributedDataParallel`` (BatchNorm synchronised
  on CUDA), batches sharded, validation metrics averaged over ranks (weighted by their sample
  counts), only rank 0 writes.

This module holds the loop: :class:`Trainer`, one run in named steps (:meth:`~Trainer.resume`,
:meth:`~Trainer.step`, :meth:`~Trainer.validate`, :meth:`~Trainer.checkpoint`,
:meth:`~Trainer.finish`), and :func:`train`, which runs them.

LR schedule (our documented choice; DeepFaceFlow's Fig. 4 shows a step schedule without giving
its steps): :func:`lr_factor` = linear warm-up over ``warmup_steps``, then piecewise constant:
the base LR for the first half, multiplied by ``lr_gamma`` (0.5) at 50 %, 70 % and 85 % of the
iterations (``lr_milestones``). The milestones are fractions of the *current* ``iterations``.
"""
from __future__ import annotations

import contextlib
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

# save_json is looked up on the package at each call (tests/test_train_ddp.py watches the writes)
import faceflow.io as fio
from faceflow.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    atomic_torch_save,
    check_same_run,
    checkpoint_path,
    clear_run,
    config_record,
    portable_record,
    rng_state,
    set_rng_state,
)
from faceflow.engine.config import AMP_MODES, TrainConfig
from faceflow.engine.distributed import Distributed, StopFlags
from faceflow.engine.logbook import CsvLog
from faceflow.engine.sampler import Indexed, StepBatchSampler, val_subset, worker_init
from faceflow.engine.task import StepContext, Task
from faceflow.engine.weights import FORMAT as WEIGHTS_FORMAT
from faceflow.errors import FaceflowError
from faceflow.io.safeload import load_tensors
from faceflow.nets.modules import resolve_device, unwrap
from faceflow.runtime.provenance import command_line, portable_json, provenance


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


def _schedule(cfg: TrainConfig):
    """The LR multiplier of step s (a plain function, as LambdaLR stores it in its state: None)."""
    return lambda s: lr_factor(s, cfg.iterations, cfg.warmup_steps, cfg.lr_milestones, cfg.lr_gamma)


def _to_device(batch, device: torch.device):
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


@contextlib.contextmanager
def evaluating(models: dict[str, nn.Module]):
    """The models in eval mode without gradients inside the block, back in train mode after it."""
    for m in models.values():
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m in models.values():
            m.train()


class Trainer:
    """One invocation of a training run of ``task`` with ``cfg`` in ``cfg.out``, in named steps;
    :meth:`run` takes them in order:

    1. :meth:`resume`: start over (``overwrite``) or refuse a different run in the directory;
       seed, build data, models, optimizers, LR schedules, then load ``last.pt`` when there is one;
    2. :meth:`open_outputs` (``config.json``, the CSV logs, TensorBoard) and :meth:`distribute`
       (DDP wrapping, the data loaders);
    3. per batch, :meth:`step` (one optimisation step), :meth:`log` when due, :meth:`validate`
       when due, :meth:`checkpoint` when due or stopping;
    4. :meth:`finish`: the summary and, when all iterations are done, ``manifest.json``.

    ``dist`` is this process's :class:`Distributed` state (already initialised) and ``device``
    the device of its rank. The run's progress (``global_step``, ``elapsed``, ``best``,
    ``val_metrics``, the open log window) is what checkpoints hold.
    """

    def __init__(self, task: Task, cfg: TrainConfig, dist: Distributed, device: torch.device,
                 command: str | None = None, progress: bool = True):
        self.t_start = time.perf_counter()
        self.task, self.cfg, self.dist, self.device, self.progress = task, cfg, dist, device, progress
        self.out = Path(cfg.out)
        self.last = checkpoint_path(self.out, "last")
        self.notes: list[str] = []
        self.amp_dtype, note = resolve_amp(cfg.amp, device)
        if note:
            self._note(note)
        self.record = config_record(task, cfg)
        # the command line as typed (kept in checkpoints and exported weights)
        self.command = command_line() if command is None else command
        # the run's progress (saved in checkpoints)
        self.global_step, self.elapsed, self.best, self.val_metrics = 0, 0.0, None, None
        self.window: dict[str, float] = {}
        self.n_window = 0
        # this invocation
        self.resumed, self.status, self.start_step, self.ema = False, "done", 0, None
        self.t_run = time.perf_counter()
        self.log_csv = self.val_csv = self.tb = self.bar = None
        self.lr_used: dict[str, float] = {}

    # ---- messages
    def say(self, msg: str) -> None:
        """Print ``msg`` to stderr on rank 0."""
        if self.dist.main:
            print(msg, file=sys.stderr, flush=True)

    def _note(self, msg: str) -> None:
        self.notes.append(msg)
        self.say(msg)

    # ---- the run
    def run(self, overwrite: bool = False) -> dict:
        """All the steps; returns :meth:`finish`'s summary."""
        self.resume(overwrite)
        self.open_outputs()
        self.distribute()
        self.fit()
        return self.finish()

    def resume(self, overwrite: bool = False) -> None:
        """Clear the run directory (``overwrite``) or check that it holds this run; build
        everything; continue from ``last.pt`` when there is one."""
        if overwrite:
            if self.dist.main:
                clear_run(self.out)
            self.dist.barrier()
        ckpt = check_same_run(self.out, self.record, getattr(self.task, "added_later", None))
        self._build()
        if ckpt is not None:
            self._load(ckpt)
        elif self.cfg.init_weights:
            self._init_from(self.cfg.init_weights)
        factor = _schedule(self.cfg)(self.global_step)  # a function of the step and the current `iterations`
        for sch in self.schedulers.values():
            for g, base in zip(sch.optimizer.param_groups, sch.base_lrs):
                g["lr"] = base * factor

    def _build(self) -> None:
        """Seeds, datasets, models (on the device, train mode), optimizers, LR schedulers, AMP scaler."""
        cfg, task = self.cfg, self.task
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.train_ds, self.val_ds = task.datasets(cfg)
        if self.train_ds is None or len(self.train_ds) == 0:
            raise FaceflowError(f"{task.name}: the training set is empty (data: {cfg.data})")
        if cfg.batch_size % self.dist.world:
            raise FaceflowError(f"global batch size {cfg.batch_size} is not divisible by the {self.dist.world} "
                                f"processes")
        self.models = task.build()
        for m in self.models.values():
            m.to(self.device).train()
        self.optimizers = task.optimizers(self.models, cfg)
        self.schedulers = {name: torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
                           for name, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.wrapped = dict(self.models)

    def _init_from(self, path: str) -> None:
        """Fine-tuning: the networks' weights (only) from a weights file of this task's kind or
        from a training checkpoint of this task (read with ``weights_only=True``)."""
        obj = load_tensors(Path(path), "--init-weights file", "not a readable weights file or checkpoint")
        fmt = obj.get("format") if isinstance(obj, dict) else None
        if fmt == CHECKPOINT_FORMAT:
            states = obj.get("models") or {}
        elif fmt == WEIGHTS_FORMAT:
            if obj.get("kind") != self.task.name:
                raise FaceflowError(f"--init-weights {path} holds {obj.get('kind')!r} weights; this run trains "
                                    f"{self.task.name!r}")
            if not isinstance(obj.get("state_dict"), dict):
                raise FaceflowError(f"--init-weights {path}: a weights file without a state_dict (corrupt?)")
            states = {self.task.export_spec(self.models)["model"]: obj["state_dict"]}
        else:
            raise FaceflowError(f"--init-weights {path}: neither a faceflow weights file nor a training checkpoint")
        for name, m in self.models.items():
            if name not in states:
                raise FaceflowError(f"--init-weights {path} holds no {name!r} network (it has {sorted(states)})")
            try:
                m.load_state_dict(states[name])
            except RuntimeError as e:  # another architecture or size
                raise FaceflowError(f"--init-weights {path}: its {name!r} network does not fit this run's: {e}") from e
        self._note(f"initialised {', '.join(self.models)} from {path}")

    def _load(self, ckpt: dict) -> None:
        """The state of checkpoint ``ckpt``: weights, optimizers, schedulers, scaler, progress, RNG."""
        try:
            for name, m in self.models.items():
                m.load_state_dict(ckpt["models"][name])
            for name, opt in self.optimizers.items():
                if "optimizers" in ckpt or not ckpt.get("packed"):  # a run packed without them starts fresh
                    opt.load_state_dict(ckpt["optimizers"][name])
            for name, sch in self.schedulers.items():
                sch.load_state_dict(ckpt["schedulers"][name])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise FaceflowError(f"{self.last}: cannot resume from this checkpoint ({type(e).__name__}: {e}); "
                                f"use --overwrite to start over") from e
        self.global_step, self.elapsed, self.best = int(ckpt["step"]), float(ckpt.get("elapsed", 0.0)), ckpt.get("best")
        self.window, self.n_window = dict(ckpt.get("log_window", {})), int(ckpt.get("log_count", 0))
        self.val_metrics = ckpt.get("val_metrics")
        rng = ckpt.get("rng", [])
        if len(rng) == self.dist.world:
            set_rng_state(rng[self.dist.rank])
        elif rng:
            set_rng_state(rng[0])
        self.resumed = True
        self.say(f"resuming {self.out} at step {self.global_step}/{self.cfg.iterations}")

    def open_outputs(self) -> None:
        """Rank 0: ``config.json`` (with provenance), ``log.csv`` / ``val.csv`` (cut back to the
        checkpoint's step on resume), TensorBoard; the old ``manifest.json`` goes."""
        if self.dist.main:
            out = self.out
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            (out / "manifest.json").unlink(missing_ok=True)
            fio.save_json(out / "config.json", {
                **portable_record(self.record, out),
                "provenance": provenance(self.command, weights=self.task.weights_files(), device=self.device,
                                         base=out)})
            keep = self.global_step if self.resumed else None
            self.log_csv = CsvLog(out / "log.csv", keep_until=keep)
            self.val_csv = CsvLog(out / "val.csv", keep_until=keep)
            if self.cfg.tensorboard:
                self.tb = self._tensorboard(keep)
        self.dist.barrier()

    def _tensorboard(self, purge_step: int | None):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional, and slow to import

            return SummaryWriter(str(self.out / "tb"), purge_step=purge_step)
        except Exception as e:  # tensorboard not installed
            self._note(f"note: TensorBoard logging disabled ({type(e).__name__}: {e})")
            return None

    def distribute(self) -> None:
        """DDP-wrap the trainable models (under torchrun), make the step context and the
        validation loader (this rank's shard of the validation subset)."""
        cfg, dist, device = self.cfg, self.dist, self.device
        if dist.active:
            for name, m in self.models.items():
                if any(p.requires_grad for p in m.parameters()):
                    if device.type == "cuda":
                        m = nn.SyncBatchNorm.convert_sync_batchnorm(m)
                    self.wrapped[name] = nn.parallel.DistributedDataParallel(
                        m, device_ids=[device.index] if device.type == "cuda" else None,
                        find_unused_parameters=self.task.find_unused_parameters)
            self.models = {k: unwrap(v) for k, v in self.wrapped.items()}
        self.ctx = StepContext(device, cfg.seed, self.amp_dtype, self.scaler, self.optimizers, cfg.grad_clip,
                               dist.rank, dist.world)
        self.loader_kw = dict(num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                              worker_init_fn=worker_init if cfg.num_workers else None)
        self.val_loader, self.val_count = None, 0
        if self.val_ds is not None and len(self.val_ds) > 0:
            idx = val_subset(len(self.val_ds), cfg.val_samples)[dist.rank::dist.world]
            self.val_loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(self.val_ds, idx.tolist()), batch_size=max(1, cfg.batch_size // dist.world),
                shuffle=False, generator=torch.Generator().manual_seed(cfg.seed), **self.loader_kw)
            self.val_count = len(idx)

    def train_loader(self, start: int) -> torch.utils.data.DataLoader:
        """This rank's batches of steps ``start .. iterations - 1`` (items with their ``"index"``)."""
        cfg, dist = self.cfg, self.dist
        return torch.utils.data.DataLoader(
            Indexed(self.train_ds), batch_sampler=StepBatchSampler(len(self.train_ds), cfg.batch_size, cfg.seed,
                                                                   start, cfg.iterations, dist.rank, dist.world),
            generator=torch.Generator().manual_seed(cfg.seed), **self.loader_kw)

    # ---- the loop
    def fit(self) -> None:
        """Steps until done, the time budget is used or a signal arrives; a Ctrl-C raised inside
        a step saves ``last.pt`` only when no optimizer has stepped yet (and not under DDP)."""
        cfg = self.cfg
        if self.dist.main and self.progress and self.global_step < cfg.iterations:
            self.bar = tqdm(total=cfg.iterations, initial=self.global_step, desc=f"train {self.task.name}",
                            unit="it", dynamic_ncols=True)
        self.status, self.t_run, self.start_step, self.ema = "done", time.perf_counter(), self.global_step, None
        with StopFlags() as flags:
            try:
                for batch in self.train_loader(self.global_step):
                    self.step(batch)
                    if self._after_step(flags):
                        break
            except KeyboardInterrupt:
                if not self.ctx.stepped and not self.dist.active:
                    self.checkpoint("interrupted")
                    self.say(f"interrupted: saved {self.last} at step {self.global_step}; rerun the same "
                             f"command to resume")
                else:
                    self.say(f"interrupted mid-step: kept the previous {self.last}")
                raise
            finally:
                if self.bar is not None:
                    self.bar.close()
                if self.tb is not None:
                    self.tb.close()

    def step(self, batch: dict) -> dict[str, float]:
        """One optimisation step on ``batch`` (a dict of tensors with ``"index"``): the task's
        :meth:`~Task.train_step`, the schedulers, the step count, the running log window.
        Returns the step's scalars (averaged over the ranks)."""
        ctx, device = self.ctx, self.device
        ctx.begin(self.global_step, batch.pop("index").cpu())
        batch = _to_device(batch, device)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.lr_used = self._lrs()
        metrics = self.task.train_step(batch, self.wrapped, ctx)
        if self.scaler.is_enabled():
            self.scaler.update()
        for sch in self.schedulers.values():
            sch.step()
        self.global_step += 1
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics.update({f"grad_norm_{k}": v for k, v in ctx.grad_norms.items()})
        metrics = self.dist.mean_dict(metrics, device)
        for k, v in metrics.items():
            self.window[k] = self.window.get(k, 0.0) + v
        self.n_window += 1
        if "loss" in metrics:
            self.ema = metrics["loss"] if self.ema is None else 0.9 * self.ema + 0.1 * metrics["loss"]
        if self.bar is not None:
            self.bar.update(1)
            if self.ema is not None:
                self.bar.set_postfix(loss=f"{self.ema:.4g}")
        return metrics

    def _lrs(self) -> dict[str, float]:
        if len(self.optimizers) == 1:
            return {"lr": next(iter(self.optimizers.values())).param_groups[0]["lr"]}
        return {f"lr_{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()}

    def _after_step(self, flags: StopFlags) -> bool:
        """Log, validate, checkpoint as due after a step; True when the run stops here."""
        cfg, step = self.cfg, self.global_step
        now = self.elapsed + time.perf_counter() - self.t_run
        if step % cfg.log_every == 0 or step == cfg.iterations:
            self.log(now)
        which = []
        if self.val_loader is not None and (step % cfg.val_every == 0 or step == cfg.iterations):
            if self.validate(now):
                which.append("best")
        stop = self._stop_reason(flags)
        if stop or step % cfg.ckpt_every == 0:
            which.append("last")
        if which:
            self.checkpoint(stop or "running", tuple(which))
        if stop:
            self.status = stop
        return bool(stop)

    def _stop_reason(self, flags: StopFlags) -> str | None:
        """'done', 'time budget', the signal's name, or None (collective under DDP)."""
        budget = self.cfg.max_minutes * 60.0
        if self.global_step >= self.cfg.iterations:
            return "done"
        if self.dist.any(budget > 0 and time.perf_counter() - self.t_start >= budget, self.device):
            return "time budget"
        if self.dist.any(flags.signal is not None, self.device):
            return flags.signal or "SIGTERM"
        return None

    def log(self, now: float) -> None:
        """A ``log.csv`` row (and TensorBoard scalars): the LR and the window's mean scalars."""
        step = self.global_step
        row = {"step": step, "epoch": round(step * self.cfg.batch_size / len(self.train_ds), 4),
               "elapsed_s": round(now, 3), **self.lr_used,
               **{k: v / self.n_window for k, v in self.window.items()}}
        if self.dist.main:
            self.log_csv.write(row)
            if self.tb is not None:
                for k, v in row.items():
                    if k not in ("step", "epoch"):
                        self.tb.add_scalar(f"train/{k}", v, step)
        self.window, self.n_window = {}, 0

    def validate(self, now: float) -> bool:
        """Validation metrics (averaged over ranks, weighted by their samples) into ``val.csv``,
        the task's samples (rank 0); True when ``val_metric`` improved on the best so far."""
        with evaluating(self.models):
            metrics = self.task.validate(self.models, self.val_loader, self.ctx) if self.val_count else {}
        metrics = self.dist.mean_dict({k: float(v) for k, v in metrics.items()}, self.device, weight=self.val_count)
        if "val_metric" not in metrics:
            raise FaceflowError(f"{self.task.name}.validate must return a 'val_metric' entry, got {sorted(metrics)}")
        self.val_metrics = metrics
        if self.dist.main:
            self.val_csv.write({"step": self.global_step, "elapsed_s": round(now, 3), **metrics})
            if self.tb is not None:
                for k, v in metrics.items():
                    self.tb.add_scalar(f"val/{k}", v, self.global_step)
            with evaluating(self.models):
                self.task.write_samples(self.models, self.out, self.global_step, self.ctx)
        improved = self.best is None or metrics["val_metric"] < self.best
        if improved:
            self.best = float(metrics["val_metric"])
        if self.bar is not None:
            self.bar.write(f"step {self.global_step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        return improved

    # ---- checkpoints and the end
    def state(self, status: str) -> dict:
        """The checkpoint's content (collective: gathers the RNG states of every rank)."""
        rng = self.dist.gather(rng_state())
        return {"format": CHECKPOINT_FORMAT, "task": self.task.name, "status": status, "step": self.global_step,
                "elapsed": self.elapsed + (time.perf_counter() - self.t_run), "config": self.record,
                "command": self.command,
                "models": {k: m.state_dict() for k, m in self.models.items()},
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": rng, "best": self.best, "val_metrics": self.val_metrics,
                "log_window": dict(self.window), "log_count": self.n_window,
                "export": self.task.export_spec(self.models)}

    def checkpoint(self, status: str, which: tuple[str, ...] = ("last",)) -> None:
        """Write ``last.pt`` and / or ``best.pt`` atomically (every rank calls it; rank 0 writes)."""
        st = self.state(status)
        if self.dist.main:
            for w in which:
                atomic_torch_save(st, checkpoint_path(self.out, w))
        self.dist.barrier()

    def finish(self) -> dict:
        """The summary (``step``, ``iterations``, ``status``, ``best``, ``val``, ``notes``,
        ``seconds_per_step``, ``elapsed_s``); ``manifest.json`` when done; KeyboardInterrupt after
        a Ctrl-C (the checkpoint is saved)."""
        cfg, step = self.cfg, self.global_step
        if self.status == "SIGINT":
            self.say(f"stopped by Ctrl-C at step {step}; saved {self.last}; rerun the same command to resume")
            raise KeyboardInterrupt
        if step >= cfg.iterations and self.status in ("done", "time budget"):
            self.status = "done"
        run_s = time.perf_counter() - self.t_run
        summary = {"step": step, "iterations": cfg.iterations, "status": self.status, "best": self.best,
                   "val": self.val_metrics, "notes": self.notes,
                   "seconds_per_step": run_s / max(1, step - self.start_step), "elapsed_s": self.elapsed + run_s}
        if not self.dist.main:
            return summary
        if self.status == "done":
            self._write_manifest(summary)
            self.say(f"done: {step} steps in {self.out}")
        elif self.status == "time budget":
            self.say(f"time budget of {cfg.max_minutes} min used at step {step}/{cfg.iterations}; saved "
                     f"{self.last}; rerun the same command to continue")
        else:
            self.say(f"stopped by {self.status} at step {step}; saved {self.last}; rerun the same command to resume")
        return summary

    def _write_manifest(self, summary: dict) -> None:
        out = self.out
        ckpts = ["checkpoints/last.pt"] + (["checkpoints/best.pt"] if self.best is not None else [])
        prov = provenance(self.command, weights={**self.task.weights_files(),
                                                 **{Path(c).stem + "_checkpoint": out / c for c in ckpts}},
                          device=self.device, base=out)
        fio.save_json(out / "manifest.json", portable_json(
            {"complete": True, **summary, "command": prov["command"], "task": self.task.name, "checkpoints": ckpts,
             "provenance": prov}, out))


def train(task: Task, cfg: TrainConfig, overwrite: bool = False, command: str | None = None,
          progress: bool = True) -> dict:
    """Train ``task`` with ``cfg`` (resuming ``cfg.out`` when it holds the same run).

    Returns a summary: ``step``, ``status`` ('done' | 'time budget' | 'SIGTERM'), ``best``
    (best ``val_metric`` or None), ``val`` (last validation metrics), ``notes``,
    ``seconds_per_step`` (this invocation). A first Ctrl-C finishes the step, saves
    ``last.pt`` and raises ``KeyboardInterrupt``.
    """
    cfg.validate()
    dist = Distributed()
    device = resolve_device(cfg.device, dist.local_rank)
    dist.init(device)
    try:
        return Trainer(task, cfg, dist, device, command, progress).run(overwrite)
    finally:
        dist.close()


__all__ = ["Trainer", "train", "lr_factor", "resolve_amp", "evaluating"]
