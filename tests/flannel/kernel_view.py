"""What a node's kernel holds for its peers, and what the leases in etcd say it should hold."""
import base64
import ipaddress
import json

from overlayd.lab.netns import ip, run

SUBNETS = "/coreos.com/network/subnets"


def leases(lab) -> dict:
    """{subnet: lease value} for every lease in the lab's etcd. Null fields are left out: flanneld
    writes "PublicIPv6": null, overlayd omits the key; both mean no IPv6."""
    out = lab.etcd.etcdctl("get", "--prefix", SUBNETS, "-w", "json").stdout
    kvs = json.loads(out).get("kvs", [])
    return {base64.b64decode(kv["key"]).decode().rsplit("/", 1)[1].replace("-", "/"):
            {k: v for k, v in json.loads(base64.b64decode(kv["value"])).items() if v is not None} for kv in kvs}


def expected_entries(lab, node) -> set:
    """The route, neighbour and FDB entry per peer lease (every lease but the node's own)."""
    own = str(ipaddress.ip_interface(lab.subnets()[node.name]).network)
    want = set()
    for subnet, value in leases(lab).items():
        if subnet == own:
            continue
        gw = subnet.split("/")[0]
        mac = value["BackendData"]["VtepMAC"]
        want |= {("route", subnet, gw), ("neigh", gw, mac), ("fdb", mac, value["PublicIP"])}
    return want


def kernel_entries(node, dev: str = "flannel.1") -> set:
    """The same triples, read from the node's kernel (routes onlink via the device, permanent neigh/FDB)."""
    have = set()
    for r in json.loads(ip("-j", "route", "show", "dev", dev, netns=node.netns).stdout or "[]"):
        if "onlink" in r.get("flags", []) and r.get("gateway"):
            have.add(("route", r["dst"], r["gateway"]))
    for n in json.loads(ip("-j", "neigh", "show", "dev", dev, netns=node.netns).stdout or "[]"):
        if "PERMANENT" in n.get("state", []):
            have.add(("neigh", n["dst"], n["lladdr"]))
    for f in json.loads(run(["bridge", "-j", "fdb", "show", "dev", dev], netns=node.netns).stdout or "[]"):
        if f.get("dst") and f.get("state") == "permanent":
            have.add(("fdb", f["mac"], f["dst"]))
    return have


def device(node, dev: str = "flannel.1") -> tuple:
    """(ifindex, MAC) of the VXLAN device: the same pair means the same device, untouched."""
    link = json.loads(ip("-j", "link", "show", dev, netns=node.netns).stdout)[0]
    return link["ifindex"], link["address"]




def expected_from_nodes(lab, node) -> set:
    """The same triples from the other nodes themselves (subnet file, device MAC, underlay IP): what
    any store, etcd or the Kubernetes API, must have carried between them."""
    want = set()
    for other in lab.nodes:
        if other is node:
            continue
        subnet = str(ipaddress.ip_interface(lab.subnets()[other.name]).network)
        gw, mac = subnet.split("/")[0], device(other)[1]
        want |= {("route", subnet, gw), ("neigh", gw, mac), ("fdb", mac, other.underlay_ip)}
    return want
