"""The process side of a run: DDP when started by ``torchrun`` (:class:`Distributed`: gloo on
CPU, nccl on CUDA; a no-op when ``WORLD_SIZE`` is 1), the rank (:func:`dist_rank`) and the stop
signals (:class:`StopFlags`: SIGTERM and a first Ctrl-C finish the running step, then the
harness checkpoints and stops)."""

from __future__ import annotations

import os
import signal
import sys
import threading

import torch
import torch.distributed as dist

from faceflow.errors import FaceflowError
from faceflow.runtime.threads import worker_threads


def dist_rank() -> int:
    """This process's rank under ``torchrun`` (0 otherwise), from the environment."""
    return int(os.environ.get("RANK", "0"))


class Distributed:
    """torch.distributed state of this process (a no-op when WORLD_SIZE is 1)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = False

    def init(self, device: torch.device) -> None:
        """Join the process group (backend by ``device``) when WORLD_SIZE > 1."""
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
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on one."""
        if not self.active:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean_dict(self, d: dict[str, float], device: torch.device, weight: float = 1.0) -> dict[str, float]:
        """Average of each rank's values, weighted by ``weight`` (e.g. its sample count)."""
        if not self.active:
            return d
        keys = [sorted(d)]
        dist.broadcast_object_list(keys, src=0)
        keys = keys[0]
        t = torch.tensor([float(d.get(k, 0.0)) * weight for k in keys] + [float(weight)],
                         dtype=torch.float64, device=device)
        dist.all_reduce(t)
        w = t[-1].item()
        return {k: (t[i].item() / w if w > 0 else float("nan")) for i, k in enumerate(keys)}

    def gather(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` alone)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
        self.active = False


class StopFlags:
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
