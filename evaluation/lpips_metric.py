"""LPIPS (Zhang et al. 2018, AlexNet trunk, the ``lpips`` package's v0.1 linear layers) from local
files only, for the self-reenactment tables (:mod:`evaluation.self_reenact`).

The AlexNet ImageNet weights are torchvision's ``alexnet-owt-7be5be79.pth``, looked up as
``$FACEFLOW_ALEXNET`` or in the torch cache (:func:`find_alexnet_weights`); nothing is ever
downloaded: without the file :class:`LPIPSMetric` is unavailable and says why.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from evaluation.self_reenact_metrics import check_frames
from faceflow.errors import FaceflowError
from faceflow.io.safeload import load_tensors
from faceflow.runtime.assets import ALEXNET_FILENAME, find_torch_weights, torch_cache_candidates
from reenact.data import to_signed

__all__ = ["ALEXNET_FILENAME", "find_alexnet_weights", "LPIPSMetric"]


def _alexnet_search_paths(path=None) -> list[Path]:
    return torch_cache_candidates(ALEXNET_FILENAME, "FACEFLOW_ALEXNET", path)


def find_alexnet_weights(path=None) -> Path | None:
    """The local AlexNet ImageNet weights LPIPS needs: ``path`` if given, else
    ``$FACEFLOW_ALEXNET``, else torchvision's cache file; None when absent. Never downloads."""
    return find_torch_weights(ALEXNET_FILENAME, "FACEFLOW_ALEXNET", path)


class LPIPSMetric:
    """LPIPS (AlexNet trunk, the ``lpips`` package's v0.1 linear layers) from local files only.

    ``available`` False with a ``reason`` when the package or the AlexNet weights
    (:func:`find_alexnet_weights`) are missing; :meth:`__call__` then returns NaN. The trunk is
    built untrained (no download) and the weights file is loaded into it.
    """

    def __init__(self, weights_path=None, device="cpu"):
        self.device = torch.device(device)
        self.net = None
        self.weights_path = find_alexnet_weights(weights_path)
        self.reason = ""
        try:
            import lpips  # loaded only when scoring (it pulls in torchvision); missing: LPIPS is n/a
        except ImportError as e:
            self.reason = f"the lpips package is not installed ({e})"
            return
        if self.weights_path is None:
            searched = ", ".join(str(p) for p in _alexnet_search_paths(weights_path))
            self.reason = (f"LPIPS needs torchvision's AlexNet ImageNet weights {ALEXNET_FILENAME}, not found "
                           f"(searched: {searched}); nothing is downloaded. Put the file there (or point "
                           f"FACEFLOW_ALEXNET at it) and score again.")
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        _load_alexnet(net.net, self.weights_path)
        self.net = net.eval().requires_grad_(False).to(self.device)

    @property
    def available(self) -> bool:
        return self.net is not None

    @torch.no_grad()
    def __call__(self, fake, real, batch: int = 16) -> float:
        """Mean LPIPS over frames of fake, real (T, H, W, 3) uint8; NaN when unavailable."""
        fake, real = check_frames(fake, real)
        if self.net is None:
            return float("nan")
        vals = []
        for s in range(0, len(fake), batch):
            a = to_signed(fake[s:s + batch]).to(self.device)
            b = to_signed(real[s:s + batch]).to(self.device)
            vals.append(self.net(a, b).flatten().double().cpu())
        return float(torch.cat(vals).mean())



def _load_alexnet(trunk, path: Path) -> None:
    """Load torchvision's AlexNet state dict (``features.<i>.<weight|bias>``) from ``path`` into
    the lpips package's AlexNet trunk (``slice<k>.<i>.<weight|bias>``); FaceflowError when the
    file is not torchvision's AlexNet."""
    sd = load_tensors(path, "AlexNet weights file", "not a readable AlexNet weights file (corrupt or truncated?)")
    if not isinstance(sd, dict):
        raise FaceflowError(f"{path}: expected a state dict, got {type(sd).__name__}")
    target = {}
    for sname in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for idx, mod in getattr(trunk, sname).named_children():
            for pname, _ in mod.named_parameters(recurse=False):
                key = f"features.{idx}.{pname}"
                if key not in sd:
                    raise FaceflowError(f"{path}: no {key!r}; not torchvision's AlexNet weights")
                target[f"{sname}.{idx}.{pname}"] = sd[key]
    try:
        trunk.load_state_dict(target, strict=True)
    except RuntimeError as e:
        raise FaceflowError(f"{path}: does not fit AlexNet ({e})") from e
