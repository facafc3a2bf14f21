"""Small torch helpers shared by every network of the toolkit (DeepFaceFlow's and the
reenactment renderer's), inference, the training harness and the weights files: the parameter
count, unwrapping DDP, and the one device resolver."""
from __future__ import annotations

import torch
import torch.nn as nn

from faceflow.errors import FaceflowError


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def resolve_device(name: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``'auto'`` (or None) -> CUDA when available, else CPU; ``'cuda'`` -> ``cuda:local_rank``;
    a CUDA device fails clearly without a GPU."""
    name = "auto" if name is None else str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FaceflowError("device 'cuda' requested but no CUDA GPU is available (use --device cpu)")
        name = name if ":" in name else f"cuda:{local_rank}"
        index = name.partition(":")[2]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise FaceflowError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                                f"(cuda:0 .. cuda:{torch.cuda.device_count() - 1})")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise FaceflowError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from e
    if dev.type not in ("cpu", "cuda", "mps"):
        raise FaceflowError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise FaceflowError("device 'mps' requested but this machine has no Apple GPU (use --device cpu)")
    return dev
