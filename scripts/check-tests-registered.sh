#!/bin/sh
# Every test function of tests/integration/ is listed in tests/meson.build: a test left out of
# the list would never run in `make check`. Usage: check-tests-registered.sh SRCDIR
set -eu
missing=0
for f in "$1"/tests/integration/test_*.py; do
	for n in $(sed -n 's/^def \(test_[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
		if ! grep -q "'$n'" "$1/tests/meson.build"; then
			echo "$(basename "$f"): $n is not listed in tests/meson.build"
			missing=1
		fi
	done
done
[ "$missing" = 0 ] && echo "every integration test is listed in tests/meson.build"
