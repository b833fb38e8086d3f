#!/bin/sh
# Install the Debian packages osmosis needs to build, test and run its demo, if any is missing.
# Keep this list in step with README.md ("Dependencies").
set -eu

PKGS="meson ninja-build pkg-config gcc libc6-dev libjson-c-dev libelf-dev libdw-dev
libcmocka-dev gdb elfutils lldb clang libclang-rt-14-dev clang-format python3 procps util-linux"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "osmosis: missing packages:$missing" >&2
	echo "osmosis: run as root, or: sudo apt-get install$missing" >&2
	exit 1
fi
echo "osmosis: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
