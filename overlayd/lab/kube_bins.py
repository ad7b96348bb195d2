"""Where the lab finds the Kubernetes binaries and the API server's etcd, building them when
they are missing.

They are built from k8s.io/kubernetes at the release tools/kube/go.mod pins, by
tools/kube/build.sh, and etcd from go.etcd.io/etcd/server/v3 at the release tools/etcd/go.mod pins,
by tools/etcd/build.sh (both: `make kube-bins`), into /var/cache/overlayd-bins/{kube,etcd}/<release>/.
OVERLAYD_BIN_CACHE moves the cache, as it does for the build scripts.
"""
from __future__ import annotations

import os
import subprocess
from typing import Optional

from .netns import LabError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO_MOD = os.path.join(REPO, "tools", "kube", "go.mod")
BUILD = os.path.join(REPO, "tools", "kube", "build.sh")
ETCD_GO_MOD = os.path.join(REPO, "tools", "etcd", "go.mod")
ETCD_BUILD = os.path.join(REPO, "tools", "etcd", "build.sh")
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kubectl")


def release(go_mod: str = GO_MOD, module: str = "k8s.io/kubernetes") -> str:
    try:
        with open(go_mod) as f:
            for line in f:
                parts = [p for p in line.split() if p != "require"]
                if parts[:1] == [module] and len(parts) > 1:
                    return parts[1]
    except FileNotFoundError:
        pass
    raise LabError(f"cannot tell the pinned release of {module}: it is not required in {go_mod}")


def _cache(cache: Optional[str]) -> str:
    return cache or os.environ.get("OVERLAYD_BIN_CACHE", "/var/cache/overlayd-bins")


def bin_dir(cache: Optional[str] = None) -> str:
    return os.path.join(_cache(cache), "kube", release())


def etcd_release() -> str:
    return release(ETCD_GO_MOD, "go.etcd.io/etcd/server/v3")


def etcd_binary(log=lambda msg: None, cache: Optional[str] = None) -> str:
    """The etcd the control plane runs (built once; Debian's 3.4.23 is too old, see the docs)."""
    path = os.path.join(_cache(cache), "etcd", etcd_release(), "etcd")
    if not os.access(path, os.X_OK):
        log(f"building etcd {etcd_release()} from go.etcd.io/etcd/server/v3 (cold: ~2-4 min)")
        proc = subprocess.run([ETCD_BUILD], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise LabError(f"building etcd failed (run `make kube-bins` to see why):\n{proc.stdout[-3000:]}")
    return path


def ensure(binaries=CONTROL_PLANE, log=lambda msg: None) -> str:
    """The directory holding every binary asked for; builds the missing ones (minutes, once)."""
    d = bin_dir()
    missing = [b for b in binaries if not os.access(os.path.join(d, b), os.X_OK)]
    if missing:
        log(f"building {' '.join(missing)} {release()} from k8s.io/kubernetes (cold: ~15-25 min on 2 cores)")
        proc = subprocess.run([BUILD, *missing], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise LabError(f"building the Kubernetes binaries failed (run `make kube-bins` to see why):\n"
                           f"{proc.stdout[-3000:]}")
    return d
