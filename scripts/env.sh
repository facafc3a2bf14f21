#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
#
# The venv lives OUTSIDE the clone, keyed by a hash of requirements.txt and the Python version,
# so every clone with the same requirements shares it and set-up is a no-op when nothing
# changed. Override the location with FACEFLOW_VENV_ROOT (default ~/.cache/faceflow/venvs).
# A venv is only marked ready after a complete install, so an interrupted install is redone.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
command -v "$py" >/dev/null || { echo "env.sh: $py not found; install Python >= 3.10" >&2; exit 1; }
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
key="$( (cat "$here/requirements.txt"; echo "$pyver") | sha256sum | cut -c1-16)"
root="${FACEFLOW_VENV_ROOT:-$HOME/.cache/faceflow/venvs}"
venv="$root/py$pyver-$key"
if [ ! -f "$venv/.ready" ]; then
    echo "env.sh: creating $venv (first run downloads PyTorch and friends; several minutes)" >&2
    rm -rf "$venv"
    mkdir -p "$root"
    "$py" -m venv "$venv"
    log="$root/install-py$pyver-$key.log"
    { "$venv/bin/python" -m pip install --upgrade pip &&
      "$venv/bin/python" -m pip install -r "$here/requirements.txt"; } >"$log" 2>&1 ||
        { grep -v "is ignored: it is neither" "$log" | tail -40 >&2; echo "env.sh: install failed (full log: $log)" >&2; exit 1; }
    # the torch/torchvision pair must import together (see README: the CPU wheel trap)
    "$venv/bin/python" -c "import torch, torchvision, cv2, mediapipe; print('env.sh: torch', torch.__version__, 'torchvision', torchvision.__version__)" >&2
    touch "$venv/.ready"
fi
echo "$venv"
