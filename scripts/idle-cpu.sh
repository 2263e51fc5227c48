#!/usr/bin/env bash
# Idle CPU of the dashboard with a finished rollout on screen: runs `pve-rollout demo` in a
# detached tmux pane (120x40), waits for FINISHED in the title row, then reads the process's
# utime + stime from /proc/<pid>/stat over a 10 s window. Prints `idle_cpu_percent=` (of one core).
#
# Usage: scripts/idle-cpu.sh [path/to/pve-rollout]   (default: the release build)
# Needs: tmux, getconf, awk.
set -euo pipefail

bin=${1:-${CARGO_TARGET_DIR:-target}/release/pve-rollout}
window=${IDLE_WINDOW_S:-10}
[ -x "$bin" ] || { echo "no executable at $bin: run cargo build --release first" >&2; exit 2; }
command -v tmux >/dev/null || { echo "tmux is required" >&2; exit 2; }

work=$(mktemp -d)
session="idle-cpu-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

tmux new-session -d -s "$session" -x 120 -y 40 \
    "exec '$bin' demo --vms 5 --speed 10 --output '$work/out'"

finished=""
for _ in $(seq 1 600); do
    if tmux capture-pane -p -t "$session" | head -n 1 | grep -q FINISHED; then
        finished=yes
        break
    fi
    sleep 0.2
done
[ -n "$finished" ] || { echo "the demo did not finish within 120 s" >&2; tmux capture-pane -p -t "$session" >&2; exit 1; }

pid=$(tmux display-message -p -t "$session" '#{pane_pid}')
sleep 1 # let the last frames after FINISHED go out

# Fields 14 and 15 of /proc/PID/stat (after the ")" that ends the command name).
ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$window"
after=$(ticks)
awk -v d=$((after - before)) -v hz="$hz" -v w="$window" \
    'BEGIN { printf "idle_cpu_percent=%.2f\n", d / hz / w * 100 }'
echo "idle_cpu_ticks=$((after - before)) (CLK_TCK=$hz, ${window} s)"
