"""DEL: idempotent. Uses the config ADD saved; without it, rebuilds one from the subnet file."""
from .. import delegate_conf, subnet_env, versions
from ..errors import CniError, TRY_AGAIN_LATER
from . import _shared


def run(req):
    versions.require_supported(req.cni_version, "DEL")
    store = _shared.store(req)
    with store.lock():
        entry = store.load(req.container_id, req.ifname)
        if entry is not None:
            conf = entry["delegate"]
            delegate = _shared.delegate_for(req, conf)
            delegate_version = entry.get("cniVersion") or _shared.negotiate(req, delegate)
        else:
            # Cache lost (wiped disk, pre-upgrade pod): host-local releases by container ID, so a
            # config rebuilt from the subnet file frees the address as well.
            try:
                conf = delegate_conf.build(req.netconf, subnet_env.read(req.subnet_file))
            except CniError as err:
                if err.code == TRY_AGAIN_LATER:
                    return None  # no subnet file and no cache: nothing of ours can be left to delete
                raise
            delegate = _shared.delegate_for(req, conf)
            delegate_version = _shared.negotiate(req, delegate)
        delegate.call("DEL", _shared.with_prev_result(req, conf, delegate_version))
        store.remove(req.container_id, req.ifname)
    return None
