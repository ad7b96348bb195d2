"""GC (1.1.0): release addresses and cache entries of attachments the runtime no longer has.

Leaked host-local reservations fill a node's /24 over time (flannel #1416): we release both
the attachments we cached and reservations in host-local's directory that no cache entry
explains, then forward GC to the delegate when it speaks 1.1.0.
"""
import os

from .. import delegate_conf, subnet_env, versions
from ..errors import CniError, INVALID_CONFIG, TRY_AGAIN_LATER
from . import _shared

VALID = "cni.dev/valid-attachments"
DEFAULT_IPAM_DIR = "/var/lib/cni/networks"


def run(req):
    versions.require_supported(req.cni_version, "GC")
    valid = _valid_attachments(req.netconf)
    store = _shared.store(req)
    failures = []
    with store.lock():
        for container_id, ifname, entry in store.entries():
            if (container_id, ifname) in valid:
                continue
            conf = entry["delegate"]
            try:
                delegate = _shared.delegate_for(req, conf)
                delegate.call("DEL", _shared.with_prev_result(req, conf, entry.get("cniVersion") or "1.0.0"),
                              CNI_CONTAINERID=container_id, CNI_IFNAME=ifname, CNI_NETNS=None, CNI_ARGS=None)
                store.remove(container_id, ifname)
            except CniError as err:
                failures.append(f"{container_id}/{ifname}: {err.msg}")
        try:
            conf = delegate_conf.build(req.netconf, subnet_env.read(req.subnet_file))
        except CniError:
            conf = None  # no subnet file: cached attachments were all we could release
        if conf is not None:
            delegate = _shared.delegate_for(req, conf)
            conf["cniVersion"] = _shared.negotiate(req, delegate)
            for container_id, ifname in _reservations(conf) - valid:
                try:
                    delegate.call("DEL", conf, CNI_CONTAINERID=container_id, CNI_IFNAME=ifname,
                                  CNI_NETNS=None, CNI_ARGS=None)
                except CniError as err:
                    failures.append(f"{container_id}/{ifname}: {err.msg}")
            if "1.1.0" in delegate.supported_versions():
                conf["cniVersion"] = "1.1.0"
                conf[VALID] = req.netconf.get(VALID)
                delegate.call("GC", conf, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    if failures:
        raise CniError(TRY_AGAIN_LATER, f"GC could not release {len(failures)} attachment(s)", "; ".join(failures)[:2000])
    return None


def _valid_attachments(netconf: dict) -> set:
    given = netconf.get(VALID, [])
    if not isinstance(given, list) or not all(isinstance(a, dict) for a in given):
        raise CniError(INVALID_CONFIG, f"`{VALID}` must be a list of {{\"containerID\", \"ifname\"}} objects",
                       "the runtime fills it in; check the runtime's CNI GC support")
    return {(a.get("containerID"), a.get("ifname")) for a in given}


def _reservations(conf: dict) -> set:
    """(containerID, ifname) of every address host-local holds for this network."""
    ipam = conf.get("ipam") or {}
    if ipam.get("type") != "host-local":
        return set()
    directory = os.path.join(ipam.get("dataDir") or DEFAULT_IPAM_DIR, conf["name"])
    found = set()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for name in names:
        if name == "lock" or name.startswith("last_reserved_ip"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                lines = f.read().split()
        except OSError:
            continue
        if len(lines) >= 2:
            found.add((lines[0], lines[1]))
    return found
