#!/bin/sh
# make demo: start the bundled demo workload (a service and its backend process, with healthy
# threads, a deadlock and a wait chain across the two processes), snapshot it with osmosis while
# it runs, and diagnose the snapshot.
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
read -r ready pid backend <"$fifo"
[ "$ready" = ready ] || { echo "demo workload did not start" >&2; exit 1; }

say "1. A small service is running: pid $pid and its backend process $backend."
ps -L -o pid=,tid=,comm=,stat=,wchan:22= -p "$pid,$backend" | sed 's/^/   /'

say "2. osmosis snapshots the service and its children at one instant, while they run:"
echo "   \$ osmosis snap --tree -o $out $pid"
"$osmosis" snap --tree -o "$out" "$pid" | sed 's/^/   /'
echo "   Both processes kept running: $(ps -o stat= -p "$pid" | tr -d ' ') and $(ps -o stat= -p "$backend" | tr -d ' ')."

say "3. osmosis analyzes the snapshot (reading only $out):"
echo "   \$ osmosis analyze $out"
echo
"$osmosis" analyze "$out"

say "Done. The snapshot stays in $out. Explore it with:"
echo "   osmosis show $out                  processes, threads, descriptors at that instant"
echo "   osmosis analyze --json $out        the diagnosis for programs"
echo "   gdb $workload $out/core.$pid"
