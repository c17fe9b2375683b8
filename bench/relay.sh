#!/usr/bin/env bash
# Relay benchmark (issue 9): N players on the owner vs the same N on a relaying origin
# (CPU-seconds per delivered Gbit of the server under test, ratio relay / local), and
# cold / warm relay time to first picture. Builds release and runs; extra arguments go to
# the binary, e.g. bench/relay.sh --players 500 --repeat 1 --proto flv --ttfp-samples 50.
# Numbers only; nothing passes or fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s ffmpeg >/dev/null 2>&1; then
    echo "installing ffmpeg (generates the test clip once)" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y ffmpeg
fi
command -v taskset >/dev/null || echo "warning: taskset not found (util-linux); run with --no-pin" >&2

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p origin -p origin-bench
# Plenty of file descriptors for thousands of players (bench) and connections (servers).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$CARGO_TARGET_DIR/release/relay" "$@"
