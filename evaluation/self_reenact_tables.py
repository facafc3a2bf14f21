"""The self-reenactment tables (:mod:`evaluation.self_reenact`): each metric in the layout of
DeepFaceFlow's Table 3 (rows the methods = flow providers, columns the videos and their mean),
as Markdown (best value of each column in bold) and CSV, and the summary ``table.md``.

A table is built from the finished cells ``records[(video, method, seed)]``, each a cell's
``metrics.json`` dict (:func:`write_tables`); :func:`metric_table` gives the rows of one metric,
every value the mean over the seeds with its std (``mean +- std`` in Markdown when a cell has
more than one seed), and :func:`paired_comparison` the differences between two providers over
the (video, seed) pairs both have.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import stats

from evaluation.self_reenact_metrics import as_number
from faceflow import io as vio

__all__ = ["METRICS", "FLOW_LABELS", "REAL_ROW", "metric_table", "format_table_md", "format_table_csv",
           "write_tables", "write_text", "seed_groups", "first_seed", "paired_comparison", "format_paired_md",
           "format_value", "ARROWS"]

# key -> (label, better, decimals)
METRICS = {
    "apd": ("APD", "lower", 2),
    "mapd": ("MAPD", "lower", 2),
    "mouth_apd": ("Mouth APD", "lower", 2),
    "psnr": ("PSNR", "higher", 2),
    "ssim": ("SSIM", "higher", 4),
    "lpips": ("LPIPS", "lower", 4),
    "csim": ("CSIM", "higher", 3),
    "aed": ("AED", "lower", 3),
    "ard": ("ARD (deg)", "lower", 2),
    "aeld": ("AELD (px)", "lower", 2),
    "temporal": ("Temporal warp error", "lower", 2),
    "sharpness": ("Sharpness (vs real)", "closer to 1", 3),  # a checkerboard's dots also score above 1
    "grid": ("Grid (lattice peak)", "lower", 2),
}
ARROWS = {"lower": "↓", "higher": "↑", "closer to 1": "→1"}


def _score(value: float, better: str) -> float:
    """A value turned so that lower is better: itself, its negation, or |log value| ("closer to 1")."""
    if better == "higher":
        return -value
    if better == "closer to 1":
        return abs(float(np.log(max(value, 1e-12))))
    return value


FLOW_LABELS = {"faceflow3d": "3D facial flow, DeepFaceFlow", "dis2d": "2D optical flow, OpenCV DIS", "none": "no flow"}
REAL_ROW = "real frames (reference)"


def seed_groups(records: dict) -> dict:
    """``{(video, method): {seed: metrics dict}}`` from ``records[(video, method, seed)]`` (a
    2-tuple key counts as the record's ``seed``, default 0)."""
    groups: dict = {}
    for key, r in records.items():
        seed = int(key[2]) if len(key) > 2 else int(r.get("seed", 0))
        groups.setdefault((key[0], key[1]), {})[seed] = r["metrics"]
    return groups


def first_seed(records: dict) -> dict:
    """``{(video, method): the record of its lowest seed}`` (the heatmaps and samples show one seed)."""
    out: dict = {}
    for key in sorted(records, key=lambda k: (k[0], k[1], k[2] if len(k) > 2 else 0)):
        out.setdefault((key[0], key[1]), records[key])
    return out


def _std(values: list[float]) -> float | None:
    """Sample std (ddof 1) of two or more values, else None."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def metric_table(groups: dict, metric: str, videos: list[str], methods: list[str],
                 extra_rows: dict | None = None) -> list[dict]:
    """Rows of one metric in the Table 3 layout: ``[{"method", "values": {video: mean over seeds
    | None}, "stds": {video: std over seeds | None}, "seeds": {video: n}, "mean", "mean_std"}]``
    for each method that has a cell, then ``extra_rows`` ({row name: {video: value}}, no std).
    ``groups[(video, method)]`` is ``{seed: metrics dict}`` (:func:`seed_groups`). ``mean`` is the
    mean over the videos with a value; ``mean_std`` the std over seeds of the per-seed means over
    videos (None with one seed)."""
    rows = []
    for m in methods:
        per = {v: {s: as_number(mm.get(metric)) for s, mm in groups[(v, m)].items()} for v in videos
               if (v, m) in groups}
        if not per:
            continue
        per = {v: {s: x for s, x in d.items() if x is not None} for v, d in per.items()}
        values = {v: float(np.mean(list(per[v].values()))) if per.get(v) else None for v in videos}
        stds = {v: _std(list(per[v].values())) if per.get(v) else None for v in videos}
        got = [x for x in values.values() if x is not None]
        seeds = sorted({s for d in per.values() for s in d})
        by_seed = [np.mean([d[s] for d in per.values() if s in d]) for s in seeds]
        rows.append({"method": m, "values": values, "stds": stds,
                     "seeds": {v: len(per.get(v, {})) for v in videos},
                     "mean": float(np.mean(got)) if got else None, "mean_std": _std([float(x) for x in by_seed])})
    for name, vals in (extra_rows or {}).items():
        values = {v: as_number(vals.get(v)) for v in videos}
        got = [x for x in values.values() if x is not None]
        rows.append({"method": name, "values": values, "stds": {v: None for v in videos},
                     "seeds": {v: 1 for v in videos}, "mean": float(np.mean(got)) if got else None,
                     "mean_std": None})
    return rows


def paired_comparison(groups: dict, metric: str, a: str, b: str, videos: list[str]) -> dict:
    """Provider ``a`` against ``b`` on ``metric`` over the (video, seed) cells both have:
    ``{"n", "mean_diff" (a - b), "std_diff", "a_better" (pairs where a is better), "p" (two-sided
    paired t-test, None under 2 pairs or when every difference is equal), "pairs": [(video, seed,
    a, b)]}``."""
    better = METRICS[metric][1]
    pairs = []
    for v in videos:
        ga, gb = groups.get((v, a), {}), groups.get((v, b), {})
        for s in sorted(set(ga) & set(gb)):
            xa, xb = as_number(ga[s].get(metric)), as_number(gb[s].get(metric))
            if xa is not None and xb is not None:
                pairs.append((v, s, xa, xb))
    d = np.array([p[2] - p[3] for p in pairs], np.float64)
    p_value = None
    if len(d) > 1 and np.ptp(d) > 0:
        p_value = float(stats.ttest_rel([p[2] for p in pairs], [p[3] for p in pairs]).pvalue)
    wins = int(sum(_score(p[2], better) < _score(p[3], better) for p in pairs))
    return {"n": len(pairs), "mean_diff": float(d.mean()) if len(d) else None, "std_diff": _std(list(d)),
            "a_better": wins, "p": p_value, "pairs": pairs}


def format_paired_md(groups: dict, a: str, b: str, videos: list[str]) -> str:
    """A markdown table: every metric's paired comparison of ``a`` against ``b``."""
    lines = [f"| Metric | mean of `{a}` - `{b}` | std | pairs | `{a}` better in | p (paired t) |",
             "|---|---|---|---|---|---|"]
    for metric, (label, better, dec) in METRICS.items():
        c = paired_comparison(groups, metric, a, b, videos)
        if not c["n"]:
            continue
        p = "n/a" if c["p"] is None else f"{c['p']:.3f}"
        std = format_value(c["std_diff"], dec)
        lines.append(f"| {label} ({better} is better) | {c['mean_diff']:+.{dec}f} | {std} | "
                     f"{c['n']} | {c['a_better']} of {c['n']} | {p} |")
    return "\n".join(lines) + "\n"


def format_value(v, decimals: int, std=None) -> str:
    """``v`` with ``decimals`` decimals (``v ± std`` with a std), "n/a" for None."""
    if v is None:
        return "n/a"
    return f"{v:.{decimals}f}" if std is None else f"{v:.{decimals}f} ± {std:.{decimals}f}"


def _label(method: str) -> str:
    return f"{FLOW_LABELS[method]} (`{method}`)" if method in FLOW_LABELS else method


def format_table_md(rows: list[dict], metric: str, videos: list[str]) -> str:
    """A markdown table: rows the methods, columns the videos and the mean (``mean ± std`` over
    seeds where there are several); the best value of each column (among the methods, not the
    reference rows) in bold."""
    label, better, dec = METRICS[metric]
    arrow = ARROWS[better]
    cols = videos + ["mean"]
    best = {}
    for c in cols:
        vals = [(r["mean"] if c == "mean" else r["values"][c]) for r in rows if r["method"] in FLOW_LABELS]
        vals = [v for v in vals if v is not None]
        if len(vals) > 1:
            best[c] = min(vals, key=lambda v: _score(v, better))
    lines = [f"| Method ({label} {arrow}) | " + " | ".join(videos) + " | Mean |",
             "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r["mean"] if c == "mean" else r["values"][c]
            sd = r.get("mean_std") if c == "mean" else r.get("stds", {}).get(c)
            s = format_value(v, dec, sd)
            if v is not None and r["method"] in FLOW_LABELS and c in best and round(v, dec) == round(best[c], dec):
                s = f"**{s}**"
            cells.append(s)
        lines.append(f"| {_label(r['method'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_table_csv(rows: list[dict], videos: list[str]) -> str:
    """CSV: ``method,<videos...>,mean``, then ``<video> std`` columns and ``mean std`` (full precision;
    "n/a" where missing or with a single seed)."""
    def num(x):
        return "n/a" if x is None else repr(x)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["method"] + videos + ["mean"] + [f"{v} std" for v in videos] + ["mean std"])
    for r in rows:
        stds = r.get("stds", {})
        w.writerow([r["method"]] + [num(r["values"][v]) for v in videos] + [num(r["mean"])]
                   + [num(stds.get(v)) for v in videos] + [num(r.get("mean_std"))])
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
        recs = [r for k, r in records.items() if k[0] == v]
        refs = sorted({str(r.get("reference_flow")) for r in recs})
        if recs:
            notes.append(f"{v}: held-out frames {recs[0]['test_range'][0]}-{recs[0]['test_range'][1] - 1} "
                         f"({recs[0]['frames']} frames); temporal reference flow: {', '.join(refs)}")
    for key, r in sorted(records.items()):
        v, m = key[0], key[1]
        tr = r.get("train", {})
        budget = f"{tr.get('budget')}" if tr else "?"
        notes.append(f"{v} / {m}: trained {tr.get('step')} steps in {tr.get('elapsed_s', 0.0):.0f} s "
                     f"(budget {budget}, seed {tr.get('seed')})")
        for n in r.get("notes", []):
            notes.append(f"{v} / {m} / seed {tr.get('seed')}: {n}")
    return notes


def _real_rows(records: dict, videos: list[str], key: str = "temporal_real") -> dict:
    """A table's reference row: {REAL_ROW: {video: the real frames' own value of ``key``}} (the
    temporal warping error, the grid score)."""
    real_rows = {}
    for v in videos:
        vals = [r.get(key) for k, r in records.items() if k[0] == v]
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


def _summary_lines(tables: dict, groups: dict, videos: list[str], methods: list[str]) -> list[str]:
    """Every metric's mean over videos, one row per method with a cell."""
    summary = ["| Method | " + " | ".join(f"{METRICS[m][0]} {ARROWS[METRICS[m][1]]}"
                                         for m in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for method in methods:
        if not any((v, method) in groups for v in videos):
            continue
        vals = []
        for m in METRICS:
            row = next(r for r in tables[m] if r["method"] == method)
            vals.append(format_value(row["mean"], METRICS[m][2], row.get("mean_std")))
        summary.append(f"| {_label(method)} | " + " | ".join(vals) + " |")
    return summary


def _paired_section(out: Path, groups: dict, videos: list[str], methods: list[str]) -> str:
    """The paired comparisons of every two providers (markdown) and ``tables/paired.csv``."""
    present = [m for m in methods if any((v, m) in groups for v in videos)]
    md, rows = "", []
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            md += (f"\n## Paired comparison: `{a}` against `{b}`\n\nDifferences of the cells trained on the same "
                   f"video with the same seed.\n\n" + format_paired_md(groups, a, b, videos))
            for metric in METRICS:
                c = paired_comparison(groups, metric, a, b, videos)
                if c["n"]:
                    rows.append([a, b, metric, repr(c["mean_diff"]), "n/a" if c["std_diff"] is None else
                                 repr(c["std_diff"]), c["n"], c["a_better"], "n/a" if c["p"] is None else repr(c["p"])])
    if rows:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["a", "b", "metric", "mean_diff", "std_diff", "pairs", "a_better", "p"])
        w.writerows(rows)
        write_text(out / "tables" / "paired.csv", buf.getvalue())
    return md


def write_tables(out, records: dict, videos: list[str], methods: list[str]) -> dict:
    """Write ``table.md``, ``table.csv``, ``tables/<metric>.md|.csv`` and, with two providers or
    more, ``tables/paired.csv`` from the finished cells ``records[(video, method, seed)]`` (each a
    metrics.json dict). Returns {metric: rows}."""
    out = Path(out)
    cells = seed_groups(records)
    real_rows = {"temporal": _real_rows(records, videos), "grid": _real_rows(records, videos, "grid_real")}
    tables = {}
    notes = _notes(records, videos)
    for metric in METRICS:
        rows = metric_table(cells, metric, videos, methods, real_rows.get(metric))
        tables[metric] = rows
        write_text(out / "tables" / f"{metric}.md", _metric_md(rows, metric, videos, notes))
        write_text(out / "tables" / f"{metric}.csv", format_table_csv(rows, videos))
    # the summary: APD in Table 3's layout, every metric's mean, the notes
    seeds = sorted({s for g in cells.values() for s in g})
    paired = _paired_section(out, cells, videos, methods)
    md = ("# Self-reenactment on held-out frames: APD (lower is better)\n\n"
          "Average pixel distance (RGB L2 on 0-255) between the generated and the real last third of "
          "each video; one model per video, flow provider and seed, same preset and budget "
          f"(seeds: {', '.join(map(str, seeds))}; with several, mean ± std over the seeds). See "
          "`tables/` for the other metrics and `evaluation/self_reenact.py` for their definitions.\n\n"
          + format_table_md(tables["apd"], "apd", videos)
          + "\n## All metrics (mean over videos)\n\n" + "\n".join(_summary_lines(tables, cells, videos, methods))
          + "\n" + paired + "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes))
    write_text(out / "table.md", md)
    write_text(out / "table.csv", format_table_csv(tables["apd"], videos))
    return tables
