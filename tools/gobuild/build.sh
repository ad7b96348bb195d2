#!/usr/bin/env bash
# Builds Go programs pinned by a small module in tools/<name>/ into a cache outside the
# work tree, keyed by the pinned release:  $OVERLAYD_BIN_CACHE/<name>/<release>/<binary>.
#
#   tools/gobuild/build.sh <module-dir> <release> <ldflags> <pkg>...
#
# A <pkg> is a Go package path, whose last element names the binary, or <binary>=<package path>
# when the binary's name differs (flannel's flanneld is the module's root package).
#
# A release's directory appears only when every binary of the request built: each build goes to
# a temporary directory beside the cache, which is renamed into place at the end, so a failed or
# interrupted build leaves no half-written entry. A warm run (every binary present) costs a stat.
set -euo pipefail
moddir=$1 release=$2 ldflags=$3; shift 3
name=$(basename "$moddir")
cache=${OVERLAYD_BIN_CACHE:-/var/cache/overlayd-bins}
dest=$cache/$name/$release
go_min=${GO_MIN:-1.26}

need=()
binof() { case $1 in *=*) echo "${1%%=*}" ;; *) basename "$1" ;; esac; }
for pkg in "$@"; do
	bin=$(binof "$pkg")
	[ -x "$dest/$bin" ] || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

if ! command -v go >/dev/null 2>&1; then
	echo "error: building $name $release needs Go $go_min or newer, and 'go' is not on PATH." >&2
	echo "  install it (Debian: apt-get install golang-$go_min-go, or a Go $go_min+ toolchain in /usr/local/go) and run make again." >&2
	exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$go_min" "$have" | sort -V | head -1)" != "$go_min" ]; then
	echo "error: building $name $release needs Go $go_min or newer; 'go' is $have ($(command -v go))." >&2
	echo "  install Go $go_min+ and put it first on PATH, then run make again." >&2
	exit 1
fi

mkdir -p "$cache/$name"
tmp=$(mktemp -d "$cache/$name/.build-$release.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP     # run the EXIT trap on interruption too
# Binaries already in the entry are kept; only the missing ones are built.
if [ -d "$dest" ]; then cp -a "$dest/." "$tmp/"; fi
cd "$moddir"
start=$(date +%s)
built=()
for pkg in "${need[@]}"; do
	bin=$(binof "$pkg")
	echo "building $bin $release (cache: $dest)" >&2
	CGO_ENABLED=${CGO_ENABLED:-0} GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/$bin" "${pkg#*=}"
	built+=("$bin")
done
echo "built ${built[*]} in $(( $(date +%s) - start )) s" >&2
chmod 0755 "$tmp"
# Swap the finished directory in: rename is atomic, an old entry is replaced whole.
if [ -d "$dest" ]; then
	old=$(mktemp -d "$cache/$name/.old-$release.XXXXXX")
	mv "$dest" "$old/x" && mv "$tmp" "$dest" && rm -rf "$old"
else
	mv "$tmp" "$dest"
fi
trap - EXIT
