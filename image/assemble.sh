#!/usr/bin/env bash
# image/assemble.sh ROOT
#
# Assembles everything the overlayd image carries under ROOT/opt/overlayd. The Dockerfile runs
# it with ROOT=/; tests/deploy runs it into a temporary directory, without Docker, and checks
# what comes out. Layout:
#
#   venv/          this repository pip-installed (not editable) with its dependencies
#   bin/overlayd   -> ../venv/bin/overlayd (the daemon, and `overlayd install-cni`)
#   bin/install-reference-plugins
#   cni/overlay    the self-contained CNI bundle (`python -m cni_plugin.bundle build`): the native
#   cni/overlay.d/ front end (static ELF, compiled here from cni_plugin/native/overlay.c) and,
#                  as overlay.d/overlay, the Python plugin it falls back to: a PyInstaller one-dir
#                  build made in a throwaway venv, so PyInstaller never lands in the image
#   cni-plugins/   bridge, host-local, portmap, loopback (the reference plugins we delegate to)
#
# Settings (environment): OVERLAYD_SRC (the source tree; default: this script's repository),
# PYTHON (the interpreter the venv is made from; default /usr/bin/python3), CNI_PLUGIN_DIR
# (where the reference plugins are; default /usr/lib/cni, Debian's containernetworking-plugins),
# PYINSTALLER (the requirement installed into the throwaway build venv; default 'pyinstaller>=6.0,<7'),
# CC (the C compiler for the front end; default cc; Debian: gcc and libc6-dev).
# Nothing half-done: on any failure ROOT/opt/overlayd is removed again.
set -euo pipefail

die() { echo "assemble.sh: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || { echo "usage: image/assemble.sh ROOT   (ROOT=/ in the Dockerfile)" >&2; exit 2; }
root=${1%/}
src=${OVERLAYD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
python=${PYTHON:-/usr/bin/python3}
cni_plugin_dir=${CNI_PLUGIN_DIR:-/usr/lib/cni}
pyinstaller=${PYINSTALLER:-pyinstaller>=6.0,<7}
reference_plugins=(bridge host-local portmap loopback)
prefix=/opt/overlayd
dest=$root$prefix

[[ -f $src/setup.cfg && -d $src/overlayd && -d $src/cni_plugin ]] \
    || die "OVERLAYD_SRC $src is not the overlayd source tree (no setup.cfg, overlayd/, cni_plugin/)"
[[ -x $python ]] || die "PYTHON $python is not an executable interpreter; install python3 and python3-venv"
cc=${CC:-cc}
command -v "$cc" >/dev/null \
    || die "CC $cc: no C compiler to build the CNI plugin's native front end; install gcc and libc6-dev or set CC"
command -v readelf >/dev/null || die "no readelf to check the native front end is static; install binutils"
for p in "${reference_plugins[@]}"; do
    [[ -x $cni_plugin_dir/$p ]] \
        || die "CNI_PLUGIN_DIR $cni_plugin_dir has no $p plugin; install containernetworking-plugins or point CNI_PLUGIN_DIR at the plugins"
done
if [[ -e $dest ]] && [[ -n $(ls -A "$dest") ]]; then
    die "$dest already exists and is not empty; assemble into a fresh ROOT"
fi

work=$(mktemp -d)
ok=0
build_venv_pid=""
cleanup() {
    if [[ -n $build_venv_pid ]]; then
        kill "$build_venv_pid" 2>/dev/null || true
        wait "$build_venv_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    if [[ $ok -ne 1 ]]; then
        rm -rf "$dest"
    fi
}
trap cleanup EXIT

step() { echo "==> [${SECONDS}s] $*"; }

# pip builds a local project inside its directory; build from a copy so the source tree
# (read-only in CI, shared by parallel runs here) is never written to. The front end's build
# cache (cni_plugin/native/build) stays behind: the image's front end is compiled here.
step "copying the source tree"
mkdir -p "$work/src"
tar -C "$src" --exclude=__pycache__ --exclude='*.egg-info' --exclude=cni_plugin/native/build \
    -cf - setup.cfg pyproject.toml README.md subnet_lease overlayd cni_plugin | tar -C "$work/src" -xf -

# The two installs are independent and mostly wait on the network: run them side by side.
step "installing $pyinstaller into a throwaway build venv (in the background)"
{
    "$python" -m venv "$work/build-venv" \
        && "$work/build-venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pyinstaller"
} >"$work/build-venv.log" 2>&1 &
build_venv_pid=$!

step "creating $dest/venv from $python"
mkdir -p "$dest"
"$python" -m venv "$dest/venv"
step "installing overlayd and its dependencies into $dest/venv"
"$dest/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work/src"

step "waiting for the build venv"
if ! wait "$build_venv_pid"; then
    build_venv_pid=""
    cat "$work/build-venv.log" >&2
    die "could not install $pyinstaller into the build venv (pip's output above)"
fi
build_venv_pid=""
step "building the CNI bundle into $dest/cni"
# From the source copy: the bundle carries cni_plugin from there and the standard library only.
(cd "$work/src" && CC=$cc "$work/build-venv/bin/python" -m cni_plugin.bundle build --out "$dest/cni")
for exe in overlay overlay.d/overlay; do
    [[ -f $dest/cni/$exe && -x $dest/cni/$exe ]] || die "the CNI bundle has no executable cni/$exe"
done
# kubelet runs the front end on the host, whatever C library the node has: it must need none.
dynamic=$(readelf -d "$dest/cni/overlay") || die "readelf cannot read cni/overlay (the native front end)"
if [[ $dynamic == *"(NEEDED)"* ]]; then
    die "cni/overlay (the native front end) is dynamically linked; install libc6-dev (it has libc.a) so it links statically"
fi

step "adding the reference plugins (${reference_plugins[*]}) from $cni_plugin_dir"
mkdir -p "$dest/cni-plugins"
for p in "${reference_plugins[@]}"; do
    install -m 0755 "$cni_plugin_dir/$p" "$dest/cni-plugins/$p"
done

step "linking the entry points into $dest/bin"
mkdir -p "$dest/bin"
ln -s ../venv/bin/overlayd "$dest/bin/overlayd"
install -m 0755 "$src/image/install-reference-plugins.sh" "$dest/bin/install-reference-plugins"

ok=1
step "assembled $dest"
