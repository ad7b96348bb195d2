"""The real flanneld as a lab node's daemon (mixed clusters, in-place migration, the side-by-side bench).

flanneld is built from its Go module by `make flannel-bins` (tools/flannel/) into
/var/cache/overlayd-bins/flannel/<release>/flanneld; the release is the one tools/flannel/go.mod pins.
A lab node whose `daemon` is "flanneld" runs it with the same store, subnet file and underlay as an
overlayd node would have, so either daemon can take over the other's node in place.
"""
from __future__ import annotations

import os
import re
from typing import Optional

DEFAULT_BIN_CACHE = "/var/cache/overlayd-bins"
_TOOLS_GO_MOD = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "flannel", "go.mod")


def pinned_release(go_mod: str = _TOOLS_GO_MOD) -> Optional[str]:
    """The flannel release tools/flannel/go.mod pins ("v0.28.10"), None outside a source checkout."""
    try:
        with open(go_mod) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"^\s*(?:require\s+)?github\.com/flannel-io/flannel\s+(v\S+)", text, re.M)
    return m.group(1) if m else None


def binary(cache: str = DEFAULT_BIN_CACHE, release: Optional[str] = None) -> Optional[str]:
    """The cached flanneld of the pinned release, or None when it has not been built."""
    release = release or pinned_release()
    if not release:
        return None
    path = os.path.join(cache, "flannel", release, "flanneld")
    return path if os.access(path, os.X_OK) else None


def missing_reason(cache: str = DEFAULT_BIN_CACHE) -> str:
    """Why binary() is None, with the fix: for loud skips and lab errors."""
    release = pinned_release()
    if not release:
        return f"no flannel release pinned ({os.path.normpath(_TOOLS_GO_MOD)} not found: run from a source checkout)"
    return (f"flanneld {release} is not built ({cache}/flannel/{release}/flanneld missing): "
            f"run `make flannel-bins` (needs Go 1.26+ and the Go module proxy)")


def command(flanneld: str, *, underlay_ip: str, subnet_file: str, etcd_endpoint: Optional[str] = None,
            etcd_prefix: Optional[str] = None, kubeconfig: Optional[str] = None,
            net_conf_file: Optional[str] = None, iface: str = "eth0", extra: tuple = ()) -> list[str]:
    """flanneld's command line for a lab node: etcd mode, or kube mode with a kubeconfig."""
    if kubeconfig:
        store = ["--kube-subnet-mgr", f"--kubeconfig-file={kubeconfig}"]
        if net_conf_file:
            store.append(f"--net-config-path={net_conf_file}")
    else:
        store = [f"--etcd-endpoints={etcd_endpoint}", f"--etcd-prefix={etcd_prefix}"]
    return [flanneld, *store, f"-iface={iface}", f"--public-ip={underlay_ip}",
            f"--subnet-file={subnet_file}", "--ip-masq=false", *extra]
