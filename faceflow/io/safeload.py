"""Safe loading of user-supplied torch files (weights, checkpoints, ImageNet state dicts).

:func:`load_tensors` always reads with ``torch.load(weights_only=True)``. When torch refuses a
file, its pickle is scanned with :mod:`pickletools` (parsed, never executed) for references
outside torch's allow-list, so a file holding other objects is reported as refused for safety
(:class:`UnsafeFileError`: nothing in it was executed) and a truncated or corrupt one as
unreadable; torch's advice to retry with ``weights_only=False`` is never repeated. Every loader
of the toolkit goes through here (weights files, training checkpoints, backbone and loss weights).
"""
from __future__ import annotations

import _compat_pickle
import io
import os
import pickletools
import zipfile
from pathlib import Path

import torch

from faceflow.errors import FaceflowError


class UnsafeFileError(FaceflowError):
    """A weights or checkpoint file holding objects other than tensors and plain containers:
    refused by :func:`load_tensors`, never unpickled (nothing in it was executed)."""


# pieces of torch's weights-only refusals that mean "this file holds other objects"
_OBJECT_MARKERS = ("unsupported global", "allowed global", "is blocked", "trying to call reduce",
                   "can only build", "can only create new object", "add_safe_globals")
# lines of torch's messages that are advice on getting round the refusal: never repeated
_ADVICE = ("weights_only", "weights only load failed", "likely succeed", "trusted source", "file an issue",
           "check the documentation", "add_safe_globals", "allowlist", "arbitrary code")
_STRING_OPS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
               "BINUNICODE8"}
_SCAN_BYTES = 64 << 20


def _allowed_globals() -> set[str]:
    """``module.name`` of the globals torch's weights-only unpickler accepts."""
    try:
        from torch import _weights_only_unpickler as wu

        names = set(wu._get_allowed_globals())
        if hasattr(wu, "_get_user_allowed_globals"):
            names |= set(wu._get_user_allowed_globals())
        return names
    except Exception:  # a torch without these private helpers: tensors, storages, dtypes, containers
        return {"collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset",
                "builtins.bytearray", "builtins.complex", "_codecs.encode", "torch.Size", "torch.Tensor",
                "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2"} | {
            f"torch.{n}" for n in dir(torch) if n.endswith(("Storage", "Tensor")) or
            isinstance(getattr(torch, n, None), torch.dtype)}


def _pickle_globals(data: bytes, max_pickles: int = 8) -> list[str]:
    """``module.name`` of every global (class or function) the pickle stream(s) in ``data``
    refer to, found with :mod:`pickletools` (which only parses: nothing is imported or run).
    Reads successive pickles (torch's legacy format holds several) until the bytes stop parsing."""

    names: list[str] = []
    f = io.BytesIO(data)
    for _ in range(max_pickles):
        if f.tell() >= len(data):
            break
        recent: list = []  # the values pushed last: STACK_GLOBAL takes its module and name from them
        memo: dict = {}
        found: list[str] = []  # kept once the pickle parses to its STOP (not from garbage bytes)
        try:
            for op, arg, _pos in pickletools.genops(f):
                name = op.name
                if name in ("GLOBAL", "INST"):
                    found.append(".".join(str(arg).split(" ", 1)))
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    mod, attr = (recent[-2:] if len(recent) >= 2 else [None, None])
                    found.append(f"{mod}.{attr}" if isinstance(mod, str) and isinstance(attr, str) else "?")
                    recent.append(None)
                elif name == "STOP":
                    names.extend(found)
                elif name in _STRING_OPS:
                    recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(arg))
                elif name not in ("FRAME", "PROTO"):
                    recent.append(None)
                del recent[:-4]
        except Exception:  # not (or no longer) a pickle: raw storage bytes, truncation, garbage
            break
    return names


def _foreign_globals(path: Path) -> list[str]:
    """The globals the file's pickles refer to that torch's weights-only unpickler refuses
    (classes, functions: what a file of tensors never needs); [] when none or unreadable."""

    chunks = []
    try:
        if zipfile.is_zipfile(path):  # torch's format: ARCHIVE/data.pkl (+ ARCHIVE/data/N storages)
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.rsplit("/", 1)[-1].endswith(".pkl") and info.file_size <= _SCAN_BYTES:
                        chunks.append(z.read(info))
        else:  # torch's legacy format or a bare pickle
            with open(path, "rb") as f:
                chunks.append(f.read(_SCAN_BYTES))
    except Exception:
        return []

    def py3(n: str) -> str:
        mod, _, attr = n.rpartition(".")
        mod, attr = _compat_pickle.NAME_MAPPING.get((mod, attr), (mod, attr))
        return f"{_compat_pickle.IMPORT_MAPPING.get(mod, mod)}.{attr}"

    allowed = _allowed_globals()
    found = [py3(n) for data in chunks for n in _pickle_globals(data)]
    return list(dict.fromkeys(n for n in found if n not in allowed))


def _torch_reason(e: BaseException) -> str:
    """torch's error message without its advice on how to load the file anyway."""
    msg = str(e).replace("\x1b[1m", "").replace("\x1b[0m", "")
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    keep = [ln.strip() for ln in msg.splitlines()
            if ln.strip() and not any(a in ln.lower() for a in _ADVICE)]
    reason = " ".join(keep)[:200]
    return f"{type(e).__name__}: {reason}" if reason else type(e).__name__


def load_tensors(path: str | os.PathLike, what: str = "weights file", unreadable: str | None = None):
    """``torch.load(path, map_location='cpu', weights_only=True)`` of a user-supplied file, with
    errors that name it. Never loads with ``weights_only=False`` and never advises to.

    Raises :class:`UnsafeFileError` when the file holds objects other than tensors and plain
    containers (a pickled class or function: refused for safety, nothing in it is executed), and
    :class:`FaceflowError` ``"PATH: UNREADABLE: reason"`` when it is corrupt, truncated or not a
    torch file (``unreadable`` defaults to ``"not a readable WHAT (corrupt or truncated?)"``).
    ``what`` names the kind of file in the messages ("weights file", "checkpoint", ...).
    """
    p = Path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, not a torch file, or pickled objects
        err = e
    foreign = _foreign_globals(p)
    if foreign or any(m in str(err).lower() for m in _OBJECT_MARKERS):
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UnsafeFileError(
            f"{p}: refused for safety: this {what} holds objects other than tensors"
            f"{f' ({shown})' if shown else ''}, which could run code when loaded; it was not loaded and "
            f"nothing in it was executed. Use a {what} that holds only tensors (e.g. a state dict), "
            f"from a source you trust.") from None
    msg = unreadable or f"not a readable {what} (corrupt or truncated?)"
    raise FaceflowError(f"{p}: {msg}: {_torch_reason(err)}") from None  # torch's own text advises otherwise
