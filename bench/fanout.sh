#!/usr/bin/env bash
# Fan-out benchmark: our origin vs nginx-rtmp, one ~2 Mbit/s stream to N players
# (RTMP players; `--proto flv` plays HTTP-FLV from our origin only).
# Installs ffmpeg/nginx/libnginx-mod-rtmp if missing, builds release, runs, prints tables.
# Extra arguments go to the bench binary, e.g.:
#   bench/fanout.sh --players 100,500 --servers ours:0ms,ours:200ms,nginx --burst 0
# (or FANOUT_PLAYERS=100,500 bench/fanout.sh). Numbers only; nothing passes or fails on speed.
exec "$(dirname "$0")/run.sh" fanout ffmpeg,nginx,libnginx-mod-rtmp "$@"
