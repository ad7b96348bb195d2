#!/bin/bash
# make test's part for the native front end (issue 13, item 10):
#
#   fuzz/check.sh COMMAND...      e.g. fuzz/check.sh .venv/bin/python -m pytest
#
#   1. builds the fuzzers and an ASan + UBSan build of the front end (fuzz/build.sh, ~10 s);
#   2. runs COMMAND with OVERLAYD_TEST_FRONTEND pointing at that build: the CNI tests
#      (tests/cni/conftest.py) then drive it instead of the normal build;
#   3. runs the fuzz pass: FUZZ_PASS_SECONDS in all (default 60; 0 skips it), shared evenly by
#      the fuzzers, each starting from its corpus in fuzz/corpus/;
#   4. fails if COMMAND failed, a fuzzer found something, or the front end wrote any sanitizer
#      report (they go to a directory compiled into the build, not to the runtime's stderr).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pass=${FUZZ_PASS_SECONDS:-60}
[ $# -gt 0 ] || { echo "usage: fuzz/check.sh COMMAND..." >&2; exit 2; }
logs=$(mktemp -d /tmp/overlay-sanitizer-XXXXXX)
fuzz_pid=
cleanup() {
    if [ -n "$fuzz_pid" ]; then kill -- "-$fuzz_pid" 2>/dev/null; wait "$fuzz_pid" 2>/dev/null; fi
    rm -rf "$logs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$here/build.sh" --frontend "$logs" || exit 1
OVERLAYD_TEST_FRONTEND=$here/build/overlay-sanitized "$@"
rc=$?

fuzz_rc=0
if [ "$rc" = 0 ] && [ "$pass" -gt 0 ]; then
    nfuzzers=$(find "$here" -maxdepth 1 -name "fuzz_*.c" | wc -l)
    # its own process group (setsid): an interrupted check stops the fuzzer it is running too
    setsid bash "$here/run.sh" $(( (pass + nfuzzers - 1) / nfuzzers )) &
    fuzz_pid=$!
    wait "$fuzz_pid"
    fuzz_rc=$?
    fuzz_pid=
fi

reports=$(ls -A "$logs")
if [ -n "$reports" ]; then
    echo "the sanitized front end reported (ASan/UBSan):" >&2
    for f in "$logs"/*; do echo "--- $f" >&2; head -40 "$f" >&2; done
fi
[ "$rc" = 0 ] && [ "$fuzz_rc" = 0 ] && [ -z "$reports" ]
