#!/usr/bin/env bash
# Ingest benchmark: our origin vs nginx-rtmp, N real-time publishers of a ~2 Mbit/s clip on N streams.
# Installs ffmpeg/nginx/libnginx-mod-rtmp if missing, builds release, runs, prints tables.
# Extra arguments go to the bench binary, e.g.:
#   bench/ingest.sh --streams 100,300 --servers ours,nginx --window 15
# (or INGEST_STREAMS=100,300 bench/ingest.sh). Numbers only; nothing passes or fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for p in ffmpeg nginx libnginx-mod-rtmp; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi
command -v taskset >/dev/null || echo "warning: taskset not found (util-linux); run with --no-pin" >&2

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p origin -p origin-bench
# Plenty of file descriptors for thousands of players (bench) and connections (servers).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec "$CARGO_TARGET_DIR/release/ingest" "$@"
