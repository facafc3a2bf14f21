"""The flow benchmark's methods (:mod:`evaluation.flow_benchmark`), built from the names of
:data:`evaluation.flow_config.METHODS`: trained DFFNets run through :class:`faceflow.FaceFlow`
(:class:`DFFNetMethod`), the 3DMM fit difference, OpenCV's 2D optical flow and zero flow
(:mod:`evaluation.baselines`). Each is ``method(batch) -> (B, 224, 224, 3)`` flow in template
pixels with ``name``, ``label``, ``dims`` (3, or 2 for 2D-only flow), ``meta()`` and ``close()``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from evaluation.baselines import FitDifference, OpenCVFlow, ZeroFlow
from evaluation.flow_config import METHODS
from faceflow.engine.weights import MESHREG_KINDS, load_weights
from faceflow.errors import FaceflowError
from faceflow.estimate import FaceFlow, meshreg_triangles
from faceflow.geometry.morphable import MorphableModel
from faceflow.io.safeload import load_tensors
from faceflow.runtime.provenance import file_sha256

__all__ = ["DFFNetMethod", "HybridMethod", "build_methods"]

# weights option -> the use_pncc its DFFNet must have
_PNCC_MODE = {"dffnet": "full", "dffnet_depth": "depth", "dffnet_nopncc": "none"}


class DFFNetMethod:
    """A trained DFFNet as a benchmark method, run through :class:`faceflow.FaceFlow` (the shipped
    inference path: :meth:`~faceflow.FaceFlow.estimate_registered`): ``method(batch) -> (B, 224,
    224, 3)``, DFFNet's finest prediction at every pixel (``dense_flow``, scored on the
    ground-truth mask).

    ``pncc_source``: 'meshreg' (FaceFlow renders the PNCC, eq. (3), of 3DMeshReg's mesh of I1 with
    the triangles of the 3DMeshReg weights), 'gt' (the batch's ``"pncc"``, an oracle), or 'none'
    (for a network built with ``use_pncc='none'``).
    """

    dims = 3

    def __init__(self, name: str, label: str, flow, pncc_source: str = "meshreg", weights: dict | None = None):
        if pncc_source not in ("meshreg", "gt", "none"):
            raise FaceflowError(f"pncc_source must be 'meshreg', 'gt' or 'none', got {pncc_source!r}")
        use = getattr(flow.dffnet, "use_pncc", "full")
        if (use == "none") != (pncc_source == "none"):
            raise FaceflowError(f"{name}: a DFFNet with use_pncc={use!r} cannot take pncc_source={pncc_source!r}")
        if pncc_source == "meshreg" and flow.meshreg is None:
            raise FaceflowError(f"{name}: PNCC from 3DMeshReg needs a FaceFlow with the 3DMeshReg network")
        self.name, self.label = name, label
        self.flow = flow
        self.pncc_source = pncc_source
        self.weights = weights or {}
        self.failures = 0

    def __call__(self, batch: dict) -> torch.Tensor:
        pncc = batch["pncc"].float() if self.pncc_source == "gt" else None
        out = self.flow.estimate_registered(batch["i1"].float(), batch["i2"].float(), pncc=pncc)
        # a decomposed network's head-motion flow (B, H, W, 3), scored against the pairs' head_flow
        self.last_head_flow = out["dense_head_flow"].float().cpu() if "dense_head_flow" in out else None
        return out["dense_flow"].float().cpu()

    def meta(self) -> dict:
        return {"pncc_source": self.pncc_source, "use_pncc": getattr(self.flow.dffnet, "use_pncc", None),
                "weights": self.weights}

    def close(self) -> None:
        self.flow.close()


def _weights_info(path: str | Path) -> dict:
    """Path, kind, config, meta and SHA-256 of a weights file (read with weights_only=True)."""
    p = Path(path)
    if not p.is_file():
        raise FaceflowError(f"weights file {p} not found")
    d = load_tensors(p, "weights file", "cannot read weights file (corrupt or truncated?)")
    if not isinstance(d, dict) or "kind" not in d:
        raise FaceflowError(f"{p} is not a faceflow weights file (no 'kind' entry)")
    # the absolute path stays in memory (run_benchmark's results make it portable)
    return {"path": str(p.resolve()), "kind": d.get("kind"), "format": d.get("format"),
            "config": d.get("config"), "meta": d.get("meta"), "sha256": file_sha256(p)}


def _load_net(path: str, kinds: tuple[str, ...], device):
    """(network of a faceflow weights file in eval mode, :func:`_weights_info`); FaceflowError when
    the file holds a network of none of the ``kinds``."""
    info = _weights_info(path)
    return load_weights(path, device=device, kind=kinds).eval(), info


class HybridMethod:
    """DIS optical flow for x, y and a DFFNet's z at every pixel (``dis_dffnet_z``): what a network
    that starts from DIS and learns only the depth component would give before any training of
    the residual. ``method(batch) -> (B, 224, 224, 3)``."""

    dims = 3

    def __init__(self, name: str, label: str, dffnet: DFFNetMethod, dis: OpenCVFlow):
        self.name, self.label, self.dffnet, self.dis = name, label, dffnet, dis
        self.weights = dffnet.weights
        self.failures = 0

    def __call__(self, batch: dict) -> torch.Tensor:
        out = self.dffnet(batch).clone()
        out[..., :2] = self.dis(batch)[..., :2].to(out.dtype)
        return out

    def meta(self) -> dict:
        return {"xy": {"dis": self.dis.meta()}, "z": self.dffnet.meta()}

    def close(self) -> None:
        self.dffnet.close()
        self.dis.close()


def build_methods(cfg, model=None) -> tuple[list, dict]:
    """The requested methods that can run, and ``{name: reason}`` for those skipped.

    ``cfg``: an :class:`evaluation.flow_benchmark.BenchmarkConfig` (its ``methods``, weights files,
    ``device`` and ``fit_dense``); ``model``: the morphable model of ``fit_difference`` (default:
    the ``skin`` model, loaded when needed).
    """
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise FaceflowError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    methods, skipped = [], {}
    nets: dict = {}  # weights option -> (network, weights info), each file loaded once
    for name in cfg.methods:
        label, wopt, needs_meshreg = METHODS[name]
        if wopt is not None:
            why = _missing_weights(cfg, wopt, needs_meshreg)
            if why:
                skipped[name] = why
                continue
            method = _dffnet_method(cfg, name, label, wopt, needs_meshreg, nets, model)
            if name == "dis_dffnet_z":
                method = HybridMethod(name, label, method, OpenCVFlow("dis"))
            methods.append(method)
        elif name == "fit_difference":
            if model is None:
                model = MorphableModel.load("skin")
            methods.append(FitDifference(model, dense=cfg.fit_dense))
        elif name in ("dis", "farneback"):
            methods.append(OpenCVFlow(name))
        elif name == "zero":
            methods.append(ZeroFlow())
    return methods, skipped


def _missing_weights(cfg, wopt: str, needs_meshreg: bool) -> str:
    """Why a DFFNet method cannot run ("" when it can)."""
    if getattr(cfg, wopt) is None:
        return f"no --{wopt.replace('_', '-')} weights given"
    if needs_meshreg and cfg.meshreg is None:
        return "no --meshreg weights given (PNCC from 3DMeshReg)"
    return ""


def _dffnet_method(cfg, name: str, label: str, wopt: str, needs_meshreg: bool, nets: dict, model) -> DFFNetMethod:
    """The DFFNet of weights option ``wopt`` (checked for its PNCC mode), with 3DMeshReg when the
    PNCC comes from it; loaded networks are shared through ``nets``."""
    path = getattr(cfg, wopt)
    if wopt not in nets:
        nets[wopt] = _load_net(path, ("dffnet",), cfg.device)
    net, info = nets[wopt]
    want = _PNCC_MODE[wopt]
    if getattr(net, "use_pncc", want) != want:
        raise FaceflowError(f"--{wopt.replace('_', '-')} {path}: expected a DFFNet with use_pncc={want!r}, "
                            f"the file holds use_pncc={net.use_pncc!r}")
    weights = {wopt: info}
    meshreg = tris = None
    source = "none" if want == "none" else ("meshreg" if needs_meshreg else "gt")
    if needs_meshreg:
        if "meshreg" not in nets:
            nets["meshreg"] = _load_net(cfg.meshreg, MESHREG_KINDS, cfg.device)
        meshreg, minfo = nets["meshreg"]
        weights["meshreg"] = minfo
        tris = meshreg_triangles(meshreg, model)  # from the weights (older files: the model's subset)
    flow = FaceFlow(meshreg, net, tris, device=cfg.device)
    return DFFNetMethod(name, label, flow, source, weights)
