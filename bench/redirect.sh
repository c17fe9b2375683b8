#!/usr/bin/env bash
# Redirect benchmark: 10 origins on loopback, each with 10 coworkers (9 origins + one
# black-holed listener); redirect decision p50/p99 (HTTP-FLV 302, RTMP 302) and time to
# first media via redirect. Builds release and runs; extra arguments go to the binary,
# e.g. bench/redirect.sh --requests 500 --cache 0s. Numbers only; no pass/fail on speed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s ffmpeg >/dev/null 2>&1; then
    echo "installing ffmpeg (generates the test clip once)" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y ffmpeg
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p origin -p origin-bench
ulimit -n 65536 2>/dev/null || true
exec "$CARGO_TARGET_DIR/release/redirect" "$@"
