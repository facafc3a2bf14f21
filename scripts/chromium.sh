#!/usr/bin/env bash
# Make sure a Chromium is on PATH for the app's headless-browser test (tests/test_gradio_app.py).
# Installs Debian's `chromium` with apt-get when none is found and apt-get is usable (root).
# Exit status 0: a browser is on PATH (found or installed); 1: none, with one line saying why
# (no apt-get, not root, or apt-get failed); .ci/run then lets the browser test skip.
set -uo pipefail
found() {
    local exe
    for exe in chromium chromium-browser google-chrome; do
        if command -v "$exe" >/dev/null 2>&1; then echo "chromium.sh: using $(command -v "$exe")"; return 0; fi
    done
    return 1
}
found && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: no chromium on PATH and no apt-get to install it: skipping the install"
    exit 1
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium.sh: no chromium on PATH and not root (apt-get needs root): skipping the install"
    exit 1
fi
echo "chromium.sh: installing Debian's chromium (apt-get; about a minute)"
log="$(mktemp)"
if DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 &&
   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; then
    rm -f "$log"
    found && exit 0
fi
tail -20 "$log"
rm -f "$log"
echo "chromium.sh: apt-get could not install chromium"
exit 1
