#!/usr/bin/env bash
# CPU of the dashboard process, read from /proc/<pid>/stat (utime + stime) over a 10 s window.
# Runs `pve-rollout demo` in a detached tmux pane (120x40). Two cases:
#   (default)     a finished rollout on screen: waits for FINISHED in the title row.
#   --animating   VMs on the move: 20 VMs of the `realistic` scenario at 5x speed, measured from
#                 10 s after the start, and checked to be still running at the window's end.
#                 The demo process also runs the simulator and the engine, so this is an upper
#                 bound for the dashboard's own share.
# Prints `idle_cpu_percent=` or `animating_cpu_percent=` (of one core).
#
# Usage: scripts/idle-cpu.sh [--animating] [path/to/pve-rollout]   (default: the release build)
# Needs: tmux, getconf, awk.
set -euo pipefail

animating=""
if [ "${1:-}" = "--animating" ]; then
    animating=yes
    shift
fi
bin=${1:-${CARGO_TARGET_DIR:-target}/release/pve-rollout}
window=${IDLE_WINDOW_S:-10}
[ -x "$bin" ] || { echo "no executable at $bin: run cargo build --release first" >&2; exit 2; }
command -v tmux >/dev/null || { echo "tmux is required" >&2; exit 2; }

work=$(mktemp -d)
session="idle-cpu-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    # The demo writes each VM's files as it settles: let it exit before its directory goes.
    for _ in $(seq 1 50); do
        [ -n "${pid:-}" ] && [ -e "/proc/$pid" ] || break
        sleep 0.1
    done
    rm -rf "$work"
}
trap cleanup EXIT

title() { tmux capture-pane -p -t "$session" | head -n 1; }

if [ -n "$animating" ]; then
    tmux new-session -d -s "$session" -x 120 -y 40 \
        "exec '$bin' demo --vms 20 --scenario realistic --speed 5 --output '$work/out'"
    sleep 10 # clones under way, the first VMs booting
else
    tmux new-session -d -s "$session" -x 120 -y 40 \
        "exec '$bin' demo --vms 5 --speed 10 --output '$work/out'"
    finished=""
    for _ in $(seq 1 600); do
        if title | grep -q FINISHED; then
            finished=yes
            break
        fi
        sleep 0.2
    done
    [ -n "$finished" ] || { echo "the demo did not finish within 120 s" >&2; tmux capture-pane -p -t "$session" >&2; exit 1; }
    sleep 1 # let the last frames after FINISHED go out
fi

pid=$(tmux display-message -p -t "$session" '#{pane_pid}')

# Fields 14 and 15 of /proc/PID/stat (after the ")" that ends the command name).
ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$window"
after=$(ticks)
if [ -n "$animating" ] && title | grep -q FINISHED; then
    echo "the rollout finished inside the window: not an animating measurement" >&2
    exit 1
fi
key=$([ -n "$animating" ] && echo animating_cpu_percent || echo idle_cpu_percent)
awk -v d=$((after - before)) -v hz="$hz" -v w="$window" -v key="$key" \
    'BEGIN { printf "%s=%.2f\n", key, d / hz / w * 100 }'
echo "cpu_ticks=$((after - before)) (CLK_TCK=$hz, ${window} s)"
