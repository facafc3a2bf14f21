"""The harness's deterministic data order: the sample indices of global step ``s`` are positions
``s*B .. s*B + B - 1`` of an endless stream made of one seeded permutation per epoch
(``numpy.random.default_rng([seed, epoch])``), so a run resumed at step ``s`` continues with
exactly the same batches; under DDP rank ``r`` takes slice ``r`` of each global batch."""

from __future__ import annotations

import signal
from typing import Iterator

import numpy as np
import torch

from faceflow.data.splits import evenly_spaced
from faceflow.errors import FaceflowError


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


class Indexed(torch.utils.data.Dataset):
    """Adds ``"index"`` (the item's index in ``ds``, a 0-d int64 tensor) to the dict items of ``ds``."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = self.ds[i]
        if not isinstance(item, dict):
            raise FaceflowError(f"dataset items must be dicts of tensors, got {type(item).__name__}")
        return {**item, "index": torch.tensor(int(i), dtype=torch.int64)}


def worker_init(_) -> None:
    """``worker_init_fn`` of the harness's data loaders."""
    # Ctrl-C is handled by the main process (it finishes the step and checkpoints); a worker
    # dying on SIGINT would abort the run instead
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # data-loader workers run beside the main process: one thread each


def val_subset(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices of ``n`` (all when k == 0 or k >= n):
    :func:`faceflow.data.splits.evenly_spaced`."""
    return evenly_spaced(n, k if k > 0 else None)
