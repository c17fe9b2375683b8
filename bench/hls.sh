#!/usr/bin/env bash
# HLS delivery cost: N clients polling like hls.js vs N HTTP-FLV players, same origin
# build. Builds release, runs, prints a table. Extra arguments go to the bench binary,
# e.g. bench/hls.sh --clients 500,1000 --low-latency. Numbers only.
exec "$(dirname "$0")/run.sh" hls ffmpeg "$@"
