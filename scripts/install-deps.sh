#!/bin/sh
# Install the Debian packages osmosis needs to build, test and run its demo, if any is missing.
# Keep this list in step with README.md ("Dependencies").
set -eu

PKGS="meson ninja-build pkg-config gcc libc6-dev libjson-c-dev libelf-dev libdw-dev
libcmocka-dev libzstd-dev libiberty-dev gdb elfutils lldb clang libclang-rt-14-dev clang-format g++
python3 python3.11-dbg procps util-linux psmisc strace zstd
postgresql redis-server redis-tools nginx apache2-utils openjdk-17-jdk-headless"
# Real services the tests start on private ports and directories: Debian starts its own
# instances when it installs them; they are stopped again (the tests never use them).
SERVICES="postgresql redis-server nginx"

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
for s in $SERVICES; do
	case "$missing" in *"$s"*) service "$s" stop >/dev/null 2>&1 || true ;; esac
done
