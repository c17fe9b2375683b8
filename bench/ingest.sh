#!/usr/bin/env bash
# Ingest benchmark: our origin vs nginx-rtmp, N real-time publishers of a ~2 Mbit/s clip on N streams.
# Installs ffmpeg/nginx/libnginx-mod-rtmp if missing, builds release, runs, prints tables.
# Extra arguments go to the bench binary, e.g.:
#   bench/ingest.sh --streams 100,300 --servers ours,nginx --window 15
# (or INGEST_STREAMS=100,300 bench/ingest.sh). Numbers only; nothing passes or fails on speed.
exec "$(dirname "$0")/run.sh" ingest ffmpeg,nginx,libnginx-mod-rtmp "$@"
