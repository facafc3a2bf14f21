"""The flow benchmark's numbers and report (:mod:`evaluation.flow_benchmark`): per-pair records
summed into pixel-pooled and per-pair AEPE cells and the photometric check (:func:`summarize`),
the Markdown tables (:func:`format_markdown`), and the files ``results.json`` and
``flow_benchmark.md`` (:func:`write_outputs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from evaluation.flow_data import DATASETS, KINDS
from faceflow import io as vio

__all__ = ["REFERENCE_ROWS", "summarize", "format_markdown", "write_outputs"]

# the photometric check's reference rows (flows that are not methods)
REFERENCE_ROWS = {"gt_pseudo_flow": "Ground-truth pseudo-flow (reference)", "zero_flow": "Zero flow (reference)"}


def _cell(records: list[dict], key: str, count: str = "n") -> dict | None:
    """Pixel-pooled and per-pair AEPE of ``key`` ('s3', 's2'; the parts' 'sh3', 'se3' over ``count``
    'nh') over records."""
    recs = [r for r in records if r.get(key) is not None and r.get(count, 0) > 0]
    if not recs:
        return None
    s = sum(r[key] for r in recs)
    n = sum(r[count] for r in recs)
    return {"pixel_pooled": s / n, "per_pair": float(np.mean([r[key] / r[count] for r in recs])),
            "pairs": len(recs), "pixels": int(n)}


def _metrics(records: list[dict]) -> dict:
    """The cells of one method on one group of pairs; a decomposed method adds its parts."""
    cells = {"aepe3d": _cell(records, "s3"), "aepe2d": _cell(records, "s2"), "pairs": len(records)}
    if any("sh3" in r for r in records):
        cells.update(aepe3d_head=_cell(records, "sh3", "nh"), aepe3d_expression=_cell(records, "se3", "nh"))
    return cells


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
            metrics.setdefault(meth, {})[ds] = {g: _metrics(v) for g, v in groups.items()}
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



# ---------------------------------------------------------------------- the Markdown report

_DATASET_NAMES = {"synthetic": "Synthetic test", "real": "Real test (pseudo-GT)"}


def _fmt(cell: dict | None) -> str:
    if cell is None:
        return "n/a"
    return f"{cell['pixel_pooled']:.3f} ({cell['per_pair']:.3f})"


def _table(rows: list[tuple[str, list[str]]], header: list[str]) -> list[str]:
    """A Markdown table: ``rows`` [(label, cells)], numbers right-aligned."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join([label] + cells) + " |" for label, cells in rows]
    return out


def format_markdown(results: dict) -> str:
    """The Markdown report of :func:`evaluation.flow_benchmark.run_benchmark`'s results: the data,
    Tables 1 and 2 (and by pair kind), the photometric check, the methods with time per pair and
    failures, the weights."""
    order = list(results["methods"])
    present = [d for d in DATASETS if d in results["datasets"]]
    L = ["# Flow benchmark (DeepFaceFlow Tables 1 and 2 on our data)", ""]
    L += _data_lines(results["datasets"])
    L += _aepe_sections(results, order, present)
    L += _parts_section(results, order, present)
    L += _photometric_section(results, order)
    L += _precision_section(results, order)
    L += _methods_section(results, order, present)
    L += _weights_section(results.get("weights") or {})
    return "\n".join(L) + "\n"


def _data_lines(ds_info: dict) -> list[str]:
    """One line per test split: its path, how many of its pairs, their kinds and clips."""
    L = []
    for d in DATASETS:
        if d not in ds_info:
            continue
        info = ds_info[d]
        kinds = info.get("kinds") or {}
        kind_txt = ", ".join(f"{v} {k}" for k, v in kinds.items()) if kinds else "pair kinds unknown"
        L.append(f"- {_DATASET_NAMES[d]}: `{info['path']}`: {info['pairs']} of {info['pairs_total']} pairs "
                 f"({'evenly spaced subset' if info['pairs'] < info['pairs_total'] else 'all'}; {kind_txt})"
                 + (f"; clips: {', '.join(info['clips'])}" if info.get("clips") else ""))
    for d in DATASETS:
        if d not in ds_info:
            L.append(f"- {_DATASET_NAMES[d]}: not evaluated (no data given)")
    return L


def _pair_count(info: dict, group: str) -> int:
    return info["pairs"] if group == "all" else (info.get("kinds") or {}).get(group, 0)


def _aepe_table(results: dict, key: str, which: list[str], cols: list[tuple[str, str]]) -> list[str]:
    """AEPE ``key`` ('aepe3d' / 'aepe2d') of the methods ``which``; a column per (dataset, group)."""
    header = ["Method"] + [_DATASET_NAMES[d] + ("" if g == "all" else f", {g}")
                           + f" ({_pair_count(results['datasets'][d], g)} pairs)" for d, g in cols]
    rows = []
    for m in which:
        cells = []
        for d, g in cols:
            c = results["metrics"].get(m, {}).get(d, {}).get(g)
            cells.append(_fmt(c[key]) if c else "n/a")
        rows.append((results["methods"][m]["label"], cells))
    return _table(rows, header)


def _aepe_sections(results: dict, order: list[str], present: list[str]) -> list[str]:
    """Table 1 (3D AEPE, 3D methods), Table 2 (2D AEPE, all methods), and both by pair kind
    when the data tells the kinds apart."""
    three = [m for m in order if results["methods"][m]["dims"] == 3]
    every = [(d, "all") for d in present]
    L = ["", "AEPE in pixels of the 224x224 registered frame of I1, over the ground-truth mask. "
         "Each cell: the mean over the pixels of all pairs pooled (in parentheses: the mean of the "
         "per-pair means). Consecutive and gap pairs pooled.", ""]
    L += ["## Table 1: 3D AEPE (pixels)", ""] + _aepe_table(results, "aepe3d", three, every) + [""]
    L += ["## Table 2: 2D AEPE (pixels)", ""] + _aepe_table(results, "aepe2d", order, every) + [""]
    split_cols = [(d, g) for d in present for g in KINDS.values()
                  if (results["datasets"][d].get("kinds") or {}).get(g)]
    if split_cols:
        L += ["## By pair kind", "", "3D AEPE:", ""] + _aepe_table(results, "aepe3d", three, split_cols) + [""]
        L += ["2D AEPE:", ""] + _aepe_table(results, "aepe2d", order, split_cols) + [""]
    return L


def _photometric_section(results: dict, order: list[str]) -> list[str]:
    """The photometric check of every method and reference flow (none without real test data)."""
    photo = results.get("photometric") or {}
    if not photo:
        return []
    any_rec = next(iter(photo.values()))
    L = [f"## Photometric check (real test, {any_rec['pairs_used']} pairs)", "",
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
        label = results["methods"][m]["label"] if m in results["methods"] else REFERENCE_ROWS.get(m, m)
        rows.append((label, [err, f"{100 * frac:.1f}%", str(p["pairs"])]))
    return L + _table(rows, ["Flow", "MAE 0-255 (per-pair mean)", "mask pixels scored", "pairs"]) + [""]


def _parts_section(results: dict, order: list[str], present: list[str]) -> list[str]:
    """3D AEPE of the head-motion and expression flows of decomposed methods (pairs with a
    head-motion flow: the synthetic ones)."""
    rows = []
    for m in order:
        for d in present:
            cell = results["metrics"].get(m, {}).get(d, {}).get("all", {})
            if cell.get("aepe3d_head"):
                rows.append((f"{results['methods'][m]['label']}, {_DATASET_NAMES[d]}",
                             [_fmt(cell["aepe3d_head"]), _fmt(cell["aepe3d_expression"]), _fmt(cell["aepe3d"])]))
    if not rows:
        return []
    return (["## Decomposed flow: 3D AEPE of each part (pixels)", "",
             "The rigid head-motion flow against the pairs' head_flow, the expression flow (the rest) against "
             "flow - head_flow, and the whole flow, on the pairs that record a head-motion flow.", ""]
            + _table(rows, ["Method, data", "head motion", "expression", "whole flow"]) + [""])


def _precision_section(results: dict, order: list[str]) -> list[str]:
    """The precision rows on stills (:mod:`evaluation.flow_precision`), when asked for."""
    prec = results.get("precision")
    if not prec:
        return []
    stills = sorted({p["still"] for p in prec["pairs"]})
    L = [f"## Precision on stills ({', '.join(stills)})", "",
         f"Each still against itself (true flow 0) and against {prec['motions_per_still']} in-plane rigid motions "
         f"of itself (rotation up to {prec['max_angle_deg']:g} degrees about the face, shift up to "
         f"{prec['max_shift_px']:g} px; true 2D flow known exactly, true z 0), at the 224 template, on the face "
         "(the convex hull of the 68 landmarks). 2D: mean end-point error (p99 in parentheses); z: mean |z|.", ""]
    rows = []
    for m in order:
        if m not in prec["rows"]:
            continue
        r = prec["rows"][m]
        cells = []
        for kind in ("identical", "similarity"):
            c = r.get(kind)
            cells += ["n/a", "n/a"] if c is None else [f"{c['epe2d']:.3f} ({c['epe2d_p99']:.2f})",
                                                       f"{c['abs_z']:.3f}" if "abs_z" in c else "-"]
        rows.append((results["methods"][m]["label"], cells))
    return L + _table(rows, ["Flow", "identical: 2D px", "identical: z px", "similarity: 2D EPE px",
                             "similarity: z px"]) + [""]


def _methods_section(results: dict, order: list[str], present: list[str]) -> list[str]:
    """Each method's name, flow kind, time per pair and failures; the device, skipped methods
    and settings."""
    rows = []
    for m in order:
        t = results["time_per_pair_s"].get(m)
        f = results["failures"].get(m, {})
        rows.append((results["methods"][m]["label"],
                     [f"`{m}`", "3D" if results["methods"][m]["dims"] == 3 else "2D",
                      "n/a" if t is None else f"{t:.3f}", " / ".join(f"{f.get(d, 0)}" for d in present) or "0"]))
    L = ["## Methods", ""]
    L += _table(rows, ["Method", "name", "flow", "time per pair (s)",
                       ("failures (" + " / ".join(present) + ")" if present else "failures")]) + [""]
    L.append(f"Device: {results['config']['device']}, batch size {results['config']['batch_size']} "
             "(time per pair = batch time / batch size; failures score zero flow).")
    for m, why in results.get("skipped", {}).items():
        L.append(f"- skipped `{m}`: {why}")
    for m in order:
        meta = {k: v for k, v in (results["methods"][m].get("meta") or {}).items() if k != "weights"}
        if meta:
            L.append(f"- `{m}` settings: {json.dumps(meta, default=str)}")
    return L


def _weights_section(weights: dict) -> list[str]:
    """The weights files used: name, kind, sha256, config and the provenance part of their meta."""
    if not weights:
        return []
    L = ["", "## Weights", ""]
    for key, w in weights.items():
        # provenance only: the bulky parts (mesh triangles, full configs, data lists) stay in results.json
        meta = {k: v for k, v in (w.get("meta") or {}).items() if k in ("step", "iterations", "best_val_metric")}
        L.append(f"- {key}: `{w['path']}` (kind {w['kind']}, sha256 {w['sha256'][:12]}); config "
                 f"{json.dumps(w.get('config'))}; meta {json.dumps(meta, default=str)}")
    return L


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
    """JSON for what json cannot write: numpy scalars, paths, tuples and sets, tensors; else str."""
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
