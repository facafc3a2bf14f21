#!/usr/bin/env bash
# Make sure a Chromium is on PATH for the app's headless-browser test (tests/test_gradio_app.py).
# Installs Debian's `chromium` with apt-get when it is missing and apt-get is usable (root);
# otherwise says so in one line and carries on (the test then skips, naming the reason).
set -uo pipefail
for exe in chromium chromium-browser google-chrome; do
    if command -v "$exe" >/dev/null 2>&1; then
        echo "chromium.sh: using $(command -v "$exe")"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: no chromium on PATH and no apt-get: the headless-browser test will be skipped"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium.sh: no chromium on PATH and not root (apt-get needs root): the headless-browser test will be skipped"
    exit 0
fi
echo "chromium.sh: installing Debian's chromium (apt-get; about a minute)"
log="$(mktemp)"
if DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 &&
   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >>"$log" 2>&1; then
    echo "chromium.sh: installed $(command -v chromium)"
else
    tail -20 "$log"
    echo "chromium.sh: apt-get could not install chromium: the headless-browser test will be skipped"
fi
rm -f "$log"
exit 0
