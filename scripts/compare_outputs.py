"""Compare two output snapshots of scripts/snapshot_outputs.sh, file by file.

    python scripts/compare_outputs.py BEFORE_DIR AFTER_DIR [--atol 1e-5] [--json REPORT.json]

Arrays (.npy, .npz), images, video frames, checkpoints (.pt) and the numbers of CSV / JSON files
are compared value by value; what legitimately differs between two runs is left out: wall-clock
columns and fields (time, seconds, it/s, dates), provenance (commit, host, versions, command
lines) and absolute paths. Each file is reported as identical, close (max |difference| <= atol) or
different (with the largest difference). Exit status 1 when a file differs or exists on one side
only.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys

import numpy as np

# wall-clock and provenance entries: they change between any two runs
VOLATILE = ("time", "sec", "second", "minutes", "it_s", "per_s", "fps_measured", "date", "created", "started",
            "finished", "host", "commit", "git", "version", "provenance", "command", "argv", "python", "platform",
            "path", "dir", "file", "elapsed", "wall", "eta", "speed", "torch", "numpy", "cwd", "pid", "timings", "fps")


def _volatile(key: str) -> bool:
    k = key.lower()
    return k.endswith("_s") or any(v in k for v in VOLATILE)


def _arrays(path: str) -> dict[str, np.ndarray]:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return {"": np.load(path, allow_pickle=False)}
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if ext in (".png", ".jpg", ".jpeg"):
        from faceflow.io import read_image

        return {"": read_image(path)}
    if ext == ".mp4":
        from faceflow.io import read_video

        return {"": read_video(path)[0]}
    if ext == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.numpy() for k, v in _flat(obj, "") if hasattr(v, "numpy")}
    raise ValueError(ext)


def _flat(obj, prefix: str):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not _volatile(str(k)):
                yield from _flat(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _number(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _compare_values(a: dict, b: dict) -> tuple[str, float, str]:
    """(verdict, max |difference|, what differs) over matching keys of two flattened records."""
    worst, what = 0.0, ""
    if set(a) != set(b):
        return "different", math.inf, f"keys {sorted(set(a) ^ set(b))[:4]}"
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape:
                return "different", math.inf, f"{k}: shape {x.shape} vs {y.shape}"
            if x.dtype.kind in "biuf" and x.size:
                d = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
            else:
                d = 0.0 if np.array_equal(x, y) else math.inf
        else:
            nx, ny = _number(x), _number(y)
            if nx is not None and ny is not None:
                d = abs(nx - ny) if not (math.isnan(nx) and math.isnan(ny)) else 0.0
            else:
                d = 0.0 if x == y else math.inf
        if d > worst:
            worst, what = d, k
    return ("identical" if worst == 0 else "close"), worst, what


def _records(path: str) -> dict:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".json":
        with open(path) as f:
            return dict(_flat(json.load(f), ""))
    if ext == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return {f"[{i}]/{k}": v for i, r in enumerate(rows) for k, v in r.items() if not _volatile(k)}
    with open(path, "rb") as f:
        return {"bytes": f.read()}


def compare_file(a: str, b: str, atol: float) -> dict:
    ext = os.path.splitext(a)[1].lower()
    try:
        if ext in (".npy", ".npz", ".png", ".jpg", ".jpeg", ".mp4", ".pt"):
            verdict, diff, what = _compare_values(_arrays(a), _arrays(b))
        else:
            verdict, diff, what = _compare_values(_records(a), _records(b))
    except Exception as e:  # an unreadable file is a difference, reported with its reason
        verdict, diff, what = "different", math.inf, f"{type(e).__name__}: {e}"
    if verdict == "close" and diff > atol:
        verdict = "different"
    return {"verdict": verdict, "max_abs_diff": diff, "where": what}


def _files(root: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
            if not f.startswith(".")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--atol", type=float, default=1e-5, help="largest |difference| reported as close")
    p.add_argument("--json", help="also write the per-file report here")
    args = p.parse_args(argv)
    fa, fb = _files(args.before), _files(args.after)
    report = {f: compare_file(os.path.join(args.before, f), os.path.join(args.after, f), args.atol)
              for f in sorted(fa & fb)}
    report.update({f: {"verdict": "only before"} for f in sorted(fa - fb)})
    report.update({f: {"verdict": "only after"} for f in sorted(fb - fa)})
    counts: dict[str, int] = {}
    for f, r in sorted(report.items()):
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        if r["verdict"] != "identical":
            extra = f"  max |diff| {r['max_abs_diff']:.3g} at {r['where']}" if "max_abs_diff" in r else ""
            print(f"{r['verdict']:>11}  {f}{extra}")
    print(f"{len(report)} files: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return int(any(r["verdict"] not in ("identical", "close") for r in report.values()))


if __name__ == "__main__":
    sys.exit(main())
