#!/usr/bin/env bash
# Issue 16's prepared GPU run (reenactment), for a session that is lent a `device` machine: run it
# at once, from the repository root, with a limit that leaves time to rerun (about 9 minutes):
#
#     run(command="bash scripts/gpu_check.sh", timeout_s=590)   # stage budgets sum to 540 s
#
# Every stage has its own time budget and writes into $OUT (default: outputs/gpu_check), so
# whatever finished comes back even if a later stage runs out of time:
#   1. bench_cuda.json  `python -m reenact.bench --device cuda --amp`: generator fps of the tiny and
#                       paper presets at 256x256, fp32 and fp16 autocast, conditioning, end to end
#                       (Head2Head++: 18 fps on an RTX 2080 Ti; the goal here: well above 60 fps
#                       for the paper generator)
#   2. data             `reenact preprocess` of a shared clip (300 frames at 256, both flows)
#   3. run/             the paper preset trained with AMP for a fixed time (--max-minutes) on CUDA;
#                       its log.csv gives iterations per second
#   4. head.mp4, self.mp4 + .json: head reenactment driven by another person's clip, and self
#                       reenactment of the held-out frames (APD in self.json)
#   memory.csv          the GPU's memory in use, sampled every 2 s during the whole run
#   log.txt             every command and its exit status, with timings; summary.json at the end
#
# Assets: $FACEFLOW_ASSETS / $FACEFLOW_MEDIA, else ./shared or ../shared (as everywhere else).
# SMOKE=1 shrinks every stage to seconds on a CPU (a dry run of this script, not a measurement).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_check}
rm -f "$OUT/log.txt"  # each run starts a fresh log
source scripts/gpu_lib.sh  # $LOG, assets and media, $PY, stage()
DEVICE=${DEVICE:-cuda}
MEDIA=${FACEFLOW_MEDIA:-../shared/media}
TARGET="$MEDIA/videos/EDTalk_uncrop_Obama.mp4"
SOURCE="$MEDIA/videos/MimicTalk_Trump_10s.mp4"
if [ "${SMOKE:-0}" = 1 ]; then
  DEVICE=${DEVICE_SMOKE:-cpu}; SIZE=64; FRAMES=30; PRESET=tiny; MINUTES=0.1; BENCH="--frames 2 --size 64 --presets tiny"
  AMP=off; RUNFRAMES=8
else
  SIZE=256; FRAMES=300; PRESET=paper; MINUTES=3; BENCH="--frames 50 --amp"; AMP=fp16; RUNFRAMES=100
fi
FF="$PY -m apps.cli"

if command -v nvidia-smi >/dev/null 2>&1; then  # GPU memory in use, every 2 s, until the end
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -l 2 > "$OUT/memory.csv" 2>/dev/null &
  SMI=$!
  trap 'kill $SMI 2>/dev/null' EXIT
fi
stage bench 90 sh -c "$PY -m reenact.bench --device $DEVICE --json $BENCH > $OUT/bench_cuda.json"
stage preprocess 120 $FF reenact preprocess "$TARGET" "$OUT/data" --size $SIZE --max-frames $FRAMES \
  --flow faceflow3d dis2d --device "$DEVICE" --no-videos
stage train $(( ${MINUTES%.*} * 60 + 60 )) $FF reenact train "$OUT/data" "$OUT/run" --preset $PRESET \
  --max-minutes $MINUTES --amp $AMP --device "$DEVICE" --ckpt-every 200 --quiet
stage head 45 $FF reenact run "$OUT/run" --mode head --source "$SOURCE" --out "$OUT/head.mp4" \
  --max-frames $RUNFRAMES --device "$DEVICE" --work-dir "$OUT/work"
stage self 45 $FF reenact run "$OUT/run" --mode self --out "$OUT/self.mp4" --max-frames $RUNFRAMES \
  --device "$DEVICE"
"$PY" - "$OUT" >> "$LOG" 2>&1 <<'EOF'
import csv, json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {}
rows = list(csv.DictReader(open(out / "run" / "log.csv"))) if (out / "run" / "log.csv").is_file() else []
if len(rows) >= 2:
    a, b = rows[0], rows[-1]
    steps, secs = float(b["step"]) - float(a["step"]), float(b["elapsed_s"]) - float(a["elapsed_s"])
    summary["train"] = {"steps": int(b["step"]), "iterations_per_s": round(steps / max(secs, 1e-9), 3)}
for name in ("bench_cuda.json", "self.json"):
    if (out / name).is_file() and (out / name).stat().st_size:
        summary[name] = json.loads((out / name).read_text())
if (out / "memory.csv").is_file():
    mem = [int(r[1].split()[0]) for r in csv.reader(open(out / "memory.csv")) if r and r[1].strip()[:1].isdigit()]
    summary["gpu_memory_max_mib"] = max(mem) if mem else None
(out / "summary.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary)[:2000])
EOF
rm -rf "$OUT/data" "$OUT/work" "$OUT/run/checkpoints"  # regenerable; keeps what comes back small
echo "done: $OUT" >> "$LOG"
