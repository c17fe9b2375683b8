#!/usr/bin/env bash
# Ownership query and new-subscriber latency (p50/p99) while one publisher is written to
# 2,000 players (write-through and the default merge). Builds release and runs; e.g.
#   bench/flushwait.sh --players 2000 --merge 0ms,default --probes 200
# Numbers only; nothing passes or fails on speed.
exec "$(dirname "$0")/run.sh" flushwait ffmpeg "$@"
