#!/usr/bin/env bash
# Installs python3 with its venv module (Debian's python3-venv) for the Python job tests, unless
# `python3 -m venv` already works. Tasks find python3 on the task PATH (/usr/bin/python3 here).
set -euo pipefail
cd "$(dirname "$0")/.."
if /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "python3-venv already installed (/usr/bin/python3)"
  exit 0
fi
# apt_install.sh skips when its binary exists; python3 may exist without venv, so name none.
exec bash scripts/apt_install.sh python3-venv /nonexistent/python3-venv python3 python3-venv
