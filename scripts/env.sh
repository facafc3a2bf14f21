#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and print its path.
#
# The venv holds exactly the locked set (requirements.lock, generated from pyproject.toml by
# `make lock` for the Python version named in its header) and lives OUTSIDE the clone, keyed by a
# hash of the lock and the Python version, so every clone with the same lock shares it and set-up
# is a no-op when nothing changed. Override the location with FACEFLOW_VENV_ROOT (default
# ~/.cache/faceflow/venvs) and the interpreter with PYTHON (default: python<locked version>, else
# python3). The lock is installed with --no-deps (nothing outside it gets in), then `pip check` and
# a comparison of every installed version with the lock (scripts/check_env.py) must pass before
# the venv is marked ready; an interrupted install is redone. The project itself is installed
# editable with --no-deps (which gives the `faceflow` command), again whenever another clone uses
# the same venv or pyproject.toml changed, followed by `pip check` (a dependency added to
# pyproject.toml without `make lock` is reported there).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="$here/requirements.lock"
want="$(sed -n 's/.*--python-version \([0-9.]*\).*/\1/p' "$lock" | head -1)"
py="${PYTHON:-}"
if [ -z "$py" ]; then
    if command -v "python$want" >/dev/null 2>&1; then py="python$want"; else py="python3"; fi
fi
command -v "$py" >/dev/null || { echo "env.sh: $py not found; install Python $want" >&2; exit 1; }
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -n "$want" ] && [ "$pyver" != "$want" ]; then
    echo "env.sh: requirements.lock is for Python $want, but $py is Python $pyver; set PYTHON to a" \
         "Python $want interpreter (or, for another Python, pip install -e \".[test]\" from the loose list)" >&2
    exit 1
fi
key="$( (cat "$lock"; echo "$pyver") | sha256sum | cut -c1-16)"
root="${FACEFLOW_VENV_ROOT:-$HOME/.cache/faceflow/venvs}"
venv="$root/py$pyver-$key"
log="$root/install-py$pyver-$key.log"
fail() {
    { grep -v "is ignored: it is neither" "$log" 2>/dev/null || true; } | tail -40 >&2
    echo "env.sh: $1 (full log: $log)" >&2
    exit 1
}
mkdir -p "$root"
exec 9>"$venv.lock"
flock 9  # one set-up of this venv at a time: two commands started together would clobber each other
if [ ! -f "$venv/.ready" ]; then
    echo "env.sh: creating $venv from requirements.lock (first run installs PyTorch and friends; several minutes)" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --no-deps -r "$lock" >"$log" 2>&1 || fail "install failed"
    "$venv/bin/python" -m pip check >>"$log" 2>&1 || fail "pip check found broken requirements"
    "$venv/bin/python" "$here/scripts/check_env.py" "$lock" >>"$log" 2>&1 || fail "installed versions differ from the lock"
    # the torch/torchvision pair must import together (see README: the CPU wheel trap)
    "$venv/bin/python" -c "import torch, torchvision, cv2, mediapipe; print('env.sh: torch', torch.__version__, 'torchvision', torchvision.__version__, 'cv2', cv2.__version__)" \
        2>>"$log" >&2 || fail "torch, torchvision, cv2 or mediapipe does not import"
    touch "$venv/.ready"
fi
project="$here $(sha256sum "$here/pyproject.toml" | cut -c1-16)"  # reinstall when either changes
if [ "$(cat "$venv/.project" 2>/dev/null)" != "$project" ]; then
    "$venv/bin/python" -m pip install --no-deps --no-build-isolation -e "$here" >>"$log" 2>&1 ||
        fail "installing the project (pip install --no-deps -e $here) failed"
    "$venv/bin/python" -m pip check >>"$log" 2>&1 ||
        fail "pip check: the project needs something the lock lacks (run make lock after editing pyproject.toml)"
    echo "$project" >"$venv/.project"
fi
echo "$venv"
