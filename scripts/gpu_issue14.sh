#!/usr/bin/env bash
# Issue 14's prepared GPU run, for a session that is lent a `device` machine: run it at once,
# from the repository root, with a limit that leaves time to rerun (about 9 minutes of work):
#
#     run(command="bash scripts/gpu_issue14.sh", timeout_s=590)   # stage budgets sum to 560 s
#
# Every stage has its own time budget and writes into $OUT (default: outputs/gpu_issue14), so
# whatever finished comes back even if a later stage runs out of time:
#   1. bench_cuda.json   `faceflow bench flow --device cuda --json` (the README's Speed section
#                        has only CPU rows; the paper's reference is 17 ms per pair on a V100)
#   2. data              annotate the train and test clips (first 60 frames each), synthetic
#                        train / test pairs (16 threads)
#   3. dffnet_gpu.pt     DFFNet fine-tuned on CUDA from the shipped run (runs/dffnet, fp32) with
#                        the shipped recipe, for a fixed budget of minutes (--max-minutes)
#   4. flow_benchmark    Tables 1-2 and the photometric check of dffnet_gpu.pt vs DIS
#   run_packed           the fine-tuning run, packed (resume or continue it on the CPU machine)
#   log.txt              every command and its exit status, with timings
#
# Assets: $FACEFLOW_ASSETS / $FACEFLOW_MEDIA, else ./shared or ../shared (as everywhere else).
# SMOKE=1 shrinks every stage to seconds on a CPU (a dry run of this script, not a measurement).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-outputs/gpu_issue14}
source scripts/gpu_lib.sh  # $LOG, assets and media, $PY, stage()
DEVICE=${DEVICE:-cuda}
if [ "${SMOKE:-0}" = 1 ]; then
  FRAMES=8; SYNTH=8; TEST=4; MINUTES=0.2; PAIRS=4; DEVICE=${DEVICE_SMOKE:-cpu}; TIERS="--tiers A"
else
  FRAMES=60; SYNTH=3000; TEST=300; MINUTES=2; PAIRS=300; TIERS=""
fi
FF="$PY -m faceflow"

stage bench 60 sh -c "$FF bench flow --device $DEVICE --json > $OUT/bench_cuda.json"
DATA="$OUT/data"
stage annotate 120 $FF data real --out "$DATA/annotated" --splits train test --max-frames $FRAMES --previews 0 \
  --allow-failures $TIERS
stage synth_train 60 $FF data synth --annotated "$DATA/annotated" --split train --pairs $SYNTH --seed 0 \
  --out "$DATA/synth_train" --threads 16 --previews 0
stage synth_test 30 $FF data synth --annotated "$DATA/annotated" --split test --pairs $TEST --seed 2 \
  --out "$DATA/synth_test" --threads 16 --previews 0
TRAIN=$(ls -d "$DATA"/annotated/*/ 2>/dev/null | grep -v -e EDTalk_uncrop_Obama -e LivePortrait_d10 \
  -e MimicTalk_Trump_10s | tr '\n' ' ')
stage train $(( ${MINUTES%.*} * 60 + 60 )) $FF train dffnet --preset tiny --init dis --decompose \
  --init-weights runs/dffnet/checkpoints/last.pt --device "$DEVICE" --data "$DATA/synth_train" $TRAIN \
  --iterations 100000 --max-minutes $MINUTES --lr 2e-4 --warmup-steps 20 --batch-size 32 --num-workers 8 \
  --inplane 0.2 --self-weight 4.0 --smooth-weight 0.03 --photo-weight 2.0 --pseudo-weight 0 \
  --val-data "$DATA/synth_test" --val-every 500 \
  --out "$OUT/run"
stage export 20 $FF train export "$OUT/run" --which last --out "$OUT/dffnet_gpu.pt" --half
stage evaluate 90 $PY -m evaluation.flow_benchmark --synthetic "$DATA/synth_test" --real-root "$DATA/annotated" \
  --methods dffnet dis zero --meshreg faceflow/weights/meshreg.pt --dffnet "$OUT/dffnet_gpu.pt" \
  --max-pairs $PAIRS --device "$DEVICE" --out "$OUT/flow_benchmark"
stage pack 20 $FF train pack "$OUT/run" --out "$OUT/run_packed" --no-optimizer  # 10 MB, resumable
rm -rf "$DATA" "$OUT/run/checkpoints"  # regenerable / packed; keeps what comes back small
echo "done: $OUT" >> "$LOG"
