"""Property-based fuzzing of every Python parser of outside input (hypothesis).

The rule for each: a correct parse, or the parser's own error naming the field. Never another
exception (a crash), never a hang (hypothesis' deadline), never a partial write.
Crashes found are fixed and kept below as @example regression cases.
"""
import json
import os

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cni_plugin import request as cni_request
from cni_plugin import subnet_env
from cni_plugin.errors import CniError
from overlayd.subnet_file import SubnetFile, previous_subnet, write_subnet_file
from subnet_lease.config import ConfigError, NetConfig, parse_net_config
from subnet_lease.kube_nodes import Annotations, lease_from_node
from subnet_lease.lease import Lease, LeaseFormatError, lease_from_json, parse_subnet_key
from strategies import ADDRESSISH, CIDR4, CIDR6, IPV4, IPV6, JSON, MAC, maybe

NET_CONF_FIELDS = ("Network", "SubnetLen", "SubnetMin", "SubnetMax", "IPv6Network", "IPv6SubnetLen",
                   "IPv6SubnetMin", "IPv6SubnetMax", "EnableIPv4", "EnableIPv6", "Backend")


# -- net-conf.json ------------------------------------------------------------------------------
BACKEND = st.fixed_dictionaries({}, optional={
    "Type": maybe(st.sampled_from(["vxlan", "host-gw", "VXLAN", ""])), "VNI": maybe(st.integers(-1, 2**25)),
    "Port": maybe(st.integers(-1, 70000)), "MTU": maybe(st.integers(0, 70000)),
    "DirectRouting": maybe(st.booleans()), "GBP": maybe(st.booleans()), "Learning": maybe(st.booleans())})
NET_CONF = st.fixed_dictionaries({}, optional={
    "Network": maybe(CIDR4), "SubnetLen": maybe(st.integers(-1, 40)), "SubnetMin": maybe(IPV4),
    "SubnetMax": maybe(IPV4), "EnableIPv6": maybe(st.booleans()), "EnableIPv4": maybe(st.booleans()),
    "IPv6Network": maybe(CIDR6), "IPv6SubnetLen": maybe(st.integers(-1, 140)),
    "IPv6SubnetMin": maybe(IPV6), "IPv6SubnetMax": maybe(IPV6), "Backend": maybe(BACKEND)})


ADDRESS_FIELDS = ("Network", "SubnetMin", "SubnetMax", "IPv6Network", "IPv6SubnetMin", "IPv6SubnetMax")


def check_net_conf(text):
    try:
        config = parse_net_config(text)
    except ConfigError as err:
        msg = str(err)
        assert msg and (any(f in msg for f in NET_CONF_FIELDS) or "net-conf.json" in msg), msg
        return
    assert isinstance(config, NetConfig)
    assert config.network is not None or config.ipv6_network is not None
    # A correct parse: an address field flannel reads as a string was one (ipaddress alone
    # takes 167772416 or true for an address).
    doc = json.loads(text)
    for field in ADDRESS_FIELDS:
        assert doc.get(field) in (None, "") or isinstance(doc[field], str), (field, doc[field])


@given(NET_CONF)
@example({"Network": "10.244.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}})
@example({"Network": "10.0.0.0/8", "SubnetMin": 167772416})    # found: a number taken as 10.0.1.0
@example({"Network": 167772160})                               # found: a number taken as 10.0.0.0/32
@example({"Network": True})                                    # found: true taken as 0.0.0.1/32
@example({"Network": "0.0.0.0/0", "IPv6SubnetMin": []})        # found: ignored while IPv6 is off
def test_net_conf_json_documents(doc):
    check_net_conf(json.dumps(doc))


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_net_conf_json_junk(text):
    check_net_conf(text)


# -- lease JSON (etcd) ----------------------------------------------------------------------------
SUBNET_KEY = st.builds(lambda a, b, p: f"10.{a}.{b}.0-{p}", st.integers(0, 300), st.integers(0, 300), st.integers(0, 40)) \
    | st.builds(lambda k, six: f"{k}&{six}", st.just("10.244.3.0-24"), st.sampled_from(["fd00::-64", "fd00::-200", "x"])) \
    | st.text(max_size=30)
LEASE_DOC = st.fixed_dictionaries({}, optional={
    "PublicIP": maybe(IPV4 | IPV6), "PublicIPv6": maybe(IPV6 | IPV4), "BackendType": maybe(st.just("vxlan")),
    "BackendData": maybe(st.fixed_dictionaries({}, optional={"VNI": maybe(st.integers(-1, 2**25)), "VtepMAC": maybe(MAC)})),
    "BackendV6Data": maybe(st.fixed_dictionaries({}, optional={"VtepMAC": maybe(MAC)}))})


@given(SUBNET_KEY, LEASE_DOC | JSON)
def test_etcd_lease_json(key, doc):
    try:
        lease = lease_from_json(key, json.dumps(doc))
    except LeaseFormatError as err:
        assert repr(key) in str(err) or key in str(err), str(err)
        return
    assert isinstance(lease, Lease)
    # What parsed is what flannel would write back: the round trip is exact.
    assert lease_from_json(lease.key, lease.to_json()) == lease


@given(SUBNET_KEY, st.binary(max_size=100))
def test_etcd_lease_junk_bytes(key, value):
    try:
        lease_from_json(key, value)
    except LeaseFormatError:
        pass


@given(st.text(max_size=40))
def test_subnet_keys(key):
    try:
        parse_subnet_key(key)
    except LeaseFormatError as err:
        assert key in str(err) or repr(key) in str(err), str(err)


# -- node annotations (kube) ----------------------------------------------------------------------
P = "flannel.alpha.coreos.com"
ANN = Annotations(P)
ANNOTATIONS = st.fixed_dictionaries({}, optional={
    f"{P}/backend-type": st.sampled_from(["vxlan", ""]) | st.text(max_size=8),
    f"{P}/backend-data": st.builds(json.dumps, LEASE_DOC | JSON) | st.text(max_size=20),
    f"{P}/backend-v6-data": st.builds(json.dumps, JSON) | st.text(max_size=20),
    f"{P}/public-ip": ADDRESSISH, f"{P}/public-ipv6": ADDRESSISH,
    f"{P}/public-ip-overwrite": ADDRESSISH, f"{P}/public-ipv6-overwrite": ADDRESSISH})
NODE = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({"name": st.text(min_size=1, max_size=10)}, optional={"annotations": ANNOTATIONS}),
    "spec": st.fixed_dictionaries({}, optional={"podCIDR": ADDRESSISH, "podCIDRs": st.lists(ADDRESSISH, max_size=3)})})


@given(NODE)
def test_node_annotations(node):
    try:
        lease = lease_from_node(node, ANN)
    except LeaseFormatError as err:
        assert repr(node["metadata"]["name"]) in str(err) and P in str(err), str(err)
        return
    assert lease is None or isinstance(lease, Lease)


# -- subnet.env -----------------------------------------------------------------------------------
ENV_VALUE = st.one_of(CIDR4, CIDR6, st.integers(0, 70000).map(str), st.sampled_from(["true", "false", "TRUE", "yes"]),
                      st.text(max_size=12))
ENV_LINES = st.lists(st.tuples(st.sampled_from(["FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ",
                                                "FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET", "OTHER", "#x"]),
                               ENV_VALUE), max_size=8)


@given(ENV_LINES | st.text(max_size=200).map(lambda t: [("", t)]))
def test_subnet_env(lines):
    text = "\n".join(f"{k}={v}" if k else v for k, v in lines)
    try:
        env = subnet_env.parse(text)
    except CniError as err:
        assert err.code == 7 and "FLANNEL_" in err.msg, (err.code, err.msg)     # INVALID_CONFIG, names the variable
        return
    assert 576 <= env.mtu <= 65535


@settings(max_examples=25)      # each example writes and fsyncs a file
@given(st.sampled_from(["10.244.3.1/24", "10.0.0.1/8", "192.168.255.1/30"]),
       st.sampled_from(["10.244.0.0/16", "10.0.0.0/8"]), st.integers(576, 65535), st.booleans(),
       st.one_of(st.none(), st.sampled_from(["fd00:10:244:3::1/64"])))
def test_subnet_file_round_trip_and_no_partial_write(tmp_path_factory, subnet, network, mtu, ipmasq, v6):
    """What the daemon writes, the plugin reads back exactly; no temporary file is left."""
    import ipaddress
    d = tmp_path_factory.mktemp("env")
    path = str(d / "subnet.env")
    content = SubnetFile(network=ipaddress.ip_network(network), subnet=ipaddress.ip_interface(subnet), mtu=mtu,
                         ipmasq=ipmasq, ipv6_network=ipaddress.ip_network("fd00:10:244::/48") if v6 else None,
                         ipv6_subnet=ipaddress.ip_interface(v6) if v6 else None)
    write_subnet_file(path, content)
    env = subnet_env.read(path)
    assert (env.subnet, env.mtu, env.ipmasq) == (subnet, mtu, ipmasq)
    assert previous_subnet(path) == ipaddress.ip_interface(subnet).network
    assert os.listdir(d) == ["subnet.env"]


# -- CNI stdin and environment --------------------------------------------------------------------
CNI_ENV = st.fixed_dictionaries({}, optional={
    "CNI_COMMAND": st.sampled_from(["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS", "add", ""]) | st.text(max_size=6),
    "CNI_CONTAINERID": st.sampled_from(["abc123", "-bad", "a/b", ""]) | st.text(max_size=20),
    "CNI_NETNS": st.sampled_from(["/var/run/netns/x", ""]) | st.text(max_size=10),
    "CNI_IFNAME": st.sampled_from(["eth0", "a" * 16, "..", "e:0", ""]) | st.text(max_size=17),
    "CNI_PATH": st.sampled_from(["/opt/cni/bin", "/a:/b", ""]) | st.text(max_size=10),
    "CNI_ARGS": st.text(max_size=20)})
NETCONF = st.fixed_dictionaries({}, optional={
    "cniVersion": maybe(st.sampled_from(["1.0.0", "0.4.0", "0.3.1", "9.9.9"])), "name": maybe(st.just("overlay")),
    "type": maybe(st.just("overlay")), "subnetFile": maybe(st.sampled_from(["/run/flannel/subnet.env", "rel/path"])),
    "dataDir": maybe(st.sampled_from(["/var/lib/cni/overlay", "x"])), "cniSocket": maybe(st.sampled_from(["", "/run/x.sock", "y"])),
    "delegate": maybe(st.dictionaries(st.text(max_size=8), JSON, max_size=3))})


@given(CNI_ENV, st.builds(lambda d: json.dumps(d).encode(), NETCONF) | st.binary(max_size=100))
def test_cni_stdin_and_environment(environ, stdin):
    try:
        req = cni_request.parse(environ, stdin)
    except CniError as err:
        assert err.code in (1, 2, 4, 6, 7) and err.msg, (err.code, err.msg)
        return
    assert req.command == environ["CNI_COMMAND"]
    if req.command != "VERSION":
        assert isinstance(req.netconf, dict) and req.subnet_file.startswith("/")
