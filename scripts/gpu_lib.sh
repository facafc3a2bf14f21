# Shared by the prepared GPU runs (scripts/gpu_issue14.sh, scripts/gpu_check.sh); source it after
# setting OUT (the output folder) from the repository root. It creates $OUT and $LOG (log.txt),
# finds the assets and media ($FACEFLOW_ASSETS / $FACEFLOW_MEDIA, else ./shared or ../shared),
# sets PY (the locked venv's python, else python), logs torch's CUDA state and defines
#     stage NAME SECONDS COMMAND...   run COMMAND with a time limit, log it and its exit status
mkdir -p "$OUT"
LOG="$OUT/log.txt"
for root in shared ../shared; do
  if [ -z "${FACEFLOW_ASSETS:-}" ] && [ -d "$root/assets" ]; then export FACEFLOW_ASSETS="$root/assets"; fi
  if [ -z "${FACEFLOW_MEDIA:-}" ] && [ -d "$root/media" ]; then export FACEFLOW_MEDIA="$root/media"; fi
done
PY=python
if [ -x "$(scripts/env.sh 2>/dev/null)/bin/python" ]; then PY="$(scripts/env.sh)/bin/python"; fi

stage() {
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS
  echo "== $name: $*" >> "$LOG"
  timeout "$secs" "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" >> "$LOG"
  return $rc
}

"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" >> "$LOG" 2>&1
