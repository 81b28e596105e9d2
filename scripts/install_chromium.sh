#!/usr/bin/env bash
# Chromium (Debian package) for the dashboard browser tests (tests/dashboard/).
exec bash "$(dirname "$0")/apt_install.sh" chromium /usr/bin/chromium chromium fonts-dejavu-core
