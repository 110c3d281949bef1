#!/bin/sh
# PostgreSQL's server binaries for the tests (they start their own server in a temporary directory): installed with
# apt-get where missing, a quiet no-op where present. The package's own cluster is not created, so nothing is left
# running after the installation. POSTGRES_LIB_DIR: where the versioned binaries live (default /usr/lib/postgresql,
# Debian's layout).
set -eu

LIB_DIR="${POSTGRES_LIB_DIR:-/usr/lib/postgresql}"

has_binaries() {
    for dir in "$LIB_DIR"/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then return 0; fi
    done
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}

if has_binaries; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: PostgreSQL's server binaries (initdb, pg_ctl) are missing and apt-get is not available here;" \
        "install PostgreSQL 13 or later with the system's package manager, then run the tests again." >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"  # never wait for a password prompt nobody sees: fail with sudo's own message instead
else
    echo "error: PostgreSQL's server binaries (initdb, pg_ctl) are missing; installing them needs root (or sudo):" \
        "run \`apt-get install postgresql\` as root, then run the tests again." >&2
    exit 1
fi
echo "Installing PostgreSQL (the postgresql system package) for the tests ..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql-common first, told not to create and start a `main` cluster when the server package is installed.
$SUDO apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
$SUDO sed -i 's/^#* *create_main_cluster *=.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
if ! has_binaries; then
    echo "error: the postgresql package installed, but initdb and pg_ctl were not found under" \
        "$LIB_DIR/*/bin; install PostgreSQL 13 or later, then run the tests again." >&2
    exit 1
fi
