#!/usr/bin/env bash
# Relay benchmark (issue 9): N players on the owner vs the same N on a relaying origin
# (CPU-seconds per delivered Gbit of the server under test, ratio relay / local), and
# cold / warm relay time to first picture. Builds release and runs; extra arguments go to
# the binary, e.g. bench/relay.sh --players 500 --repeat 1 --proto flv --ttfp-samples 50.
# Numbers only; nothing passes or fails on speed.
exec "$(dirname "$0")/run.sh" relay ffmpeg "$@"
