"""Locating data files that are not part of the repository (morphable model, weights).

Search order for an asset ``NAME`` (e.g. ``ict_facekit/ict_facekit.npz``):

1. the directory named by the environment variable ``FACEFLOW_ASSETS``;
2. ``../shared/assets`` next to the repository root;
3. the user cache ``~/.cache/faceflow/assets`` (``$XDG_CACHE_HOME`` respected).

Within each directory the file may sit at ``NAME`` or at its bare file name.
"""

from __future__ import annotations

import os
from pathlib import Path

from faceflow.errors import AssetNotFoundError

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1 file (LPIPS)

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS_DIR = REPO_ROOT / "faceflow" / "weights"  # the shipped weights files (model cards beside them)
ENV_VAR = "FACEFLOW_ASSETS"

HOW_TO_GET = {
    "ict_facekit": (
        "The ICT FaceKit morphable model (MIT licence, https://github.com/ICT-VGL/ICT-FaceKit) "
        "is used as numpy archives 'ict_facekit.npz' (skin: face, head, neck) and "
        "'ict_facekit_full_f16.npz' (with mouth socket, teeth and eyes). Put them in a folder "
        f"'ict_facekit/' inside one of the searched directories, or point {ENV_VAR} at the folder "
        "that contains 'ict_facekit/'. The project's shared folder (../shared/assets) holds a copy."
    ),
}


def search_dirs() -> list[Path]:
    """Directories searched for assets, in priority order."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(REPO_ROOT.parent / "shared" / "assets")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    dirs.append(cache / "faceflow" / "assets")
    return dirs


def media_dir() -> Path:
    """The real test media (videos, stills): ``$FACEFLOW_MEDIA`` or ``<repo>/../shared/media``."""
    return Path(os.environ.get("FACEFLOW_MEDIA", REPO_ROOT.parent / "shared" / "media"))


def find_asset(name: str) -> Path:
    """Return the path of asset ``name`` (a relative path such as ``ict_facekit/ict_facekit.npz``).

    Raises :class:`AssetNotFoundError` listing every place that was looked at and how to
    obtain the file.
    """
    rel = Path(name)
    tried = []
    for d in search_dirs():
        for cand in (d / rel, d / rel.name):
            tried.append(cand)
            if cand.is_file():
                return cand
    family = rel.parts[0] if len(rel.parts) > 1 else rel.stem
    hint = HOW_TO_GET.get(family, f"Place '{rel}' in one of these directories or set {ENV_VAR}.")
    looked = "\n  ".join(str(t) for t in dict.fromkeys(tried))
    raise AssetNotFoundError(f"Asset '{name}' not found. Looked in:\n  {looked}\n{hint}")


def torch_cache_candidates(filename: str, env: str, path=None) -> list[Path]:
    """Where a pretrained backbone's weights file may be, in order: ``path`` alone when given,
    else ``$<env>``, else torchvision's cache ``$TORCH_HOME/hub/checkpoints/<filename>``
    (``TORCH_HOME`` defaults to ``~/.cache/torch``). Nothing is ever downloaded."""
    if path is not None:
        return [Path(path).expanduser()]
    out = []
    if os.environ.get(env):
        out.append(Path(os.environ[env]).expanduser())
    torch_home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch").expanduser()
    out.append(torch_home / "hub" / "checkpoints" / filename)
    return out


def find_torch_weights(filename: str, env: str, path=None) -> Path | None:
    """The first existing file of :func:`torch_cache_candidates`, or None."""
    return next((p for p in torch_cache_candidates(filename, env, path) if p.is_file()), None)
