#!/bin/sh
# make demo: start the bundled demo workload, snapshot it with osmosis while it runs, and show
# what the snapshot holds: every thread, its state and its backtrace (read from the core by gdb).
set -eu
build=${1:-build}
osmosis="$build/osmosis"
workload="$build/demo/osmosis-demo-workload"
out="$build/demo-snapshot-$(date -u +%Y%m%d-%H%M%S)"

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
[ -t 1 ] || say() { printf '\n%s\n' "$*"; }

fifo=$(mktemp -u)
mkfifo "$fifo"
"$workload" >"$fifo" &
wpid=$!
trap 'kill $wpid 2>/dev/null || true; rm -f "$fifo"' EXIT
read -r ready pid <"$fifo"
[ "$ready" = ready ] || { echo "demo workload did not start" >&2; exit 1; }

say "1. A small service is running (pid $pid): threads waiting on a lock, in I/O, asleep."
ps -L -o tid=,comm=,stat=,wchan:24= -p "$pid" | sed 's/^/   /'

say "2. osmosis snapshots it while it runs:   $osmosis snap -o $out $pid"
"$osmosis" snap -o "$out" "$pid" | sed 's/^/   /'
state=$(ps -o stat= -p "$pid" | tr -d ' ')
echo "   The service kept running (state $state); its threads were frozen only for the pause above."

say "3. What the snapshot holds: $(ls "$out" | tr '\n' ' ')"
echo "   manifest.json (excerpt):"
grep -E '"(method|pause_us|comm|exe)"' "$out/manifest.json" | sed 's/^ */     /'

say "4. Every thread and its backtrace, read from core.$pid by gdb (as gcore's core would be):"
names=$(awk -F'"' '/"tid"/ { gsub(/[^0-9]/, "", $3); tid = $3 }
	/"name"/ { printf "%s=%s;", tid, $4 }
	/"state"/ && length($4) == 1 { printf "%s@%s;", tid, $4 }' "$out/manifest.json")
gdb -nx -batch -ex 'set pagination off' -ex 'thread apply all bt' "$workload" "$out/core.$pid" 2>/dev/null |
	awk -v names="$names" '
	BEGIN { n = split(names, kv, ";"); for (i = 1; i <= n; i++) {
		if (split(kv[i], a, "=") == 2) name[a[1]] = a[2];
		else if (split(kv[i], b, "@") == 2) st[b[1]] = b[2]; } }
	/^Thread [0-9]+ /{ match($0, /LWP [0-9]+/); lwp = substr($0, RSTART + 4, RLENGTH - 4);
		printf "   thread %s \"%s\" (state %s)\n", lwp, name[lwp], st[lwp]; seen = 1; next }
	     seen && /^#[0-9]+ /{ line = $0; sub(/ \(.*\) at /, " at ", line); sub(/ \(\) at /, " at ", line);
	                  sub(/0x[0-9a-f]+ in /, "", line); print "      " line }'

say "Done. The snapshot stays in $out for you to explore, e.g.:"
echo "   gdb $workload $out/core.$pid"
echo "   eu-stack --core $out/core.$pid -e $workload"
