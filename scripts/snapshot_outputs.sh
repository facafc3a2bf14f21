#!/usr/bin/env bash
# Record the outputs of the main commands on fixed inputs into OUT_DIR, so that a refactoring can be
# checked for unchanged behaviour: scripts/compare_outputs.py BEFORE_DIR AFTER_DIR.
#   scripts/snapshot_outputs.sh OUT_DIR [SOURCE_TREE]
# SOURCE_TREE (default: this clone) is put first on PYTHONPATH, so an older checkout
# (git worktree add /tmp/before COMMIT) runs in the same venv. Takes about 5 minutes on 2 cores.
set -euo pipefail
out="$(realpath -m "$1")"
tree="$(realpath "${2:-$(dirname "$0")/..}")"
venv="$("$(dirname "$0")/env.sh")"
shared="$(realpath "$(dirname "$0")/../..")/shared"
media="${FACEFLOW_MEDIA:-$shared/media}"
export FACEFLOW_ASSETS="${FACEFLOW_ASSETS:-$shared/assets}"  # the older tree may sit elsewhere
clip="$media/videos/EDTalk_uncrop_Obama.mp4"
driver="$media/videos/LivePortrait_d10.mp4"
rm -rf "$out" && mkdir -p "$out"
cd "$tree"
export PYTHONPATH="$tree" OMP_NUM_THREADS=2 PYTHONHASHSEED=0
ff() { "$venv/bin/python" -m apps.cli "$@"; }
ff render --out "$out/render"
ff annotate "$clip" "$out/annotate" --max-frames 30
ff flow "$clip:0" "$clip:8" --out "$out/flow"
ff train meshreg --data "$out/annotate" --out "$out/train_meshreg" --iterations 20 --log-every 1 \
    --batch-size 2 --val-every 1000 --ckpt-every 1000 --device cpu
ff reenact preprocess "$clip" "$out/reenact_data" --max-frames 24 --flow dis2d --no-videos --device cpu
# --max-iters: the older spelling of --iterations, so that trees from before the rename run too
ff reenact train "$out/reenact_data" "$out/reenact_model" --flow dis2d --max-iters 6 --batch-size 1 \
    --seq-len 3 --val-every 1000 --device cpu --quiet
ff reenact run "$out/reenact_model" --mode self --out "$out/reenact_self.mp4" --max-frames 4 --device cpu
ff reenact run "$out/reenact_model" --mode head --source "$driver" --out "$out/reenact_head.mp4" \
    --max-frames 8 --device cpu
echo "snapshot written to $out"
