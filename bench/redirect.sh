#!/usr/bin/env bash
# Redirect benchmark: 10 origins on loopback, each with 10 coworkers (9 origins + one
# black-holed listener); redirect decision p50/p99 (HTTP-FLV 302, RTMP 302) and time to
# first media via redirect. Builds release and runs; extra arguments go to the binary,
# e.g. bench/redirect.sh --requests 500 --cache 0s. Numbers only; no pass/fail on speed.
exec "$(dirname "$0")/run.sh" redirect ffmpeg "$@"
