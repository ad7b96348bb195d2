#!/bin/bash
# Runs each of the front end's fuzzers (fuzz/fuzz_*.c, built by fuzz/build.sh) for SECONDS,
# one after the other, starting from the corpus in the repo (fuzz/corpus/<fuzzer>/). New inputs
# go to fuzz/build/work/<fuzzer>/; a crash, a sanitizer report or a hang is saved as
# fuzz/build/crashes/<fuzzer>-crash-* (or -timeout-*, -leak-*) and fails the run.
#
#   fuzz/run.sh SECONDS          (make fuzz: FUZZ_SECONDS per fuzzer, default 300)
#   fuzz/run.sh --keep SECONDS   also merge what added coverage into fuzz/corpus/ (to commit)
#
# Prints one line per fuzzer: executions, executions per second, corpus size, result.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
keep=0
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
seconds=${1:?usage: fuzz/run.sh [--keep] SECONDS}
build=$here/build
mkdir -p "$build/crashes"
failed=0
for exe in "$build"/fuzz_*; do
    [ -x "$exe" ] || continue
    name=$(basename "$exe")
    work=$build/work/$name
    log=$build/$name.log
    mkdir -p "$work"
    "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/crashes/$name-" "$work" "$here/corpus/$name" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    size=$(sed -n 's/.*#[0-9]*\s*DONE .*corp: \([0-9]*\).*/\1/p' "$log" | tail -1)
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "$name: FAILED (exit $rc) after ${runs:-?} runs; log $log" >&2
        grep -m1 -A12 -E "ERROR: |runtime error|SUMMARY|Test unit written" "$log" >&2
        grep -E "Test unit written|artifact" "$log" >&2
        continue
    fi
    echo "$name: ${runs:-?} runs in ${seconds}s, ${rate:-?} exec/s, corpus ${size:-?} inputs: ok"
    if [ "$keep" = 1 ]; then
        "$exe" -merge=1 "$here/corpus/$name" "$work" >>"$log" 2>&1 || { failed=1; echo "$name: merge failed; log $log" >&2; }
    fi
done
[ "$failed" = 0 ] || echo "fuzz: a fuzzer failed; fix the bug, then keep the input as fuzz/corpus/<fuzzer>/regression-<what> (docs/development.md)" >&2
exit $failed
