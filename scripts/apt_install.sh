#!/usr/bin/env bash
# Installs Debian packages for a test dependency unless its binary is already there.
#   scripts/apt_install.sh NAME BINARY PACKAGE...
# Idempotent; uses sudo when not root. Package postinst scripts may not start services
# (policy-rc.d 101), so installing openssh-server in a CI container does not start sshd.
set -euo pipefail
name=$1 binary=$2
shift 2

if [ -x "$binary" ]; then
  echo "$name already installed ($binary)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "apt_install.sh: installing $name needs root (or sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# One update serves every install of the next hour (CI installs two packages back to back).
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 2>/dev/null | head -n 1)" ]; then
  $SUDO apt-get update -qq
fi
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
echo "$name installed ($binary)"
