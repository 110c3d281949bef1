#!/bin/sh
# Installs what the benchmarks need beyond the Python environment: wrk, a compiled HTTP load generator.
set -e
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
