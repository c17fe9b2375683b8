#!/usr/bin/env bash
# What every bench script does: installs the Debian packages it needs if missing, builds
# release, raises the file-descriptor limit and runs the bench binary.
#   bench/run.sh BINARY PACKAGES [ARGS...]   (PACKAGES comma-separated, "" for none)
# Numbers only; nothing passes or fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$1"
IFS=, read -r -a wanted <<<"$2"
shift 2

missing=()
for p in "${wanted[@]}"; do
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
exec "$CARGO_TARGET_DIR/release/$bin" "$@"
