#!/bin/sh
# mk/apt-install.sh [COMMAND:]PACKAGE...
#
# Installs with apt-get (as root, or through sudo) each Debian PACKAGE whose COMMAND is not
# on PATH; COMMAND defaults to PACKAGE. When every command is there it runs nothing, so a
# machine that already has them needs neither apt nor root. The one copy of the install
# step for the Makefile and mk/*.mk: `$(APT_INSTALL) protoc:protobuf-compiler valgrind`.
set -eu

missing=""
for spec in "$@"; do
  cmd=${spec%%:*}
  pkg=${spec#*:}
  command -v "$cmd" >/dev/null 2>&1 || missing="$missing $pkg"
done
[ -n "$missing" ] || exit 0

echo "installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
# env, not a plain assignment: sudo drops the caller's environment.
# shellcheck disable=SC2086 # one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
