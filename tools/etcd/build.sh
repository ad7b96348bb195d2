#!/usr/bin/env bash
# The etcd server the lab's kube-apiserver uses, at the release go.mod pins, into
# /var/cache/overlayd-bins/etcd/<release>/etcd (see tools/gobuild/build.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
release=$(awk '$1=="go.etcd.io/etcd/server/v3" {print $2; exit}' "$here/go.mod")
ld="-s -w"
exec "$here/../gobuild/build.sh" "$here" "$release" "$ld" etcd=go.etcd.io/etcd/server/v3
