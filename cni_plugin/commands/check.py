"""CHECK: the pod's interface, addresses and routes match the cached result; then the delegate's CHECK."""
from .. import podstate, versions
from ..errors import CniError, GENERIC, INVALID_CONFIG, UNKNOWN_CONTAINER
from . import _shared


def run(req):
    versions.require_supported(req.cni_version, "CHECK")
    prev = req.netconf.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(INVALID_CONFIG, "CHECK needs `prevResult` (the result of this attachment's ADD)",
                       "the runtime passes the cached ADD result; was this attachment added?")
    store = _shared.store(req)
    entry = store.load(req.container_id, req.ifname)
    if entry is None:
        raise CniError(UNKNOWN_CONTAINER, f"no attachment of container {req.container_id} on {req.ifname} is known",
                       f"nothing in {req.data_dir}: ADD was never run here, or it was deleted")
    state = podstate.read(req.netns, req.ifname, req.environ)
    problems = podstate.mismatches(prev, req.ifname, req.netns, state)
    if problems:
        raise CniError(GENERIC, f"CHECK failed for container {req.container_id}: " + "; ".join(problems),
                       "the pod's network was changed after ADD; recreate the pod")
    conf = entry["delegate"]
    delegate = _shared.delegate_for(req, conf)
    delegate_version = entry.get("cniVersion") or _shared.negotiate(req, delegate)
    if versions.key(delegate_version) >= (0, 4, 0):
        delegate.call("CHECK", _shared.with_prev_result(req, conf, delegate_version))
    return None
