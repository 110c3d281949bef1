#!/bin/sh
# Headless Chromium for the browser test of the Dagster UI (mlops_assets_tests/test_ui_browser.py): Debian's chromium
# and chromium-driver installed with apt-get where missing, a quiet no-op where present. Never fails `make test`: where
# no browser can be installed it says why, and the browser test skips with that reason. CHROMIUM: the browser to use
# (default /usr/bin/chromium, Debian's path).
set -u

BROWSER="${CHROMIUM:-/usr/bin/chromium}"

if [ -x "$BROWSER" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: $BROWSER is missing and apt-get is not available here; the browser test of the Dagster UI" \
        "will be skipped. Install Chromium with the system's package manager (or set CHROMIUM) to run it." >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"  # never wait for a password prompt nobody sees
else
    echo "warning: $BROWSER is missing and installing it needs root (or sudo); the browser test of the Dagster UI" \
        "will be skipped. Run \`apt-get install chromium chromium-driver\` as root to run it." >&2
    exit 0
fi
echo "Installing Chromium (the chromium and chromium-driver system packages) for the browser test ..."
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }; then
    echo "warning: installing chromium failed (see apt-get's message above); the browser test of the Dagster UI" \
        "will be skipped." >&2
fi
exit 0
