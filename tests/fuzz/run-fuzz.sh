#!/bin/sh
# Build a libFuzzer harness with clang (ASan+UBSan) and run it for a bounded time over the seed
# corpus in the repository. Usage: run-fuzz.sh SRCDIR BUILDDIR HARNESS CORPUS SECONDS SOURCES...
# (a source "-lNAME" is passed to the linker)
set -eu
src=$1 build=$2 harness=$3 corpus=$4 secs=$5
shift 5
out="$build/fuzz-$harness"
files=""
for f in "$@"; do case $f in -l*) files="$files $f" ;; *) files="$files $src/$f" ;; esac; done
# shellcheck disable=SC2086
clang -g -O1 -std=gnu17 -D_GNU_SOURCE -DOSMOSIS_VERSION='"fuzz"' -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=all -I"$src/src" -I"$src/src/arch/x86_64" -I/usr/include/json-c \
	"$src/tests/fuzz/$harness.c" $files -o "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src/tests/fuzz/corpus/$corpus/"* "$work/" 2>/dev/null || true
export LSAN_OPTIONS="suppressions=$src/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
# The fuzzer's own status decides the test (a pipe into tail would hide a crash).
log="$build/fuzz-$harness.log"
status=0
"$out" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -error_exitcode=1 -timeout_exitcode=1 \
	-artifact_prefix="$build/fuzz-$harness-" "$work" >"$log" 2>&1 || status=$?
tail -25 "$log"
if [ "$status" -ne 0 ]; then
	echo "fuzz_$harness: the fuzzer failed (status $status); the input is saved beside $log" >&2
fi
exit "$status"
