"""STATUS (1.1.0): ready when overlayd wrote a valid subnet file and the delegate is installed."""
from .. import delegate_conf, subnet_env, versions
from ..errors import CniError, NOT_AVAILABLE
from . import _shared


def run(req):
    versions.require_supported(req.cni_version, "STATUS")
    try:
        subnet = subnet_env.read(req.subnet_file)
        conf = delegate_conf.build(req.netconf, subnet)
        delegate = _shared.delegate_for(req, conf)
    except CniError as err:
        raise CniError(NOT_AVAILABLE, f"the overlay network is not ready on this node: {err.msg}",
                       err.details or "look at overlayd on this node") from None
    if "1.1.0" in delegate.supported_versions():
        conf["cniVersion"] = "1.1.0"
        delegate.call("STATUS", conf, CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    return None
