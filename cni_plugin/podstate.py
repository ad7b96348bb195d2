"""What the pod's interface really has (addresses, routes, MAC), read with iproute2 inside its netns."""
import os

from . import fastjson, netns, spawn
from .errors import CniError, GENERIC

_FALLBACK_PATH = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def _ip(args, environ):
    path = [p for p in environ.get("PATH", "").split(os.pathsep) if p] + list(_FALLBACK_PATH)
    exe = spawn.find("ip", path)
    if exe is None:
        raise CniError(GENERIC, "CHECK needs iproute2's `ip` on the node", "install iproute2 on the node")
    code, out, err = spawn.run(exe, [exe, "-j", *args], {"PATH": os.pathsep.join(path)}, b"")
    if code != 0:
        return None, err.decode("utf-8", "replace").strip()
    return fastjson.loads(out or b"[]"), ""


def read(netns_path: str, ifname: str, environ) -> dict:
    """{"mac": str, "addresses": {"10.244.7.2/24", ...}, "routes": [{"dst", "gateway"}]} or CniError."""
    with netns.inside(netns_path):
        links, err = _ip(["addr", "show", "dev", ifname], environ)
        if links is None or not links:
            raise CniError(GENERIC, f"CHECK: interface {ifname} is missing in {netns_path}", err)
        routes = []
        for family in ("-4", "-6"):
            found, _ = _ip([family, "route", "show", "dev", ifname], environ)
            routes.extend(found or [])
    link = links[0]
    return {
        "mac": (link.get("address") or "").lower(),
        "addresses": {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])},
        "routes": [{"dst": _norm_dst(r.get("dst", "")), "gateway": r.get("gateway")} for r in routes],
    }


def _norm_dst(dst: str) -> str:
    return {"default": "default", "0.0.0.0/0": "default", "::/0": "default"}.get(dst, dst)


def mismatches(result: dict, ifname: str, netns_path: str, state: dict) -> list:
    """What the cached result promises for the pod's interface but the namespace lacks."""
    problems = []
    interfaces = result.get("interfaces") or []
    ours = {i for i, itf in enumerate(interfaces) if itf.get("name") == ifname and itf.get("sandbox")}
    for i in ours:
        mac = (interfaces[i].get("mac") or "").lower()
        if mac and mac != state["mac"]:
            problems.append(f"{ifname} has MAC {state['mac']}, the result says {mac}")
    for ip in result.get("ips") or []:
        if ip.get("interface") is not None and ip["interface"] not in ours:
            continue
        if ip.get("address") not in state["addresses"]:
            problems.append(f"address {ip.get('address')} is missing on {ifname}")
    for route in result.get("routes") or []:
        dst, gw = _norm_dst(route.get("dst", "")), route.get("gw")
        if not any(r["dst"] == dst and (gw is None or r["gateway"] == gw) for r in state["routes"]):
            problems.append(f"route to {route.get('dst')}" + (f" via {gw}" if gw else "") + f" is missing on {ifname}")
    return problems
