#!/usr/bin/env bash
# Scale-out benchmark (issue 19): N origins at their own loopback addresses, directory vs
# broadcast discovery in the same run; prints decision time, first media, requests per cold
# play and per publish, ownership queries per origin, TCP connections and RSS per origin.
# Builds release and runs; extra arguments go to the binary, e.g.
# bench/scale.sh --origins 50,200 --plays 30. Numbers only; nothing passes or fails on speed.
exec "$(dirname "$0")/run.sh" scale "" "$@"
