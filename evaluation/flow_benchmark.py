"""The 3D facial-flow benchmark: DeepFaceFlow Table 1 (3D AEPE) and Table 2 (2D AEPE) on our data.

``python -m evaluation.flow_benchmark --synthetic DIR --real-root DIR [--meshreg W.pt]
[--dffnet W.pt] [--dffnet-depth W.pt] [--dffnet-nopncc W.pt] --out OUT``

Test data (pair-sample contract items, all at the 224x224 registered template of frame 1):

- synthetic test split: a generated set's directory (``faceflow.data.synthetic.SyntheticPairs``);
- real pseudo-GT test split: the annotated clips of the test persons under ``--real-root``
  (``faceflow.data.pseudo.split_dirs(root, 'test')`` -> ``AnnotatedPairs``).

Example (a quick look at the baselines): ``python -m evaluation.flow_benchmark --real-root
/work/data/annotated --methods fit_difference dis farneback zero --max-pairs 50 --out OUT``.

``--max-pairs N`` keeps N evenly spaced pairs of each split (deterministic, so tables are
reproducible). Methods (each ``method(batch) -> (B, 224, 224, 3)`` flow in template pixels):

- ``dffnet``: DFFNet (full PNCC) with the PNCC rendered from 3DMeshReg's mesh of I1;
  ``dffnet_gt_pncc``: the same network fed the dataset's PNCC (an oracle row);
  ``dffnet_depth`` / ``dffnet_depth_gt_pncc``: DFFNet trained on the PNCC depth channel only;
  ``dffnet_nopncc``: DFFNet without the PNCC branch. Rows whose weights are not given are skipped.
  All run through :meth:`faceflow.FaceFlow.estimate_registered` (the shipped inference path, mesh
  triangles from the 3DMeshReg weights); the score is DFFNet's dense finest prediction.
- ``fit_difference``: the 3DMM fitted to each image independently, eq. (2) between the fits.
- ``dis``, ``farneback``: OpenCV 2D optical flow (2D table only); ``zero``: no motion.

Metrics, on the ground-truth mask of each pair, in pixels of the 224 frame:
3D AEPE = mean ||F - F_gt||_2, 2D AEPE the same on (x, y). The main number of each cell
averages over the pixels of all pairs pooled ("pixel-pooled"); in parentheses the mean of the
per-pair means. Consecutive and gap pairs are pooled, and also reported separately when the
data says which is which (the real split always does; for other data an item key or dataset
attribute ``pair_kind``: 0 consecutive, 1 gap).

Photometric check (real test split, consecutive pairs): I2 is warped to I1 with each method's
2D flow (backward warping, bilinear ``grid_sample``: the output at I1's pixel p samples I2 at
p + F_xy) and compared with I1: mean absolute colour error on the 0-255 scale (mean over the
three channels) over the GT-mask pixels whose warped position lies inside the image (between
the outermost pixel centres). The GT pseudo-flow and zero flow are reference rows.

Outputs in OUT: ``flow_benchmark.md`` (the tables, also printed), ``results.json`` (all numbers,
the configuration, the weights used with their meta, pair counts, time per pair of each
method), and ``state.json`` (per-pair records; an interrupted run resumes from it when rerun
with the same options; ``--overwrite`` starts afresh). All files are written atomically.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from evaluation.baselines import FitDifference, OpenCVFlow, ZeroFlow
from evaluation.methods import METHODS  # re-exported
from faceflow import io as vio
from faceflow.data import splits
from faceflow.data.pseudo import AnnotatedPairs, split_dirs
from faceflow.data.splits import evenly_spaced
from faceflow.data.synthetic import SyntheticPairs
from faceflow.errors import FaceflowError
from faceflow.estimate import FaceFlow, meshreg_triangles
from faceflow.geometry.morphable import MorphableModel
from faceflow.io.safeload import load_tensors
from faceflow.nets.metrics import aepe, endpoint_errors
from faceflow.runtime.provenance import file_sha256, portable_json, portable_path, provenance

__all__ = [
    "BenchmarkConfig", "METHODS", "endpoint_errors", "aepe", "warp_backward", "photometric_error",
    "DFFNetMethod", "build_methods", "evaluate_dataset", "summarize",
    "format_markdown", "run_benchmark", "write_outputs",
]

TEMPLATE = 224
STATE_VERSION = 1


_PNCC_MODE = {"dffnet": "full", "dffnet_depth": "depth", "dffnet_nopncc": "none"}
DATASETS = ("synthetic", "real")
KINDS = {0: "consecutive", 1: "gap"}
REFERENCE_ROWS = {"gt_pseudo_flow": "Ground-truth pseudo-flow (reference)", "zero_flow": "Zero flow (reference)"}


@dataclass
class BenchmarkConfig:
    """Options of one benchmark run (saved in ``results.json``)."""

    out: str
    synthetic: str | None = None  # synthetic test dataset directory
    real_root: str | None = None  # directory of annotated clips (the test persons' are used)
    meshreg: str | None = None  # weights files
    dffnet: str | None = None
    dffnet_depth: str | None = None
    dffnet_nopncc: str | None = None
    methods: tuple[str, ...] = tuple(METHODS)
    max_pairs: int | None = None  # per split, evenly spaced
    batch_size: int = 4
    device: str = "cpu"
    fit_dense: bool = True  # fit_difference also fits mediapipe's dense points
    overwrite: bool = False

    def signature(self) -> dict:
        """What the per-pair records depend on (a resumed run must match it; records are kept
        per pair index, so another ``max_pairs`` or method list reuses them)."""
        keep = ("synthetic", "real_root", "meshreg", "dffnet", "dffnet_depth", "dffnet_nopncc", "fit_dense")
        return {k: getattr(self, k) for k in keep}


# ---------------------------------------------------------------------- metrics
# (AEPE: faceflow.nets.metrics, shared with training's validation; re-exported here)

def warp_backward(image: torch.Tensor, flow_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward warping: the output at pixel centre p = (j + 0.5, i + 0.5) samples ``image``
    bilinearly at p + flow_xy[i, j] (``grid_sample``, ``align_corners=False``, whose pixel
    centres are exactly these).

    image (B, C, H, W); flow_xy (B, H, W, 2) pixels. Returns warped (B, C, H, W) and inside
    (B, H, W) bool: the sample point is finite and lies within the outermost pixel centres
    (its bilinear weights touch only real pixels).
    """
    B, C, H, W = image.shape
    if flow_xy.shape != (B, H, W, 2):
        raise FaceflowError(f"flow_xy must be {(B, H, W, 2)}, got {tuple(flow_xy.shape)}")
    f = flow_xy.to(image.device, image.dtype)
    finite = torch.isfinite(f).all(-1)
    f = torch.where(finite[..., None], f, torch.zeros_like(f))
    xs = torch.arange(W, device=image.device, dtype=image.dtype) + 0.5
    ys = torch.arange(H, device=image.device, dtype=image.dtype) + 0.5
    x = xs[None, None, :] + f[..., 0]
    y = ys[None, :, None] + f[..., 1]
    grid = torch.stack([2 * x / W - 1, 2 * y / H - 1], -1)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = finite & (x >= 0.5) & (x <= W - 0.5) & (y >= 0.5) & (y <= H - 0.5)
    return warped, inside


def photometric_error(i1: torch.Tensor, i2: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair sums of |I1 - W(I2)| (0-255 scale, mean over channels) and pixel counts over
    the mask pixels whose warped position is inside the image.

    i1, i2 (B, 3, H, W) in [0, 1]; flow (B, H, W, 2 or 3) (only x, y used); mask (B, H, W).
    Returns sums (B,) float64, counts (B,) int64.
    """
    warped, inside = warp_backward(i2.float(), flow[..., :2].float())
    err = (i1.float().to(warped.device) - warped).abs().mean(1) * 255.0
    valid = inside & mask.bool().to(inside.device)
    err = torch.where(valid, err, torch.zeros_like(err))
    return err.double().sum((1, 2)).cpu(), valid.sum((1, 2)).cpu()


# ---------------------------------------------------------------------- DFFNet methods

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


def _load_net(path: str, kind: str, device):
    try:
        from faceflow.engine.weights import load_weights
    except ImportError as e:
        raise FaceflowError(f"cannot load {path}: faceflow.engine.weights is not available ({e})") from None
    info = _weights_info(path)
    if info["kind"] != kind:
        raise FaceflowError(f"{path} holds {info['kind']!r} weights, expected {kind!r}")
    return load_weights(path, device=device).eval(), info


def build_methods(cfg: BenchmarkConfig, model=None) -> tuple[list, dict]:
    """The requested methods that can run, and ``{name: reason}`` for those skipped."""

    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise FaceflowError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    methods, skipped = [], {}
    nets: dict = {}

    def get_model():
        nonlocal model
        if model is None:
            from faceflow.geometry.morphable import MorphableModel

            model = MorphableModel.load("skin")
        return model

    for name in cfg.methods:
        label, wopt, needs_meshreg = METHODS[name]
        if wopt is not None:
            path = getattr(cfg, wopt)
            if path is None:
                skipped[name] = f"no --{wopt.replace('_', '-')} weights given"
                continue
            if needs_meshreg and cfg.meshreg is None:
                skipped[name] = "no --meshreg weights given (PNCC from 3DMeshReg)"
                continue
            if wopt not in nets:
                nets[wopt] = _load_net(path, "dffnet", cfg.device)
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
                    nets["meshreg"] = _load_net(cfg.meshreg, "meshreg", cfg.device)
                meshreg, minfo = nets["meshreg"]
                weights["meshreg"] = minfo
                tris = meshreg_triangles(meshreg, model)  # from the weights (older files: the model's subset)
            flow = FaceFlow(meshreg, net, tris, device=cfg.device)
            methods.append(DFFNetMethod(name, label, flow, source, weights))
        elif name == "fit_difference":
            methods.append(FitDifference(get_model(), dense=cfg.fit_dense))
        elif name in ("dis", "farneback"):
            methods.append(OpenCVFlow(name))
        elif name == "zero":
            methods.append(ZeroFlow())
    return methods, skipped


# ---------------------------------------------------------------------- datasets

def open_synthetic(path: str | Path):
    """The synthetic test dataset in ``path`` (a directory with ``manifest.json``)."""
    p = Path(path)
    if not p.is_dir():
        raise FaceflowError(f"synthetic dataset directory {p} does not exist")
    if not (p / "manifest.json").is_file():
        raise FaceflowError(f"synthetic dataset {p} is incomplete: no manifest.json (still being written?)")

    return SyntheticPairs(p)


class KindTagged(torch.utils.data.Dataset):
    """Datasets of known pair kinds, concatenated; items gain ``"pair_kind"`` (int64 scalar:
    0 consecutive, 1 gap). ``parts``: [(dataset, kind), ...]."""

    def __init__(self, parts):
        self.parts = [(ds, int(k)) for ds, k in parts]
        self._offsets = np.concatenate([[0], np.cumsum([len(ds) for ds, _ in self.parts])]).astype(np.int64)
        self.pair_kind = np.concatenate([np.full(len(ds), k, np.int64) for ds, k in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        j = int(np.searchsorted(self._offsets, index, side="right") - 1)
        ds, kind = self.parts[j]
        item = dict(ds[index - int(self._offsets[j])])
        item["pair_kind"] = torch.tensor(kind, dtype=torch.int64)
        return item


def open_real_test(root: str | Path, say=print):
    """The real pseudo-GT test split under ``root``: the complete annotations of the test
    persons' clips (:func:`faceflow.data.pseudo.split_dirs`), consecutive pairs first, then gap
    pairs (:class:`KindTagged`). Returns (dataset, clip directories)."""
    r = Path(root)
    if not r.is_dir():
        raise FaceflowError(f"annotated clips root {r} does not exist or is not a directory")

    dirs = [Path(d) for d in split_dirs(r, "test")]
    expected = splits.annotation_clips("test")
    if not dirs:
        incomplete = [c for c in expected if (r / c).is_dir()]
        raise FaceflowError(f"no complete annotation of a test clip under {r} (expected {', '.join(expected)}"
                            + (f"; incomplete, without manifest.json: {', '.join(incomplete)}" if incomplete else "")
                            + "); run `python -m faceflow annotate` on the test clips first")
    found = {d.name for d in dirs}
    missing = [c for c in expected if c not in found]
    if missing:
        say(f"note: test clip(s) without a complete annotation under {r}, left out: {', '.join(missing)}")
    model = MorphableModel.load("skin")
    parts = [(AnnotatedPairs(dirs, pair_kinds=kname, model=model), k) for k, kname in KINDS.items()]
    return KindTagged(parts), dirs


def _pair_kinds(dataset, n: int) -> np.ndarray | None:
    """(n,) pair kinds (0 consecutive, 1 gap) when the dataset has a ``pair_kind`` array."""
    v = getattr(dataset, "pair_kind", None)
    if v is None:
        return None
    try:
        a = np.asarray(v).astype(np.int64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return a if len(a) == n else None


# ---------------------------------------------------------------------- evaluation

class _State:
    """``state.json``: per-pair records of every method on every split, for resuming."""

    def __init__(self, out: Path, signature: dict, overwrite: bool):

        self._save = vio.save_json
        self.path = out / "state.json"
        self.data = {"version": STATE_VERSION, "signature": signature, "records": {}, "reference": {}}
        if self.path.exists() and not overwrite:
            old = json.loads(self.path.read_text())
            if old.get("signature") != signature or old.get("version") != STATE_VERSION:
                raise FaceflowError(f"{out} holds a benchmark run with other data or weights; pass --overwrite to "
                                    "replace it or choose another --out directory")
            self.data = old
        self._last = time.monotonic()

    def records(self, dataset: str, method: str) -> dict:
        return self.data["records"].setdefault(dataset, {}).setdefault(method, {})

    def save(self, force: bool = False) -> None:
        if force or time.monotonic() - self._last > 15:
            self._save(self.path, self.data, indent=None)
            self._last = time.monotonic()


def evaluate_dataset(dataset, methods, name: str, indices=None, batch_size: int = 4, photometric: bool = False,
                     state: _State | None = None, progress: bool = True) -> dict:
    """Run every method on the pairs ``indices`` of ``dataset``; returns per-pair records
    ``{method: {str(index): record}}`` (plus the photometric references under
    ``REFERENCE_ROWS`` names when ``photometric``). A record holds the mask pixel count
    ``n``, the summed 3D (``s3``, None for 2D methods) and 2D (``s2``) end-point errors, the
    pair kind (-1 unknown), the seconds spent (``t``), ``fail`` and, with ``photometric``, the
    summed photometric error ``ph_s`` over ``ph_n`` pixels."""

    n_all = len(dataset)
    idx = np.arange(n_all) if indices is None else np.asarray(indices, np.int64)
    kinds_attr = _pair_kinds(dataset, n_all)
    rows = [m.name for m in methods] + (list(REFERENCE_ROWS) if photometric else [])
    recs = {r: (state.records(name, r) if state is not None else {}) for r in rows}
    todo = [int(i) for i in idx if any(str(int(i)) not in recs[r] for r in rows)]
    bar = tqdm(total=len(idx), initial=len(idx) - len(todo), desc=f"{name} pairs", unit="pair", disable=not progress)
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, shuffle=False, num_workers=0)
    pos = 0
    try:
        for batch in loader:
            ids = todo[pos:pos + len(batch["i1"])]
            pos += len(ids)
            B = len(ids)
            gt, mask = batch["flow"].float(), batch["mask"].bool()
            if "pair_kind" in batch:
                kinds = [int(k) for k in batch["pair_kind"].reshape(-1)]
            elif kinds_attr is not None:
                kinds = [int(kinds_attr[i]) for i in ids]
            else:
                kinds = [-1] * B
            for m in methods:
                if all(str(i) in recs[m.name] for i in ids):
                    continue
                t0 = time.perf_counter()
                pred = m(batch)
                dt = (time.perf_counter() - t0) / B
                if pred.shape != gt.shape:
                    raise FaceflowError(f"method {m.name} returned flow {tuple(pred.shape)}, "
                                        f"expected {tuple(gt.shape)}")
                s2, n = endpoint_errors(pred, gt, mask, 2)
                s3 = endpoint_errors(pred, gt, mask, 3)[0] if m.dims == 3 else None
                ph = photometric_error(batch["i1"], batch["i2"], pred, mask) if photometric else None
                failed = getattr(m, "last_failed", None) or [False] * B  # per pair of this call (FitDifference)
                cover = getattr(m, "last_coverage", None)
                for b, i in enumerate(ids):
                    r = {"n": int(n[b]), "s2": float(s2[b]), "s3": None if s3 is None else float(s3[b]),
                         "kind": kinds[b], "t": dt, "fail": int(bool(failed[b]))}
                    if ph is not None:
                        r["ph_s"], r["ph_n"] = float(ph[0][b]), int(ph[1][b])
                    if cover is not None and cover[b] is not None:
                        r["coverage"] = float(cover[b])
                    recs[m.name][str(i)] = r
            if photometric:
                for ref, flow in (("gt_pseudo_flow", gt), ("zero_flow", torch.zeros_like(gt))):
                    ph = photometric_error(batch["i1"], batch["i2"], flow, mask)
                    s2, n = endpoint_errors(flow, gt, mask, 2)
                    s3 = endpoint_errors(flow, gt, mask, 3)[0]
                    for b, i in enumerate(ids):
                        recs[ref][str(i)] = {"n": int(n[b]), "s2": float(s2[b]), "s3": float(s3[b]), "kind": kinds[b],
                                             "t": 0.0, "fail": 0, "ph_s": float(ph[0][b]), "ph_n": int(ph[1][b])}
            bar.update(B)
            if state is not None:
                state.save()
    finally:  # keep what was computed, also on an error or Ctrl-C
        bar.close()
        if state is not None:
            state.save(force=True)
    keep = {str(int(i)) for i in idx}
    return {r: {k: v for k, v in recs[r].items() if k in keep} for r in rows}


def _cell(records: list[dict], key: str) -> dict | None:
    """Pixel-pooled and per-pair AEPE of ``key`` ('s3' or 's2') over records."""
    recs = [r for r in records if r.get(key) is not None and r["n"] > 0]
    if not recs:
        return None
    s = sum(r[key] for r in recs)
    n = sum(r["n"] for r in recs)
    return {"pixel_pooled": s / n, "per_pair": float(np.mean([r[key] / r["n"] for r in recs])),
            "pairs": len(recs), "pixels": int(n)}


def summarize(records: dict) -> dict:
    """Per-pair records ``{dataset: {method: {index: record}}}`` -> metrics
    ``{method: {dataset: {'all'|'consecutive'|'gap': {'aepe3d': cell, 'aepe2d': cell}}}}``,
    photometric ``{method: {...}}`` (consecutive pairs of 'real' when kinds are known, else all),
    ``time_per_pair_s`` and ``failures``."""
    metrics, photo, times, fails = {}, {}, {}, {}
    for ds, by_method in records.items():
        for meth, recs in by_method.items():
            rl = list(recs.values())
            groups = {"all": rl}
            for k, kname in KINDS.items():
                sub = [r for r in rl if r.get("kind") == k]
                if sub:
                    groups[kname] = sub
            metrics.setdefault(meth, {})[ds] = {
                g: {"aepe3d": _cell(v, "s3"), "aepe2d": _cell(v, "s2"), "pairs": len(v)} for g, v in groups.items()}
            if meth not in REFERENCE_ROWS:
                times.setdefault(meth, []).extend(r["t"] for r in rl)
                fails.setdefault(meth, {})[ds] = int(sum(r.get("fail", 0) for r in rl))
            if ds == "real" and any("ph_s" in r for r in rl):
                known = [r for r in rl if r.get("kind", -1) >= 0]
                sel = [r for r in rl if r.get("kind") == 0] if known else rl
                n = sum(r["ph_n"] for r in sel)
                scored = [r for r in sel if r["ph_n"] > 0]
                photo[meth] = {
                    "error": sum(r["ph_s"] for r in sel) / n if n else None,
                    "per_pair": float(np.mean([r["ph_s"] / r["ph_n"] for r in scored])) if scored else None,
                    "pairs": len(sel), "pixels": int(n), "mask_pixels": int(sum(r["n"] for r in sel)),
                    "pairs_used": "consecutive" if known else "all (pair kinds unknown)"}
    return {"metrics": metrics, "photometric": photo,
            "time_per_pair_s": {m: float(np.mean(t)) if t else None for m, t in times.items()},
            "failures": fails}


# ---------------------------------------------------------------------- tables

def _fmt(cell: dict | None) -> str:
    if cell is None:
        return "n/a"
    return f"{cell['pixel_pooled']:.3f} ({cell['per_pair']:.3f})"


def _table(rows: list[tuple[str, list[str]]], header: list[str]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join([label] + cells) + " |" for label, cells in rows]
    return out


def format_markdown(results: dict) -> str:  # noqa: C901  (one table after another; each branch is one optional section)
    """The Markdown report of :func:`run_benchmark`'s results (Tables 1, 2, by pair kind,
    photometric check, methods with time per pair, failures and weights)."""
    order = [m for m in results["methods"]]
    labels = {m: results["methods"][m]["label"] for m in order}
    dims = {m: results["methods"][m]["dims"] for m in order}
    metrics = results["metrics"]
    ds_info = results["datasets"]
    present = [d for d in DATASETS if d in ds_info]
    names = {"synthetic": "Synthetic test", "real": "Real test (pseudo-GT)"}
    L = ["# Flow benchmark (DeepFaceFlow Tables 1 and 2 on our data)", ""]
    for d in present:
        info = ds_info[d]
        kinds = info.get("kinds") or {}
        kind_txt = ", ".join(f"{v} {k}" for k, v in kinds.items()) if kinds else "pair kinds unknown"
        L.append(f"- {names[d]}: `{info['path']}`: {info['pairs']} of {info['pairs_total']} pairs "
                 f"({'evenly spaced subset' if info['pairs'] < info['pairs_total'] else 'all'}; {kind_txt})"
                 + (f"; clips: {', '.join(info['clips'])}" if info.get("clips") else ""))
    for d in DATASETS:
        if d not in ds_info:
            L.append(f"- {names[d]}: not evaluated (no data given)")
    L += ["", "AEPE in pixels of the 224x224 registered frame of I1, over the ground-truth mask. "
          "Each cell: the mean over the pixels of all pairs pooled (in parentheses: the mean of the "
          "per-pair means). Consecutive and gap pairs pooled.", ""]

    def aepe_table(key: str, which: list[str], group: str = "all", cols=None) -> list[str]:
        cols = cols or [(d, group) for d in present]
        header = ["Method"] + [f"{names[d]}" + ("" if g == "all" else f", {g}")
                               + f" ({_pairs(d, g)} pairs)" for d, g in cols]
        rows = []
        for m in which:
            cells = []
            for d, g in cols:
                c = metrics.get(m, {}).get(d, {}).get(g)
                cells.append(_fmt(c[key]) if c else "n/a")
            rows.append((labels[m], cells))
        return _table(rows, header)

    def _pairs(d, g):
        if g == "all":
            return ds_info[d]["pairs"]
        return (ds_info[d].get("kinds") or {}).get(g, 0)

    three = [m for m in order if dims[m] == 3]
    L += ["## Table 1: 3D AEPE (pixels)", ""] + aepe_table("aepe3d", three) + [""]
    L += ["## Table 2: 2D AEPE (pixels)", ""] + aepe_table("aepe2d", order) + [""]
    split_cols = [(d, g) for d in present for g in KINDS.values() if (ds_info[d].get("kinds") or {}).get(g)]
    if split_cols:
        L += ["## By pair kind", "", "3D AEPE:", ""] + aepe_table("aepe3d", three, cols=split_cols) + [""]
        L += ["2D AEPE:", ""] + aepe_table("aepe2d", order, cols=split_cols) + [""]

    photo = results.get("photometric") or {}
    if photo:
        any_rec = next(iter(photo.values()))
        L += [f"## Photometric check (real test, {any_rec['pairs_used']} pairs)", "",
              "I2 warped to I1 by each flow (backward bilinear warping: I2 sampled at p + F_xy); mean absolute "
              "colour error on the 0-255 scale over the GT-mask pixels whose warped position lies inside the image.",
              ""]
        rows = []
        for m in order + list(REFERENCE_ROWS):
            if m not in photo or (m == "zero_flow" and "zero" in photo):
                continue
            p = photo[m]
            err = "n/a" if p["error"] is None else f"{p['error']:.2f} ({p['per_pair']:.2f})"
            frac = p["pixels"] / p["mask_pixels"] if p["mask_pixels"] else float("nan")
            rows.append((labels.get(m, REFERENCE_ROWS.get(m, m)), [err, f"{100 * frac:.1f}%", str(p["pairs"])]))
        L += _table(rows, ["Flow", "MAE 0-255 (per-pair mean)", "mask pixels scored", "pairs"]) + [""]

    L += ["## Methods", ""]
    rows = []
    for m in order:
        t = results["time_per_pair_s"].get(m)
        f = results["failures"].get(m, {})
        rows.append((labels[m], [f"`{m}`", "3D" if dims[m] == 3 else "2D", "n/a" if t is None else f"{t:.3f}",
                                 " / ".join(f"{f.get(d, 0)}" for d in present) or "0"]))
    L += _table(rows, ["Method", "name", "flow", "time per pair (s)",
                       "failures (" + " / ".join(present) + ")"]) + [""]
    L.append(f"Device: {results['config']['device']}, batch size {results['config']['batch_size']} "
             "(time per pair = batch time / batch size; failures score zero flow).")
    for m, why in results.get("skipped", {}).items():
        L.append(f"- skipped `{m}`: {why}")
    for m in order:
        meta = {k: v for k, v in (results["methods"][m].get("meta") or {}).items() if k != "weights"}
        if meta:
            L.append(f"- `{m}` settings: {json.dumps(meta, default=str)}")
    weights = results.get("weights") or {}
    if weights:
        L += ["", "## Weights", ""]
        for key, w in weights.items():
            # provenance only: the bulky parts (mesh triangles, full configs, data lists) stay in results.json
            meta = {k: v for k, v in (w.get("meta") or {}).items() if k in ("step", "iterations", "best_val_metric")}
            L.append(f"- {key}: `{w['path']}` (kind {w['kind']}, sha256 {w['sha256'][:12]}); config "
                     f"{json.dumps(w.get('config'))}; meta {json.dumps(meta, default=str)}")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------------- driver

def run_benchmark(cfg: BenchmarkConfig, progress: bool = True, say=print) -> dict:
    """Evaluate the configured methods on the test splits; writes ``state.json`` as it goes
    and returns the results dict (see :func:`write_outputs`)."""
    if cfg.synthetic is None and cfg.real_root is None:
        raise FaceflowError("nothing to evaluate: give --synthetic and/or --real-root")
    if cfg.batch_size < 1:
        raise FaceflowError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.max_pairs is not None and cfg.max_pairs < 1:
        raise FaceflowError(f"--max-pairs must be at least 1, got {cfg.max_pairs}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"--out {out} exists and is not a directory")
    datasets = {}
    if cfg.synthetic is not None:
        syn = open_synthetic(cfg.synthetic)
        split = getattr(syn, "split", None)
        if split is not None and split != "test":
            say(f"warning: {cfg.synthetic} is a synthetic {split!r} set, not the test split")
        datasets["synthetic"] = (syn, None, str(cfg.synthetic))
    if cfg.real_root is not None:
        ds, dirs = open_real_test(cfg.real_root, say)
        datasets["real"] = (ds, [Path(d).name for d in dirs], str(cfg.real_root))
    methods, skipped = build_methods(cfg)
    for m, why in skipped.items():
        say(f"note: skipping {m}: {why}")
    if not methods:
        raise FaceflowError("no method can run (all skipped): " + "; ".join(f"{m}: {w}" for m, w in skipped.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "flow_benchmark.md").unlink(missing_ok=True)
    used = {}
    for m in methods:
        used.update({k: w["sha256"] for k, w in (getattr(m, "weights", {}) or {}).items()})
    manifests = [Path(cfg.synthetic) / "manifest.json"] if cfg.synthetic is not None else []
    if "real" in datasets:
        manifests += [Path(cfg.real_root) / c / "manifest.json" for c in datasets["real"][1]]
    sig = dict(cfg.signature(), sizes={k: len(v[0]) for k, v in datasets.items()}, weights_sha256=used,
               manifests={str(p): int(p.stat().st_mtime) for p in manifests})
    state = _State(out, sig, cfg.overwrite)
    records, ds_info = {}, {}
    try:
        for dname, (ds, clips, path) in datasets.items():
            n = len(ds)
            if n == 0:
                raise FaceflowError(f"the {dname} test split at {path} has no pairs")
            idx = evenly_spaced(n, cfg.max_pairs)
            records[dname] = evaluate_dataset(ds, methods, dname, idx, cfg.batch_size, photometric=(dname == "real"),
                                              state=state, progress=progress)
            first = next(iter(records[dname].values()))
            kinds = {kn: sum(1 for r in first.values() if r["kind"] == k) for k, kn in KINDS.items()}
            ds_info[dname] = {"path": portable_path(path, out, climb=True), "split": getattr(ds, "split", "test"),
                              "pairs": len(idx), "pairs_total": n,
                              "kinds": {k: v for k, v in kinds.items() if v} or None, "clips": clips,
                              "indices": [int(i) for i in idx]}
    finally:
        for m in methods:
            m.close()
    weights = {}
    for m in methods:
        weights.update(getattr(m, "weights", {}) or {})
    config = asdict(cfg)
    for k in ("synthetic", "real_root"):  # data relative to OUT (or by name); weights by name + sha256
        if config[k] is not None:
            config[k] = portable_path(config[k], out, climb=True)
    results = {"config": config, "datasets": ds_info,
               "methods": {m.name: {"label": m.label, "dims": m.dims, "meta": m.meta()} for m in methods},
               "skipped": skipped, "weights": weights,
               "averaging": "pixel_pooled: mean over the GT-mask pixels of all pairs; per_pair: mean of per-pair means",
               **summarize(records),
               "provenance": provenance(weights={k: w.get("path") for k, w in weights.items()}, device=cfg.device,
                                        base=out)}
    # no absolute paths of this machine in results.json / flow_benchmark.md (weights files: their names)
    return portable_json(results, out)


def write_outputs(results: dict, out: str | Path) -> str:
    """Write ``results.json`` and then ``flow_benchmark.md`` (atomically); returns the Markdown."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = format_markdown(results)
    vio.save_json(out / "results.json", json.loads(json.dumps(results, default=_jsonable)))
    with vio.atomic_path(out / "flow_benchmark.md") as tmp:
        Path(tmp).write_text(text)
    return text


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    if torch.is_tensor(o):
        return o.tolist()
    return str(o)


if __name__ == "__main__":  # python -m evaluation.flow_benchmark: the command of evaluation/commands/flow.py
    from evaluation.commands.flow import main

    sys.exit(main())
