#!/usr/bin/env bash
# Hook latency benchmark: the publish/play start latency an on_publish/on_play hook adds,
# against a local HTTP backend (p50/p99 with and without hooks). Builds release and runs;
# extra arguments go to the binary, e.g. bench/hooklat.sh --samples 1000 --backend-delay 5ms.
# Numbers only; no pass/fail on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p origin -p origin-bench --bin origin --bin hooklat
exec "$CARGO_TARGET_DIR/release/hooklat" "$@"
