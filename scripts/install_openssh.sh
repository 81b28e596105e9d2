#!/usr/bin/env bash
# Installs openssh-server (Debian package) for the manual-platform test over real ssh servers
# in network namespaces (tests/e2e/manual_ssh_test.ts). Only the sshd binary is needed: the
# test starts its own sshd per namespace with a throwaway config and stops it; the system
# service is not enabled or started here. Idempotent: does nothing when /usr/sbin/sshd exists.
set -euo pipefail

if [ -x /usr/sbin/sshd ]; then
  echo "openssh-server already installed: $(/usr/sbin/sshd -V 2>&1 | head -n 1 || echo /usr/sbin/sshd)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_openssh.sh: must run as root (or with sudo available)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d 101: the package's postinst must not start the system sshd in CI containers.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client iproute2 >/dev/null
echo "openssh-server installed: $(/usr/sbin/sshd -V 2>&1 | head -n 1 || echo /usr/sbin/sshd)"
