"""The 3D facial-flow benchmark: DeepFaceFlow Table 1 (3D AEPE) and Table 2 (2D AEPE) on our data.

``python -m evaluation.flow_benchmark --synthetic DIR --real-root DIR [--meshreg W.pt]
[--dffnet W.pt] [--dffnet-depth W.pt] [--dffnet-nopncc W.pt] --out OUT``

Test data (pair-sample contract items, all at the 224x224 registered template of frame 1):

- synthetic test split: a generated set's directory (``faceflow.data.synthetic.SyntheticPairs``);
- real pseudo-GT test split: the annotated clips of the test persons under ``--real-root``
  (``faceflow.data.pseudo.split_dirs(root, 'test')`` -> ``AnnotatedPairs``), the published
  tables; or anyone's annotated clips: ``--clips DIR...`` (``faceflow annotate`` outputs), or
  ``--real-root ROOT --all-clips`` (every complete annotation under ROOT).

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

Code: the test data is :mod:`evaluation.flow_data`, the methods :mod:`evaluation.flow_methods`
(names and labels in :mod:`evaluation.flow_config`, baselines in :mod:`evaluation.baselines`), the
summary and the report :mod:`evaluation.flow_report`; this module scores the pairs
(:func:`evaluate_dataset`, :func:`photometric_error`) and runs the benchmark
(:func:`run_benchmark`), re-exporting the public names. The command line is
:mod:`evaluation.commands.flow`.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from evaluation.flow_config import METHODS, BenchmarkConfig  # re-exported
from evaluation.flow_data import DATASETS, KINDS, KindTagged, open_real, open_real_test, open_synthetic, pair_kinds
from evaluation.flow_methods import DFFNetMethod, build_methods
from evaluation.flow_precision import evaluate_precision
from evaluation.flow_report import REFERENCE_ROWS, format_markdown, summarize, write_outputs
from faceflow.data.splits import evenly_spaced
from faceflow.errors import FaceflowError
from faceflow.io.rundir import RunState
from faceflow.nets.metrics import aepe, endpoint_errors
from faceflow.ops.sampling import pixel_centres, sample
from faceflow.runtime.provenance import portable_json, portable_path, provenance

__all__ = [
    "BenchmarkConfig", "METHODS", "endpoint_errors", "aepe", "warp_backward", "photometric_error",
    "DFFNetMethod", "build_methods", "evaluate_dataset", "summarize",
    "format_markdown", "run_benchmark", "write_outputs",
    "DATASETS", "KINDS", "REFERENCE_ROWS", "KindTagged", "open_synthetic", "open_real_test", "open_state",
]

TEMPLATE = 224
STATE_VERSION = 1


# ---------------------------------------------------------------------- metrics
# (AEPE: faceflow.nets.metrics, shared with training's validation; re-exported here)

def warp_backward(image: torch.Tensor, flow_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backward warping: the output at pixel centre p = (j + 0.5, i + 0.5) samples ``image``
    bilinearly at p + flow_xy[i, j] (:func:`faceflow.ops.sampling.sample`, whose pixel centres
    are exactly these).

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
    xy = pixel_centres(H, W, image.device, image.dtype) + f
    warped = sample(image, xy, mode="bilinear", padding_mode="border")
    x, y = xy[..., 0], xy[..., 1]
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


# ---------------------------------------------------------------------- evaluation

def open_state(out: Path, signature: dict, overwrite: bool) -> RunState:
    """``OUT/state.json``: the per-pair records ``records[dataset][method][str(index)]`` of every
    method on every split, tied to ``signature``; written at most every 15 s (and at the end)."""
    return RunState(out, {"version": STATE_VERSION, "signature": signature, "records": {}, "reference": {}},
                    overwrite=overwrite, indent=None, every_s=15,
                    refuse=lambda old: f"{out} holds a benchmark run with other data or weights; pass --overwrite "
                                       "to replace it or choose another --out directory")


def evaluate_dataset(dataset, methods, name: str, indices=None, batch_size: int = 4, photometric: bool = False,
                     state: RunState | None = None, progress: bool = True) -> dict:
    """Run every method on the pairs ``indices`` of ``dataset``; returns per-pair records
    ``{method: {str(index): record}}`` (plus the photometric references under
    ``REFERENCE_ROWS`` names when ``photometric``). A record holds the mask pixel count
    ``n``, the summed 3D (``s3``, None for 2D methods) and 2D (``s2``) end-point errors, the
    pair kind (-1 unknown), the seconds spent (``t``), ``fail`` and, with ``photometric``, the
    summed photometric error ``ph_s`` over ``ph_n`` pixels. With a ``state`` (:func:`open_state`)
    the records already there are kept and the new ones saved as they come."""
    n_all = len(dataset)
    idx = np.arange(n_all) if indices is None else np.asarray(indices, np.int64)
    kinds_attr = pair_kinds(dataset, n_all)
    rows = [m.name for m in methods] + (list(REFERENCE_ROWS) if photometric else [])
    recs = {r: (state.section("records", name, r) if state is not None else {}) for r in rows}
    todo = [int(i) for i in idx if any(str(int(i)) not in recs[r] for r in rows)]
    bar = tqdm(total=len(idx), initial=len(idx) - len(todo), desc=f"{name} pairs", unit="pair", disable=not progress)
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, shuffle=False, num_workers=0)
    pos = 0
    try:
        for batch in loader:
            ids = todo[pos:pos + len(batch["i1"])]
            pos += len(ids)
            kinds = _batch_kinds(batch, ids, kinds_attr)
            for m in methods:
                if not all(str(i) in recs[m.name] for i in ids):
                    recs[m.name].update(_score_method(m, batch, ids, kinds, photometric))
            if photometric:
                for ref, rec in _score_references(batch, ids, kinds).items():
                    recs[ref].update(rec)
            bar.update(len(ids))
            if state is not None:
                state.save()
    finally:  # keep what was computed, also on an error or Ctrl-C
        bar.close()
        if state is not None:
            state.save(force=True)
    keep = {str(int(i)) for i in idx}
    return {r: {k: v for k, v in recs[r].items() if k in keep} for r in rows}


def _batch_kinds(batch: dict, ids: list[int], kinds_attr: np.ndarray | None) -> list[int]:
    """The pair kind of each pair of a batch: the items' ``pair_kind``, else the dataset's array, else -1."""
    if "pair_kind" in batch:
        return [int(k) for k in batch["pair_kind"].reshape(-1)]
    if kinds_attr is not None:
        return [int(kinds_attr[i]) for i in ids]
    return [-1] * len(ids)


def _score_method(m, batch: dict, ids: list[int], kinds: list[int], photometric: bool) -> dict:
    """{str(index): record} of method ``m`` on one batch (see :func:`evaluate_dataset`)."""
    B = len(ids)
    gt, mask = batch["flow"].float(), batch["mask"].bool()
    t0 = time.perf_counter()
    pred = m(batch)
    dt = (time.perf_counter() - t0) / B
    if pred.shape != gt.shape:
        raise FaceflowError(f"method {m.name} returned flow {tuple(pred.shape)}, expected {tuple(gt.shape)}")
    s2, n = endpoint_errors(pred, gt, mask, 2)
    s3 = endpoint_errors(pred, gt, mask, 3)[0] if m.dims == 3 else None
    ph = photometric_error(batch["i1"], batch["i2"], pred, mask) if photometric else None
    failed = getattr(m, "last_failed", None) or [False] * B  # per pair of this call (FitDifference)
    cover = getattr(m, "last_coverage", None)
    out = {}
    for b, i in enumerate(ids):
        r = {"n": int(n[b]), "s2": float(s2[b]), "s3": None if s3 is None else float(s3[b]),
             "kind": kinds[b], "t": dt, "fail": int(bool(failed[b]))}
        if ph is not None:
            r["ph_s"], r["ph_n"] = float(ph[0][b]), int(ph[1][b])
        if cover is not None and cover[b] is not None:
            r["coverage"] = float(cover[b])
        out[str(i)] = r
    _score_parts(getattr(m, "last_head_flow", None), pred, batch, ids, out)
    return out


def _score_parts(head: torch.Tensor | None, pred: torch.Tensor, batch: dict, ids: list[int], out: dict) -> None:
    """Add to the records of a decomposed method the summed 3D end-point errors of its head-motion
    flow (``sh3``) and expression flow (``se3``, the rest of the flow) over ``nh`` mask pixels, on
    the pairs that have a head-motion flow (synthetic pairs; ``has_head_flow``)."""
    if head is None or "head_flow" not in batch or "has_head_flow" not in batch:
        return
    has = batch["has_head_flow"].bool().view(-1, 1, 1)
    mask = batch["mask"].bool() & has
    gt_head = batch["head_flow"].float()
    sh, nh = endpoint_errors(head, gt_head, mask, 3)
    se = endpoint_errors(pred - head, batch["flow"].float() - gt_head, mask, 3)[0]
    for b, i in enumerate(ids):
        if bool(has[b]):
            out[str(i)].update(sh3=float(sh[b]), se3=float(se[b]), nh=int(nh[b]))


def _score_references(batch: dict, ids: list[int], kinds: list[int]) -> dict:
    """{reference row: {str(index): record}} of the GT pseudo-flow and zero flow on one batch."""
    gt, mask = batch["flow"].float(), batch["mask"].bool()
    out = {}
    for ref, flow in (("gt_pseudo_flow", gt), ("zero_flow", torch.zeros_like(gt))):
        ph = photometric_error(batch["i1"], batch["i2"], flow, mask)
        s2, n = endpoint_errors(flow, gt, mask, 2)
        s3 = endpoint_errors(flow, gt, mask, 3)[0]
        out[ref] = {str(i): {"n": int(n[b]), "s2": float(s2[b]), "s3": float(s3[b]), "kind": kinds[b], "t": 0.0,
                             "fail": 0, "ph_s": float(ph[0][b]), "ph_n": int(ph[1][b])} for b, i in enumerate(ids)}
    return out


# ---------------------------------------------------------------------- driver

def run_benchmark(cfg: BenchmarkConfig, progress: bool = True, say=print) -> dict:
    """Evaluate the configured methods on the test splits; writes ``state.json`` as it goes
    and returns the results dict (see :func:`write_outputs`)."""
    _check_config(cfg)
    out = Path(cfg.out)
    datasets = _open_datasets(cfg, say)
    methods, skipped = build_methods(cfg)
    for m, why in skipped.items():
        say(f"note: skipping {m}: {why}")
    if not methods:
        raise FaceflowError("no method can run (all skipped): " + "; ".join(f"{m}: {w}" for m, w in skipped.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "flow_benchmark.md").unlink(missing_ok=True)
    state = open_state(out, _signature(cfg, datasets, methods), cfg.overwrite)
    records, ds_info = {}, {}
    try:
        for dname, (ds, clips, path) in datasets.items():
            n = len(ds)
            if n == 0:
                raise FaceflowError(f"the {dname} test split at {path} has no pairs")
            idx = evenly_spaced(n, cfg.max_pairs)
            records[dname] = evaluate_dataset(ds, methods, dname, idx, cfg.batch_size, photometric=(dname == "real"),
                                              state=state, progress=progress)
            ds_info[dname] = _dataset_info(ds, records[dname], clips, path, idx, out)
        precision = _precision(cfg, methods, say) if cfg.stills else None
    finally:
        for m in methods:
            m.close()
    results = _results(cfg, out, methods, skipped, records, ds_info)
    if precision is not None:
        results["precision"] = portable_json(precision, out)
    return results


def _precision(cfg: BenchmarkConfig, methods: list, say) -> dict:
    """The precision rows (:mod:`evaluation.flow_precision`) of the methods that need no dataset PNCC."""
    usable = [m for m in methods if getattr(m, "pncc_source", None) != "gt"]
    say(f"precision rows: {len(cfg.stills)} still(s), {cfg.precision_motions} motion(s) each, "
        f"{len(usable)} method(s)")
    return evaluate_precision(cfg.stills, usable, cfg.precision_motions, cfg.precision_seed)


def _check_config(cfg: BenchmarkConfig) -> None:
    if cfg.all_clips and cfg.real_root is None:
        raise FaceflowError("--all-clips needs --real-root (the folder holding the annotated clips)")
    if cfg.synthetic is None and cfg.real_root is None and not cfg.clips and not cfg.stills:
        raise FaceflowError("nothing to evaluate: give --synthetic and/or --real-root (or --clips DIR...), "
                            "or --stills IMG... for the precision rows")
    if cfg.precision_motions < 0:
        raise FaceflowError(f"--precision-motions must be at least 0, got {cfg.precision_motions}")
    if cfg.clips and (cfg.real_root is not None or cfg.all_clips):
        raise FaceflowError("--clips names the real clips itself: give it without --real-root / --all-clips")
    if cfg.batch_size < 1:
        raise FaceflowError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.max_pairs is not None and cfg.max_pairs < 1:
        raise FaceflowError(f"--max-pairs must be at least 1, got {cfg.max_pairs}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise FaceflowError(f"--out {out} exists and is not a directory")


def _open_datasets(cfg: BenchmarkConfig, say) -> dict:
    """{'synthetic' | 'real': (dataset, clip names or None, path as given)} of the splits asked for."""
    datasets = {}
    if cfg.synthetic is not None:
        syn = open_synthetic(cfg.synthetic)
        split = getattr(syn, "split", None)
        if split is not None and split != "test":
            say(f"warning: {cfg.synthetic} is a synthetic {split!r} set, not the test split")
        datasets["synthetic"] = (syn, None, str(cfg.synthetic))
    if cfg.real_root is not None or cfg.clips:
        ds, dirs = open_real(cfg.real_root, cfg.clips, cfg.all_clips, say)
        ds.clip_dirs = dirs
        where = str(cfg.real_root) if cfg.real_root is not None else os.path.commonpath([str(d) for d in dirs])
        datasets["real"] = (ds, [Path(d).name for d in dirs], where)
    return datasets


def _signature(cfg: BenchmarkConfig, datasets: dict, methods: list) -> dict:
    """What the stored per-pair records depend on: the options (:meth:`BenchmarkConfig.signature`),
    the split sizes, the weights' sha256 and the data manifests' modification times."""
    used = {}
    for m in methods:
        used.update({k: w["sha256"] for k, w in (getattr(m, "weights", {}) or {}).items()})
    manifests = [Path(cfg.synthetic) / "manifest.json"] if cfg.synthetic is not None else []
    if "real" in datasets:
        manifests += [Path(d) / "manifest.json" for d in datasets["real"][0].clip_dirs]
    return dict(cfg.signature(), sizes={k: len(v[0]) for k, v in datasets.items()}, weights_sha256=used,
                manifests={str(p): int(p.stat().st_mtime) for p in manifests})


def _dataset_info(ds, records: dict, clips, path: str, idx: np.ndarray, out: Path) -> dict:
    """results.json's entry of one split: where, how many pairs of which kinds, which indices."""
    first = next(iter(records.values()))
    kinds = {kn: sum(1 for r in first.values() if r["kind"] == k) for k, kn in KINDS.items()}
    return {"path": portable_path(path, out, climb=True), "split": getattr(ds, "split", "test"),
            "pairs": len(idx), "pairs_total": len(ds),
            "kinds": {k: v for k, v in kinds.items() if v} or None, "clips": clips,
            "indices": [int(i) for i in idx]}


def _results(cfg: BenchmarkConfig, out: Path, methods: list, skipped: dict, records: dict, ds_info: dict) -> dict:
    """The results dict: configuration, data, methods, weights, the summary and provenance, with
    no absolute paths of this machine (weights files: their names)."""
    weights = {}
    for m in methods:
        weights.update(getattr(m, "weights", {}) or {})
    config = asdict(cfg)
    for k in ("synthetic", "real_root"):  # data relative to OUT (or by name); weights by name + sha256
        if config[k] is not None:
            config[k] = portable_path(config[k], out, climb=True)
    for k in ("clips", "stills"):
        config[k] = [portable_path(c, out, climb=True) for c in config[k]]
    results = {"config": config, "datasets": ds_info,
               "methods": {m.name: {"label": m.label, "dims": m.dims, "meta": m.meta()} for m in methods},
               "skipped": skipped, "weights": weights,
               "averaging": "pixel_pooled: mean over the GT-mask pixels of all pairs; per_pair: mean of per-pair means",
               **summarize(records),
               "provenance": provenance(weights={k: w.get("path") for k, w in weights.items()}, device=cfg.device,
                                        base=out)}
    # no absolute paths of this machine in results.json / flow_benchmark.md (weights files: their names)
    return portable_json(results, out)


if __name__ == "__main__":  # python -m evaluation.flow_benchmark: the command of evaluation/commands/flow.py
    from evaluation.commands.flow import main

    sys.exit(main())
