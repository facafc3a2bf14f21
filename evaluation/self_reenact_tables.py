"""The self-reenactment tables (:mod:`evaluation.self_reenact`): each metric in the layout of
DeepFaceFlow's Table 3 (rows the methods = flow providers, columns the videos and their mean),
as Markdown (best value of each column in bold) and CSV, and the summary ``table.md``.

A table is built from the finished cells ``records[(video, method)]``, each a cell's
``metrics.json`` dict (:func:`write_tables`); :func:`metric_table` gives the rows of one metric.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from evaluation.self_reenact_metrics import as_number
from faceflow import io as vio

__all__ = ["METRICS", "FLOW_LABELS", "REAL_ROW", "metric_table", "format_table_md", "format_table_csv",
           "write_tables", "write_text"]

# key -> (label, better, decimals)
METRICS = {
    "apd": ("APD", "lower", 2),
    "mapd": ("MAPD", "lower", 2),
    "mouth_apd": ("Mouth APD", "lower", 2),
    "psnr": ("PSNR", "higher", 2),
    "ssim": ("SSIM", "higher", 4),
    "lpips": ("LPIPS", "lower", 4),
    "aed": ("AED", "lower", 3),
    "ard": ("ARD (deg)", "lower", 2),
    "aeld": ("AELD (px)", "lower", 2),
    "temporal": ("Temporal warp error", "lower", 2),
}
FLOW_LABELS = {"faceflow3d": "3D facial flow, DeepFaceFlow", "dis2d": "2D optical flow, OpenCV DIS", "none": "no flow"}
REAL_ROW = "real frames (reference)"


def metric_table(cells: dict, metric: str, videos: list[str], methods: list[str],
                 extra_rows: dict | None = None) -> list[dict]:
    """Rows of one metric in the Table 3 layout: ``[{"method", "values": {video: float | None},
    "mean": float | None}]`` for each method that has a cell, then ``extra_rows`` ({row name:
    {video: value}}). ``cells[(video, method)]`` is a cell's metrics dict; the mean is over the
    videos with a value."""
    rows = []
    items = [(m, {v: cells[(v, m)].get(metric) for v in videos if (v, m) in cells}) for m in methods
             if any((v, m) in cells for v in videos)]
    items += list((extra_rows or {}).items())
    for name, vals in items:
        values = {v: as_number(vals.get(v)) for v in videos}
        got = [x for x in values.values() if x is not None]
        rows.append({"method": name, "values": values, "mean": float(np.mean(got)) if got else None})
    return rows


def _fmt(v, decimals: int) -> str:
    return "n/a" if v is None else f"{v:.{decimals}f}"


def _label(method: str) -> str:
    return f"{FLOW_LABELS[method]} (`{method}`)" if method in FLOW_LABELS else method


def format_table_md(rows: list[dict], metric: str, videos: list[str]) -> str:
    """A markdown table: rows the methods, columns the videos and the mean; the best value of
    each column (among the methods, not the reference rows) in bold."""
    label, better, dec = METRICS[metric]
    arrow = "↓" if better == "lower" else "↑"
    cols = videos + ["mean"]
    best = {}
    for c in cols:
        vals = [(r["mean"] if c == "mean" else r["values"][c]) for r in rows if r["method"] in FLOW_LABELS]
        vals = [v for v in vals if v is not None]
        if len(vals) > 1:
            best[c] = min(vals) if better == "lower" else max(vals)
    lines = [f"| Method ({label} {arrow}) | " + " | ".join(videos) + " | Mean |",
             "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r["mean"] if c == "mean" else r["values"][c]
            s = _fmt(v, dec)
            if v is not None and r["method"] in FLOW_LABELS and c in best and round(v, dec) == round(best[c], dec):
                s = f"**{s}**"
            cells.append(s)
        lines.append(f"| {_label(r['method'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_table_csv(rows: list[dict], videos: list[str]) -> str:
    """CSV: ``method,<videos...>,mean`` (full precision; "n/a" where missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method"] + videos + ["mean"])
    for r in rows:
        w.writerow([r["method"]] + ["n/a" if r["values"][v] is None else repr(r["values"][v]) for v in videos]
                   + ["n/a" if r["mean"] is None else repr(r["mean"])])
    return buf.getvalue()


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (its folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with vio.atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _notes(records: dict, videos: list[str]) -> list[str]:
    """The notes under the tables: why LPIPS is n/a, each video's held-out frames and reference flow, each
    cell's training and its own notes."""
    notes = []
    reasons = sorted({r.get("lpips_reason") for r in records.values() if r.get("lpips_reason")})
    for reason in reasons:
        notes.append(f"LPIPS n/a: {reason}")
    for v in videos:
        recs = [r for (vv, _), r in records.items() if vv == v]
        refs = sorted({str(r.get("reference_flow")) for r in recs})
        if recs:
            notes.append(f"{v}: held-out frames {recs[0]['test_range'][0]}-{recs[0]['test_range'][1] - 1} "
                         f"({recs[0]['frames']} frames); temporal reference flow: {', '.join(refs)}")
    for (v, m), r in sorted(records.items()):
        tr = r.get("train", {})
        budget = f"{tr.get('budget')}" if tr else "?"
        notes.append(f"{v} / {m}: trained {tr.get('step')} steps in {tr.get('elapsed_s', 0.0):.0f} s "
                     f"(budget {budget}, seed {tr.get('seed')})")
        for n in r.get("notes", []):
            notes.append(f"{v} / {m}: {n}")
    return notes


def _real_rows(records: dict, videos: list[str]) -> dict:
    """The temporal table's reference row: {REAL_ROW: {video: the real frames' own warping error}}."""
    real_rows = {}
    for v in videos:
        vals = [r.get("temporal_real") for (vv, _), r in records.items() if vv == v]
        vals = [x for x in vals if x is not None]
        if vals:
            real_rows.setdefault(REAL_ROW, {})[v] = vals[0]
    return real_rows


def _metric_md(rows: list[dict], metric: str, videos: list[str], notes: list[str]) -> str:
    """``tables/<metric>.md``: the table, with the notes that concern it (LPIPS, temporal)."""
    label, better, _ = METRICS[metric]
    md = (f"# Self-reenactment: {label} ({better} is better)\n\n" + format_table_md(rows, metric, videos))
    if metric == "lpips":
        md += "".join(f"\n- {n}" for n in notes if n.startswith("LPIPS")) + "\n"
    if metric == "temporal":
        md += "".join(f"\n- {n}" for n in notes if "temporal reference" in n) + "\n"
    return md


def _summary_lines(tables: dict, cells: dict, videos: list[str], methods: list[str]) -> list[str]:
    """Every metric's mean over videos, one row per method with a cell."""
    summary = ["| Method | " + " | ".join(f"{METRICS[m][0]} {'↓' if METRICS[m][1] == 'lower' else '↑'}"
                                         for m in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for method in methods:
        if not any((v, method) in cells for v in videos):
            continue
        vals = []
        for m in METRICS:
            row = next(r for r in tables[m] if r["method"] == method)
            vals.append(_fmt(row["mean"], METRICS[m][2]))
        summary.append(f"| {_label(method)} | " + " | ".join(vals) + " |")
    return summary


def write_tables(out, records: dict, videos: list[str], methods: list[str]) -> dict:
    """Write ``table.md``, ``table.csv`` and ``tables/<metric>.md|.csv`` from the finished cells
    ``records[(video, method)]`` (each a metrics.json dict). Returns {metric: rows}."""
    out = Path(out)
    cells = {k: r["metrics"] for k, r in records.items()}
    real_rows = _real_rows(records, videos)
    tables = {}
    notes = _notes(records, videos)
    for metric in METRICS:
        rows = metric_table(cells, metric, videos, methods, real_rows if metric == "temporal" else None)
        tables[metric] = rows
        write_text(out / "tables" / f"{metric}.md", _metric_md(rows, metric, videos, notes))
        write_text(out / "tables" / f"{metric}.csv", format_table_csv(rows, videos))
    # the summary: APD in Table 3's layout, every metric's mean, the notes
    md = ("# Self-reenactment on held-out frames: APD (lower is better)\n\n"
          "Average pixel distance (RGB L2 on 0-255) between the generated and the real last third of "
          "each video; one model per video and flow provider, same preset, seed and budget. See "
          "`tables/` for the other metrics and `evaluation/self_reenact.py` for their definitions.\n\n"
          + format_table_md(tables["apd"], "apd", videos)
          + "\n## All metrics (mean over videos)\n\n" + "\n".join(_summary_lines(tables, cells, videos, methods))
          + "\n" + "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    write_text(out / "table.md", md)
    write_text(out / "table.csv", format_table_csv(tables["apd"], videos))
    return tables
