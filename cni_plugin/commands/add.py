"""ADD: subnet file -> delegate config -> saved for DEL -> delegate ADD (undone if it fails)."""
from .. import delegate_conf, subnet_env, versions
from ..errors import CniError, INVALID_ENVIRONMENT
from . import _shared


def run(req):
    version = versions.require_supported(req.cni_version, "ADD")
    subnet = subnet_env.read(req.subnet_file)
    conf = delegate_conf.build(req.netconf, subnet)
    store = _shared.store(req)
    delegate = _shared.delegate_for(req, conf)
    with store.lock():
        if req.host.interface_exists(req.netns, req.ifname):
            raise CniError(INVALID_ENVIRONMENT, f"interface {req.ifname} already exists in {req.netns}",
                           "the runtime must DEL this attachment before adding it again, or use another CNI_IFNAME")
        delegate_version = _shared.negotiate(req, delegate)
        conf["cniVersion"] = delegate_version
        store.save(req.container_id, req.ifname, {
            "containerID": req.container_id, "ifname": req.ifname, "cniVersion": delegate_version,
            "delegate": conf})
        try:
            result = delegate.call("ADD", _shared.with_prev_result(req, conf, delegate_version))
        except BaseException:
            _undo(delegate, conf, store, req)
            raise
    return versions.convert_result(result or {}, version)


def _undo(delegate, conf, store, req) -> None:
    """Whatever the delegate managed to create (veth, address reservation) goes again.

    The cache entry goes only once that DEL succeeded: if it failed, or could not even be run
    (the front end was killed while the delegate ran on), the runtime's DEL needs the entry to
    release what is left. Report the ADD failure, not the clean-up's."""
    try:
        delegate.call("DEL", conf)
    except Exception:
        return
    store.remove(req.container_id, req.ifname)
