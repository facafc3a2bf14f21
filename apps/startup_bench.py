"""How fast the command line answers: the wall time of ``faceflow ... --help`` for the top level
and every command (target: under 1.5 s on a 2-core CPU), and of ``faceflow flow IMG1 IMG2`` on a
512x512 pair against the time of its own compute stages (reading the inputs, loading the
weights, landmarks to flow; recorded by the command in its manifest): the ratio is the start-up
overhead (target: under 2x). Each time is the median of --repeat fresh processes. Measure with
nothing else running: on 2 cores a busy neighbour changes every number.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET_S = 1.5
FLOW_TARGET_RATIO = 2.0


def _wall(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            from faceflow.errors import FaceflowError

            raise FaceflowError(f"{' '.join(argv[1:])} failed: {r.stderr.strip()[-500:]}")
    return statistics.median(times)


def default_pair(folder: Path) -> tuple[Path, Path]:
    """Frames 0 and 8 of a 512x512 tier-A clip (LivePortrait_d10) written as PNGs."""
    from faceflow import io as vio
    from faceflow.runtime.assets import media_dir

    frames = list(vio.read_frames(media_dir() / "videos" / "LivePortrait_d10.mp4", max_frames=9))
    a, b = folder / "a.png", folder / "b.png"
    vio.write_image(a, frames[0])
    vio.write_image(b, frames[8])
    return a, b


def bench_startup(repeat: int = 3, images: tuple[str, str] | None = None) -> dict:
    from apps.cli import COMMANDS
    from faceflow.cli import leaves

    base = [sys.executable, "-m", "apps.cli"]
    helps = {"(top level)": _wall(base + ["--help"], repeat)}
    for path, _ in leaves(COMMANDS):
        helps[" ".join(path)] = _wall(base + list(path) + ["--help"], repeat)
    with tempfile.TemporaryDirectory() as tmp:
        pair = images or default_pair(Path(tmp))
        runs = []
        for k in range(repeat):
            out = Path(tmp) / f"flow{k}"
            wall = _wall(base + ["flow", str(pair[0]), str(pair[1]), "--out", str(out)], 1)
            manifest = json.loads((out / "manifest.json").read_text())
            runs.append((wall, manifest["seconds"], manifest.get("stage_seconds", {})))
    wall, compute, stages = sorted(runs)[len(runs) // 2]
    from faceflow.runtime.provenance import provenance

    return {"benchmark": "startup", "provenance": provenance(), "repeat": repeat, "help_target_s": HELP_TARGET_S,
            "help_s": {k: round(v, 3) for k, v in helps.items()},
            "slowest_help": max(helps, key=helps.get), "slowest_help_s": round(max(helps.values()), 3),
            "flow": {"pair": [Path(p).name for p in pair], "process_s": round(wall, 3),
                     "compute_stages_s": round(compute, 3), "stages_s": stages,
                     "ratio": round(wall / compute, 2), "target_ratio": FLOW_TARGET_RATIO}}


def add_arguments(p) -> None:
    p.add_argument("--repeat", type=int, default=3, help="fresh processes per measurement; the median is reported")
    p.add_argument("--images", nargs=2, default=None, metavar=("IMG1", "IMG2"),
                   help="the flow pair (default: frames 0 and 8 of the 512x512 LivePortrait_d10 clip)")
    p.add_argument("--json", action="store_true", help="print only the JSON result")


def run(args) -> int:
    res = bench_startup(args.repeat, tuple(args.images) if args.images else None)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    for name, s in res["help_s"].items():
        print(f"{s:6.2f} s  faceflow {name} --help" + ("  (over target)" if s > HELP_TARGET_S else ""))
    f = res["flow"]
    print(f"faceflow flow on {' '.join(f['pair'])}: {f['process_s']:.2f} s for {f['compute_stages_s']:.2f} s of "
          f"compute stages ({f['stages_s']}): {f['ratio']}x (target under {FLOW_TARGET_RATIO}x)")
    return 0
