#!/usr/bin/env bash
# openssh-server for the manual-platform test over real ssh servers in network namespaces
# (tests/e2e/manual_ssh_test.ts). Only the binaries are needed: the test starts its own sshd per
# namespace with a throwaway config; the system service is not enabled or started.
exec bash "$(dirname "$0")/apt_install.sh" openssh-server /usr/sbin/sshd \
  openssh-server openssh-client iproute2
