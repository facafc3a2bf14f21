"""What a user needs to reproduce a result, for the manifests the commands write.

:func:`provenance` returns the small dict every manifest carries under ``"provenance"``::

    {"command": "faceflow flow a.png b.png --out out",     # as typed, program as the user's command name
     "versions": {"faceflow": "0.1.0", "python": "3.11.9", "torch": "2.5.1", "numpy": "2.1.3", ...},
     "git_commit": "0123abcd...", "git_dirty": False,       # None outside a git checkout / without git
     "weights": {"dffnet": {"file": "faceflow/weights/dffnet.pt", "bytes": 4988969, "sha256": "..."}},
     "device": "cpu (2 cores, 2 torch threads)"}             # only when the caller gives one

Paths in manifests are never the machine's absolute paths (:func:`portable_path`): a file
inside the output directory is written relative to it, a file inside the repository relative
to the repository root, anything else by its bare name (with its size and sha256 where it is
an input file, :func:`file_record`). A path a reader must find again is written relative to
the manifest's directory (``climb=True``: ``../videos/clip.mp4``) and resolved with
:func:`resolve_recorded`. :func:`portable_json` applies the same rule to every absolute path
in a JSON-able object (e.g. a weights file's meta made on another machine).

Only modules that are already imported are asked for their version (plus torch and numpy,
read from the installed package metadata when not imported), so recording provenance never
slows a command's start-up; git is asked once per process and its absence is not an error.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from faceflow import __version__

__all__ = ["provenance", "command_line", "portable_command", "versions", "git_commit", "git_state",
           "file_sha256", "file_record", "weights_records", "portable_path", "portable_json",
           "resolve_recorded", "device_text", "running_module", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]

# import name -> distribution names (for the version when the module is not imported yet)
_DISTRIBUTIONS = {
    "torch": ("torch",), "numpy": ("numpy",), "torchvision": ("torchvision",),
    "cv2": ("opencv-contrib-python", "opencv-python", "opencv-python-headless"),
    "mediapipe": ("mediapipe",), "scipy": ("scipy",), "skimage": ("scikit-image",), "lpips": ("lpips",),
}
# always listed (metadata lookup when not imported; cheap, imports nothing)
_REQUIRED = ("torch", "numpy")
# listed when the run imported them (what the result depends on)
_OPTIONAL = ("torchvision", "cv2", "mediapipe", "scipy", "skimage", "lpips")


def running_module() -> str | None:
    """The module Python runs with ``-m`` (``faceflow`` for ``python -m faceflow``), else None."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None or not spec.name:
        return None
    return spec.name[:-len(".__main__")] if spec.name.endswith(".__main__") else spec.name


# ---------------------------------------------------------------------- hashing

_SHA_CACHE: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks; cached per (path, size, mtime) so a file is
    hashed once per process."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


# ---------------------------------------------------------------------- paths

def _is_within(p: Path, root: Path) -> bool:
    try:
        p.relative_to(root)
        return True
    except ValueError:
        return False


def portable_path(path: str | os.PathLike, base: str | os.PathLike | None = None, *, climb: bool = False) -> str:
    """``path`` without the machine's absolute part: relative to ``base`` (the output
    directory) when inside it, else relative to the repository root when inside the
    repository, else (``climb``) relative to ``base`` through ``..`` when the two share a
    directory below the filesystem root, else the bare file name. Relative paths are taken
    relative to the current directory."""
    p = Path(os.path.abspath(os.fspath(path)))
    b = Path(os.path.abspath(os.fspath(base))) if base is not None else None
    if b is not None and _is_within(p, b):
        return p.relative_to(b).as_posix() or "."
    if _is_within(p, REPO_ROOT):
        return p.relative_to(REPO_ROOT).as_posix()
    if climb and b is not None:
        try:
            common = Path(os.path.commonpath([p, b]))
        except ValueError:  # different drives
            common = Path(p.anchor)
        if common != Path(common.anchor):
            return Path(os.path.relpath(p, b)).as_posix()
    return p.name


def resolve_recorded(recorded: str | os.PathLike, manifest_dir: str | os.PathLike) -> Path:
    """A path written by :func:`portable_path` back to a usable path: relative ones are taken
    relative to the manifest's directory (absolute ones, from older manifests, as they are)."""
    p = Path(recorded)
    return p if p.is_absolute() else Path(manifest_dir) / p


def file_record(path: str | os.PathLike, base: str | os.PathLike | None = None, *, climb: bool = False) -> dict:
    """``{"file", "bytes", "sha256"}`` of an input or weights file (``file``: :func:`portable_path`)."""
    p = Path(path)
    return {"file": portable_path(p, base, climb=climb), "bytes": p.stat().st_size, "sha256": file_sha256(p)}


def weights_records(weights: Mapping[str, Any] | None, base: str | os.PathLike | None = None) -> dict:
    """``{role: file_record}`` of the weights / model files that exist (None and missing entries
    are left out: a result made without them says so by their absence)."""
    out = {}
    for role, path in (weights or {}).items():
        if path is not None and Path(path).is_file():
            out[role] = file_record(path, base)
    return out


_ABS = re.compile(r"(?<![\w./~:-])/(?!/)[^\s'\"`,;()\[\]{}<>|]*/[^\s'\"`,;()\[\]{}<>|]*")


def _scrub_text(s: str, base) -> str:
    """Absolute paths in free text (two or more components) made portable."""
    if "/" not in s:
        return s
    if os.path.isabs(s) and "\n" not in s and " " not in s:
        return portable_path(s, base)
    def one(m: re.Match) -> str:  # a sentence-ending full stop stays outside the path
        return portable_path(m.group(0).rstrip("."), base) + ("." if m.group(0).endswith(".") else "")
    return _ABS.sub(one, s)


def portable_json(obj: Any, base: str | os.PathLike | None = None) -> Any:
    """A copy of a JSON-able object with every absolute path made portable
    (:func:`portable_path`; values under a ``"command"`` key by :func:`portable_command`)."""
    if isinstance(obj, Mapping):
        return {k: (portable_command(v) if k == "command" and isinstance(v, str) else portable_json(v, base))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_json(v, base) for v in obj]
    if isinstance(obj, os.PathLike):
        obj = os.fspath(obj)
    if isinstance(obj, str):
        return _scrub_text(obj, base)
    return obj


# ---------------------------------------------------------------------- command

def _module_name(script: str) -> str | None:
    """``.../faceflow/__main__.py`` -> ``faceflow``; ``.../evaluation/self_reenact.py`` ->
    ``evaluation.self_reenact`` (when its folder is a package), else None."""
    p = Path(script)
    if p.suffix != ".py":
        return None
    parts = [] if p.stem == "__main__" else [p.stem]
    d = p.parent
    while (d / "__init__.py").is_file():
        parts.insert(0, d.name)
        d = d.parent
    return ".".join(parts) or None


def _program(argv0: str, from_sys: bool) -> list[str]:
    """The program as the user typed it: ``python -m pkg``, ``python script.py`` or the
    console script's name (``faceflow``)."""
    if from_sys:
        if (name := running_module()):
            return ["python", "-m", name]
    if argv0 in ("-c", "-", ""):  # python -c CODE, a script on stdin, an embedded interpreter
        return ["python", argv0] if argv0 else ["python"]
    if argv0.endswith(".py"):
        mod = _module_name(argv0) if os.path.isabs(argv0) or os.sep in argv0 else None
        if mod and (argv0.endswith("__main__.py") or _is_within(Path(os.path.abspath(argv0)), REPO_ROOT)):
            return ["python", "-m", mod]
        return ["python", _portable_arg(argv0)]
    if os.path.isabs(argv0) or os.sep in argv0:
        return [os.path.basename(argv0)]
    return [argv0]


def _portable_arg(a: str) -> str:
    """An absolute path argument -> relative to the current directory when inside it, else
    to the repository, else its name; ``--opt=/abs/path`` likewise; anything else unchanged."""
    if a.startswith("-") and "=" in a:
        k, v = a.split("=", 1)
        return f"{k}={_portable_arg(v)}"
    if not os.path.isabs(a):
        return a
    p = Path(os.path.abspath(a))
    cwd = Path.cwd()
    if _is_within(p, cwd):
        return p.relative_to(cwd).as_posix() or "."
    return portable_path(p)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as the user typed it (``shlex.join``), from ``argv`` (default ``sys.argv``;
    ``argv[0]`` is the program), with the program shown as the user's command name
    (``faceflow ...``, ``python -m faceflow ...``) and absolute paths made portable."""
    from_sys = argv is None
    argv = [str(a) for a in (sys.argv if argv is None else argv)]
    if not argv:
        return ""
    return shlex.join(_program(argv[0], from_sys) + [_portable_arg(a) for a in argv[1:]])


def portable_command(command: str | Sequence[str] | None) -> str | None:
    """A command string (or argv list) someone else built, made portable like
    :func:`command_line` (``/venv/bin/faceflow`` -> ``faceflow``, ``/repo/faceflow/__main__.py``
    -> ``python -m faceflow``, absolute path arguments shortened)."""
    if command is None:
        return None
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError:  # unbalanced quotes: keep the text, paths scrubbed
            return _scrub_text(command, None)
    else:
        argv = [str(a) for a in command]
    if not argv:
        return ""
    return shlex.join(_program(argv[0], False) + [_portable_arg(a) for a in argv[1:]])


# ---------------------------------------------------------------------- environment

def _dist_version(names) -> str | None:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions(extra: Sequence[str] = ()) -> dict:
    """``{"faceflow", "python", "torch", "numpy", ...}``: torch and numpy always, the modules
    of :data:`_OPTIONAL` (cv2, mediapipe, ...) when already imported, and those named in
    ``extra`` (import names; read from the package metadata when not imported)."""

    v = {"faceflow": __version__, "python": platform.python_version()}
    for name in (*_REQUIRED, *_OPTIONAL, *extra):
        if name in v:
            continue
        mod = sys.modules.get(name)
        ver = getattr(mod, "__version__", None) if mod is not None else None
        if ver is None and (name in _REQUIRED or name in extra):
            ver = _dist_version(_DISTRIBUTIONS.get(name, (name,)))
        if ver is not None:
            v[name] = str(ver)
    return v


@functools.lru_cache(maxsize=1)
def git_state() -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout the code runs from; (None, None)
    when it is not a git checkout or git is missing."""
    if not (REPO_ROOT / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10)
        if head.returncode:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=20)
        return head.stdout.strip() or None, (bool(dirty.stdout.strip()) if dirty.returncode == 0 else None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def git_commit() -> str | None:
    """The commit of the checkout the code runs from, or None."""
    return git_state()[0]


def device_text(device) -> str:
    """``'cuda:0 (NVIDIA H200)'`` or ``'cpu (16 cores, 8 torch threads)'``."""
    dev = str(device)
    torch = sys.modules.get("torch")
    if dev.startswith("cuda") and torch is not None:
        try:
            return f"{dev} ({torch.cuda.get_device_name(torch.device(dev))})"
        except Exception:  # no CUDA here: the name as given
            return dev
    if dev.startswith("cpu"):
        threads = f", {torch.get_num_threads()} torch threads" if torch is not None else ""
        return f"cpu ({os.cpu_count()} cores{threads})"
    return dev


def provenance(command: str | Sequence[str] | None = None, *, argv: Sequence[str] | None = None,
               weights: Mapping[str, Any] | None = None, device=None, base: str | os.PathLike | None = None,
               libraries: Sequence[str] = ()) -> dict:
    """The provenance record of a result (see the module docstring).

    ``command``: a command string (or argv list) already built by the caller, made portable;
    else ``argv`` (``argv[0]`` the program; default ``sys.argv``) through :func:`command_line`.
    ``weights``: ``{role: path}`` of the weights / model files used (hashed once per process;
    ``base``: the output directory their paths are written relative to when inside it).
    ``device``: the torch device used (omitted when None). ``libraries``: import names to list
    besides the defaults (e.g. ``("lpips", "skimage")``).
    """
    commit, dirty = git_state()
    rec = {"command": portable_command(command) if command is not None else command_line(argv),
           "versions": versions(libraries), "git_commit": commit, "git_dirty": dirty,
           "weights": weights_records(weights, base)}
    if device is not None:
        rec["device"] = device_text(device)
    return rec
