#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
#
# The venv holds exactly the locked set (requirements.lock, generated from pyproject.toml by
# `make lock`) and lives OUTSIDE the clone, keyed by a hash of the lock and the Python version,
# so every clone with the same lock shares it and set-up is a no-op when nothing changed.
# Override the location with FACEFLOW_VENV_ROOT (default ~/.cache/faceflow/venvs).
# The lock is installed with --no-deps (nothing outside it gets in), then `pip check` and a
# comparison of every installed version with the lock must pass before the venv is marked ready;
# an interrupted install is redone. The project itself is installed editable with --no-deps and
# re-installed when another clone uses the same venv or pyproject.toml changed (its entry points);
# that gives the `faceflow` command.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
command -v "$py" >/dev/null || { echo "env.sh: $py not found; install Python >= 3.10" >&2; exit 1; }
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
lock="$here/requirements.lock"
key="$( (cat "$lock"; echo "$pyver") | sha256sum | cut -c1-16)"
root="${FACEFLOW_VENV_ROOT:-$HOME/.cache/faceflow/venvs}"
venv="$root/py$pyver-$key"
log="$root/install-py$pyver-$key.log"
fail() { grep -v "is ignored: it is neither" "$log" | tail -40 >&2; echo "env.sh: $1 (full log: $log)" >&2; exit 1; }
if [ ! -f "$venv/.ready" ]; then
    echo "env.sh: creating $venv from requirements.lock (first run installs PyTorch and friends; several minutes)" >&2
    rm -rf "$venv"
    mkdir -p "$root"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --no-deps -r "$lock" >"$log" 2>&1 || fail "install failed"
    "$venv/bin/python" -m pip check >>"$log" 2>&1 || fail "pip check found broken requirements"
    "$venv/bin/python" "$here/scripts/check_env.py" "$lock" >>"$log" 2>&1 || fail "installed versions differ from the lock"
    # the torch/torchvision pair must import together (see README: the CPU wheel trap)
    "$venv/bin/python" -c "import torch, torchvision, cv2, mediapipe; print('env.sh: torch', torch.__version__, 'torchvision', torchvision.__version__, 'cv2', cv2.__version__)" >&2
    touch "$venv/.ready"
fi
project="$here $(sha256sum "$here/pyproject.toml" | cut -c1-16)"  # reinstall when either changes
if [ "$(cat "$venv/.project" 2>/dev/null)" != "$project" ]; then
    "$venv/bin/python" -m pip install --no-deps --no-build-isolation -e "$here" >>"$log" 2>&1 ||
        fail "installing the project (pip install --no-deps -e $here) failed"
    echo "$project" >"$venv/.project"
fi
echo "$venv"
