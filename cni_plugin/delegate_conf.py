"""The delegate's network config: the reference bridge plugin with host-local IPAM (pure)."""
from .errors import CniError, INVALID_CONFIG

DEFAULT_BRIDGE = "cni0"


def build(netconf: dict, subnet) -> dict:
    """Flannel's semantics: the user's `delegate` object wins; we fill in what it leaves out.

    `netconf` is the plugin's own config; `subnet` a subnet_env.SubnetEnv.
    """
    user = netconf.get("delegate") or {}
    if not isinstance(user, dict):
        raise CniError(INVALID_CONFIG, "`delegate` must be a JSON object",
                       'e.g. "delegate": {"hairpinMode": true, "isDefaultGateway": true}')
    conf = dict(user)
    conf.setdefault("type", "bridge")
    conf["name"] = netconf["name"]
    if conf["type"] == "bridge":
        conf.setdefault("bridge", DEFAULT_BRIDGE)
        conf.setdefault("isGateway", True)
        if conf.get("isDefaultGateway"):
            conf["isGateway"] = True
    conf.setdefault("mtu", subnet.mtu)
    # When overlayd masquerades (FLANNEL_IPMASQ=true) the bridge must not do it a second time.
    conf.setdefault("ipMasq", not subnet.ipmasq)
    conf["ipam"] = _ipam(netconf, subnet)
    for passthrough in ("runtimeConfig", "args"):
        if passthrough in netconf:
            conf[passthrough] = netconf[passthrough]
    return conf


def _ipam(netconf: dict, subnet) -> dict:
    base = netconf.get("ipam") or {}
    if not isinstance(base, dict):
        raise CniError(INVALID_CONFIG, "`ipam` must be a JSON object",
                       'e.g. "ipam": {"dataDir": "/var/lib/cni/networks"}')
    for owned in ("subnet", "ranges", "rangeStart", "rangeEnd", "gateway"):
        if owned in base:
            raise CniError(INVALID_CONFIG, f"`ipam.{owned}` cannot be set: the overlay plugin takes the "
                           "node's range from overlayd's subnet file",
                           f"remove ipam.{owned} from the CNI config")
    ipam = dict(base)
    ipam.setdefault("type", "host-local")
    ranges, routes = [], list(base.get("routes") or [])
    if subnet.subnet:
        ranges.append([{"subnet": network_of(subnet.subnet)}])
        # An explicit gw: the kernel route goes via the bridge anyway, and the reference bridge's
        # CHECK only matches routes whose gateway is spelled out.
        routes.append({"dst": network_of(subnet.network), "gw": subnet.subnet.partition("/")[0]})
    if subnet.ipv6_subnet:
        ranges.append([{"subnet": network_of(subnet.ipv6_subnet)}])
        routes.append({"dst": network_of(subnet.ipv6_network), "gw": subnet.ipv6_subnet.partition("/")[0]})
    ipam["ranges"] = ranges
    ipam["routes"] = routes
    return ipam


def network_of(cidr: str) -> str:
    """'10.244.3.1/24' -> '10.244.3.0/24' (host-local refuses host bits); IPv6 alike."""
    import _socket
    addr, _, plen = cidr.partition("/")
    family = _socket.AF_INET6 if ":" in addr else _socket.AF_INET
    raw = _socket.inet_pton(family, addr)
    bits = len(raw) * 8
    mask = ((1 << bits) - 1) ^ ((1 << (bits - int(plen))) - 1)
    masked = (int.from_bytes(raw, "big") & mask).to_bytes(len(raw), "big")
    return f"{_socket.inet_ntop(family, masked)}/{plen}"
