#!/usr/bin/env bash
# PostgreSQL server binaries for the shared-study tests (marked `postgres`), from the OS
# packages; a no-op when present. The tests start their own server on 127.0.0.1 with a
# temporary data directory (tests/tuner/conftest.py), so no service is enabled here.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-postgres: not root or no apt-get; the postgres tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq postgresql >/dev/null
# Debian's package starts a cluster service; the tests do not use it.
command -v pg_ctlcluster >/dev/null && pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
    pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
done
exit 0
