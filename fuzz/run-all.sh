#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 120) each, one after the other, and prints a
# summary line per target (runs, exec/s, coverage). Usage, from the repository root:
#   fuzz/run-all.sh [SECONDS] [extra cargo-fuzz flags, e.g. --sanitizer none]
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on stable through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
shift || true
export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/logs
targets=$(cargo fuzz list)
cargo fuzz build -a "$@"
status=0
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
    log="fuzz/logs/$t.log"
    if cargo fuzz run -a "$@" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "${dict[@]}" \
        >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (see $log and fuzz/artifacts/$t/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)
    printf '%-18s %s  runs=%s exec/s=%s %s\n' "$t" "$result" "${runs:-?}" "${eps:-?}" "$last"
done
exit $status
