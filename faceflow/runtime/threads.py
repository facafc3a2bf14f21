"""CPU threads that behave on a busy machine.

OpenMP (torch's CPU thread pool) by default spins while it waits for work. When another process
is busy on one of the cores, the spinning threads and the neighbour fight for the cores and a
ResNet-18 forward pass at batch 1 on a 2-core machine goes from about 110 ms to about 950 ms
(measured: 946 ms with the default policy, 110 ms with ``OMP_WAIT_POLICY=PASSIVE``). Users meet
that all the time: a training job runs beside the app or a flow estimation, data-loader workers
run beside the main process, several jobs share a workstation. The price of passive waiting is
paid on a quiet machine: waking a sleeping thread for each parallel region makes many small
operations (batch 1, the rasteriser) about 1.5x slower; ``OMP_WAIT_POLICY=ACTIVE`` gets the
spinning speed back on a dedicated machine (see the README's "Threads on a busy machine").

- :func:`prefer_passive_wait` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy;
  it must run before torch is first imported (OpenMP reads it once, when it loads). Every entry
  point (the ``faceflow`` command, ``python -m`` of each package, the app) calls it first, and so
  does importing ``faceflow``, ``vid2vid``, ``reenact``, ``evaluation`` or ``apps``.
- :func:`worker_threads` sizes the thread pool of one of several concurrent workers (the
  training harness uses it for DDP processes on a CPU), and :func:`subprocess_env` gives a child
  process that size (for worker processes started by the toolkit, such as the dataset builder's).
- Data-loader workers run one thread each (the harness's worker init, as torch's DataLoader does).
- The app runs one job at a time (its jobs share one queue slot), in threads of its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def prefer_passive_wait() -> None:
    """``OMP_WAIT_POLICY=PASSIVE`` unless it is set already (the user's environment wins)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_threads(workers: int, cores: int | None = None) -> int:
    """Threads for each of ``workers`` concurrent processes sharing ``cores`` (default: all of
    this process's): the cores split evenly, at least one each."""
    cores = cpu_count() if cores is None else cores
    return max(1, cores // max(1, workers))


def subprocess_env(threads: int, env: dict | None = None) -> dict:
    """A copy of ``env`` (default ``os.environ``) for a child process limited to ``threads``
    threads: OMP / MKL / OpenBLAS pools and ffmpeg's decoding sized, passive waiting unless the
    parent chose a policy."""
    out = dict(os.environ if env is None else env)
    # FACEFLOW_FFMPEG_THREADS: decoder and filter threads of the ffmpeg processes faceflow.io.video starts
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FACEFLOW_FFMPEG_THREADS"):
        out[key] = str(max(1, int(threads)))
    out.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return out


class busy_neighbour:
    """Context manager: a child process that keeps one core busy (a pure-Python spin loop, no
    threads of its own) while the block runs; for benchmarks that measure contention.

        with busy_neighbour():
            slow_ms = time_it(...)
    """

    def __init__(self, processes: int = 1):
        self.processes = processes
        self._procs: list = []

    def __enter__(self) -> "busy_neighbour":
        code = "import time\nend = time.monotonic() + 3600\nwhile time.monotonic() < end: pass\n"
        self._procs = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                       for _ in range(self.processes)]
        time.sleep(0.3)  # let it start spinning
        return self

    def __exit__(self, *exc) -> None:
        for p in self._procs:
            p.kill()
        for p in self._procs:
            p.wait()
        self._procs = []
