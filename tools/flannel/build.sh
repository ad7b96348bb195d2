#!/usr/bin/env bash
# make flannel-bins: flanneld at the release go.mod pins, into
# $OVERLAYD_BIN_CACHE/flannel/<release>/flanneld (tools/gobuild/build.sh does the building and caching).
# flannel's CNI plugin (github.com/flannel-io/cni-plugin) is not built: the proxy answers 403 for it,
# and the lab's pods do not need it (overlayd's lab wires pods itself).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
release=$(awk '$1=="github.com/flannel-io/flannel" && $2 ~ /^v/ {print $2} $1=="require" && $2=="github.com/flannel-io/flannel" {print $3}' "$here/go.mod" | head -1)
ld="-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$release"
# The udp backend links a C proxy (cgo); without cgo flanneld does not compile.
export CGO_ENABLED=1
exec "$here/../gobuild/build.sh" "$here" "$release" "$ld" flanneld=github.com/flannel-io/flannel
