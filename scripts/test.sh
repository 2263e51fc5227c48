#!/usr/bin/env bash
# The one test command (README "Two commands", and what .ci/run runs): installs the system tools
# the ignored tests drive (qemu-guest-agent, tmux, iproute2) when missing, then runs every check:
# formatting, clippy with warnings as errors, the module rules, and all tests including the
# ignored ones. Without root it prints the exact install line and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-ga >/dev/null 2>&1 || [ -x /usr/sbin/qemu-ga ] || [ -x /usr/bin/qemu-ga ] || need+=(qemu-guest-agent)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  else
    echo "the tests need: ${need[*]}; install them, then run $0 again:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${need[*]}" >&2
    exit 1
  fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
python3 scripts/check-modules.py
cargo test --locked -- --include-ignored
