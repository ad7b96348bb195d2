#!/bin/bash
# Builds the front end's fuzzers (libFuzzer, ASan + UBSan) into fuzz/build/:
#   fuzz/build/fuzz_{wire,jscan,env}
# and, with --frontend LOGDIR, the front end itself with ASan + UBSan (dynamic: the sanitizers
# cannot link statically), writing any report into LOGDIR instead of the runtime's stderr:
#   fuzz/build/overlay-sanitized
# Needs clang and its runtime (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
native=$here/../cni_plugin/native
out=$here/build
cc=${FUZZ_CC:-clang}
command -v "$cc" >/dev/null || { echo "fuzz/build.sh: no $cc; install clang and libclang-rt-14-dev (make deb)" >&2; exit 2; }
mkdir -p "$out"
parts=("$native/wire.c" "$native/jscan.c" "$native/delegate.c")
# shellcheck disable=SC2054  # commas inside one clang flag, not between elements
san=(-g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all)
for h in "$here"/fuzz_*.c; do
    name=$(basename "$h" .c)
    "$cc" "${san[@]}" -fsanitize=fuzzer -Wall -Wextra -Werror -I "$native" -o "$out/$name.tmp" "$h" "${parts[@]}"
    mv "$out/$name.tmp" "$out/$name"
done
if [ "${1:-}" = --frontend ]; then
    logdir=${2:?--frontend LOGDIR}
    mkdir -p "$logdir"
    "$cc" "${san[@]}" -Wall -Wextra -Werror -I "$native" -DSANITIZER_LOG="\"$logdir\"" \
        -o "$out/overlay-sanitized.tmp" "$native"/*.c "$here/sanitizer_options.c"
    mv "$out/overlay-sanitized.tmp" "$out/overlay-sanitized"
fi
