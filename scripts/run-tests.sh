#!/bin/sh
# Run the whole suite in build dir $1 and end with one line "N passed, N failed".
set -u
build=${1:-build-check}
start=$(date +%s)
meson test -C "$build" --num-processes 2 --print-errorlogs --timeout-multiplier 3 >"$build/test-output.txt" 2>&1
rc=$?
echo "the suite took $(($(date +%s) - start)) s" >>"$build/test-output.txt"
# Show each test's one-line verdict, then the failures' logs.
grep -E '^ *[0-9]+/[0-9]+ |^the suite took' "$build/test-output.txt" || cat "$build/test-output.txt"
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
try:
    with open(sys.argv[1]) as f:
        for line in f:
            r = json.loads(line)
            if r.get("result") in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif r.get("result") == "SKIP":
                skipped += 1
            else:
                failed += 1
                print("--- %s (%s)" % (r.get("name"), r.get("result")))
                out = (r.get("stdout") or "") + (r.get("stderr") or "")
                print("\n".join(out.splitlines()[-40:]))
except FileNotFoundError:
    failed = 1
line = "%d passed, %d failed" % (passed, failed)
if skipped:
    line += ", %d skipped" % skipped
print(line)
sys.exit(1 if failed else 0)
PY
py=$?
[ $rc -eq 0 ] && [ $py -eq 0 ]
