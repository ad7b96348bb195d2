#!/bin/sh
# install-reference-plugins SRC_DIR BIN_DIR
#
# The image's copies of the reference CNI plugins our `overlay` plugin delegates to (bridge,
# host-local) and chains with (portmap, loopback), installed into the node's BIN_DIR only where
# the node has no plugin of that name: a node's own plugins are never replaced. kind's node
# image, for one, ships host-local, loopback, portmap and ptp but no bridge.
# Each copy is written under a temporary name in BIN_DIR and renamed into place, so kubelet
# never runs a half-written binary. Runs in the DaemonSet's init container (POSIX sh).
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: install-reference-plugins SRC_DIR BIN_DIR" >&2
    exit 2
fi
src=$1
dst=$2
if [ ! -d "$src" ]; then
    echo "install-reference-plugins: SRC_DIR $src is not a directory; it should hold the image's reference plugins (image/assemble.sh puts them in /opt/overlayd/cni-plugins)" >&2
    exit 1
fi
if [ ! -d "$dst" ]; then
    echo "install-reference-plugins: BIN_DIR $dst is not a directory; mount the node's /opt/cni/bin there" >&2
    exit 1
fi

tmp=""
trap 'if [ -n "$tmp" ]; then rm -f "$tmp"; fi' EXIT INT TERM

for plugin in "$src"/*; do
    [ -f "$plugin" ] || continue
    name=${plugin##*/}
    if [ -e "$dst/$name" ]; then
        echo "kept the node's own $dst/$name"
        continue
    fi
    tmp="$dst/.$name.overlayd-tmp.$$"
    cp "$plugin" "$tmp"
    chmod 0755 "$tmp"
    mv -f "$tmp" "$dst/$name"
    tmp=""
    echo "installed $dst/$name"
done
