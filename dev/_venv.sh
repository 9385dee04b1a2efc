# Sourced by dev/test and dev/demo: make .venv and install kmmio into it.
# Installing compiles kmmio's C part (cffi), so a C compiler and Python's headers must be
# there: from Debian's archive when missing, as root; extra Debian packages in $DEV_APT.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
need=(${DEV_APT:-})
command -v cc >/dev/null || need+=(gcc libc6-dev)
"$PY" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "dev: please install: ${need[*]}" >&2
        exit 2
    fi
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    "$PY" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT$1"
