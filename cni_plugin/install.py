"""What the DaemonSet's init container does: install the bundle and the conflist, only if changed.

The bundle (cni_plugin.bundle) is BIN/overlay, the native front end, and BIN/overlay.d/, the
Python plugin the front end runs as overlay.d/overlay. Both steps are safe against a kubelet
running the plugin at the same moment: overlay.d is swapped in whole with
renameat2(RENAME_EXCHANGE) where the kernel has it (two renames otherwise), then the front end
and the conflist are replaced by rename. The front end only ever execs overlay.d/overlay with
the request it was given, so an old front end with a new overlay.d (or the other way round)
for the moment between the two renames still answers correctly.

"Unchanged" means: the installed overlay.d carries the same .bundle-id (a hash over the front
end and overlay.d) and the installed front end is byte for byte the bundle's, so an install
that stopped between the two renames is completed by the next run.
"""
from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass

from .bundle import CONTENTS, EXECUTABLE, bundle_id

DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CONF_NAME = "10-overlay.conflist"


class InstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class InstallSettings:
    bundle_dir: str
    cni_conf: str
    bin_dir: str = DEFAULT_BIN_DIR
    conf_dir: str = DEFAULT_CONF_DIR
    conf_name: str = DEFAULT_CONF_NAME


@dataclass(frozen=True)
class InstallReport:
    bundle_changed: bool
    conf_changed: bool
    executable: str
    conflist: str


def install(s: InstallSettings) -> InstallReport:
    conf_bytes = _validated_conflist(s.cni_conf)  # check everything before touching the node
    missing = [rel for rel in (EXECUTABLE, os.path.join(CONTENTS, EXECUTABLE))
               if not os.access(os.path.join(s.bundle_dir, rel), os.X_OK)]
    if missing:
        raise InstallError(f"--bundle {s.bundle_dir} holds no executable {' or '.join(missing)} (a bundle is "
                           f"{EXECUTABLE} + {CONTENTS}/{EXECUTABLE}); build one with "
                           "`python -m cni_plugin.bundle build --out DIR`")
    try:
        bundle_id(s.bundle_dir)
    except OSError as err:
        raise InstallError(f"--bundle {s.bundle_dir} has no {CONTENTS}/.bundle-id ({err.strerror}); "
                           "build it with `python -m cni_plugin.bundle build --out DIR`") from None
    bundle_changed = _install_bundle(s.bundle_dir, s.bin_dir)
    conflist = os.path.join(s.conf_dir, s.conf_name)
    conf_changed = _write_if_changed(conflist, conf_bytes, 0o644)
    return InstallReport(bundle_changed, conf_changed, os.path.join(s.bin_dir, EXECUTABLE), conflist)


def _validated_conflist(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise InstallError(f"--cni-conf {path}: {err.strerror}") from None
    try:
        conf = json.loads(data)
    except ValueError as err:
        raise InstallError(f"--cni-conf {path} is not JSON: {err}") from None
    plugins = conf.get("plugins") if isinstance(conf, dict) else None
    if not isinstance(plugins, list) or not any(isinstance(p, dict) and p.get("type") == "overlay"
                                                for p in plugins):
        raise InstallError(f"--cni-conf {path} must be a conflist whose `plugins` include "
                           '{"type": "overlay"}')
    for field in ("name", "cniVersion"):
        if not isinstance(conf.get(field), str):
            raise InstallError(f"--cni-conf {path} has no `{field}`; add it at the top level")
    return data


def _unchanged(src: str, bin_dir: str) -> bool:
    try:
        return (bundle_id(bin_dir) == bundle_id(src)
                and os.access(os.path.join(bin_dir, CONTENTS, EXECUTABLE), os.X_OK)
                and filecmp.cmp(os.path.join(src, EXECUTABLE), os.path.join(bin_dir, EXECUTABLE), shallow=False))
    except OSError:
        return False


def _install_bundle(src: str, bin_dir: str) -> bool:
    os.makedirs(bin_dir, exist_ok=True)
    dst_contents = os.path.join(bin_dir, CONTENTS)
    if _unchanged(src, bin_dir):
        return False
    staging = os.path.join(bin_dir, f".{CONTENTS}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(os.path.join(src, CONTENTS), staging, symlinks=True)
    if os.path.isdir(dst_contents):
        _exchange(staging, dst_contents)  # staging now holds the old contents
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.rename(staging, dst_contents)
    tmp = os.path.join(bin_dir, f".{EXECUTABLE}.new-{os.getpid()}")
    shutil.copy2(os.path.join(src, EXECUTABLE), tmp)
    os.chmod(tmp, 0o755)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(bin_dir, EXECUTABLE))
    return True


def _exchange(a: str, b: str) -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None and renameat2(-100, a.encode(), -100, b.encode(), 2) == 0:  # RENAME_EXCHANGE
        return
    old = f"{a}.old"
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def _write_if_changed(path: str, data: bytes, mode: int) -> bool:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)
    return True
