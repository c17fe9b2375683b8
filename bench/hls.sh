#!/usr/bin/env bash
# HLS delivery cost: N clients polling like hls.js vs N HTTP-FLV players, same origin
# build. Builds release, runs, prints a table. Extra arguments go to the bench binary,
# e.g. bench/hls.sh --clients 500,1000 --low-latency. Numbers only.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || {
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y ffmpeg
}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p origin -p origin-bench
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$CARGO_TARGET_DIR/release/hls" "$@"
