"""Checks of the node around the overlay: CNI files and service, sysctls, tx checksum, masquerade (pure)."""
from __future__ import annotations

import json
import os
import re
import stat
from typing import Optional

from .facts import ConfFile, NodeFacts
from .report import Finding, ev, finding, ok

CONF_EXTENSIONS = (".conf", ".conflist", ".json")     # what libcni loads, in name order


def parse_conf(f: ConfFile) -> tuple[Optional[dict], Optional[str]]:
    """(the config as a conflist-shaped dict, None) or (None, why it is not a usable CNI config)."""
    if f.error is not None:
        return None, f.error
    try:
        doc = json.loads(f.text)
    except ValueError as err:
        return None, f"not JSON: {err}"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    if "plugins" in doc:
        if not isinstance(doc["plugins"], list) or not doc["plugins"]:
            return None, "`plugins` is not a non-empty list"
        if not all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in doc["plugins"]):
            return None, "a plugin without a `type`"
    elif isinstance(doc.get("type"), str):
        doc = {"cniVersion": doc.get("cniVersion"), "name": doc.get("name"), "plugins": [doc]}
    else:
        return None, "neither `plugins` nor `type`"
    if not doc.get("name"):
        return None, "no `name`"
    return doc, None


def is_ours(doc: dict) -> bool:
    return any(p.get("type") == "overlay" for p in doc["plugins"])


def needed_binaries(doc: dict) -> list[tuple[str, str]]:
    """(binary, why) for every plugin the config runs, with the delegates the overlay plugin runs."""
    out = []
    for p in doc["plugins"]:
        out.append((p["type"], "plugin"))
        if p["type"] == "overlay":
            delegate = p.get("delegate") if isinstance(p.get("delegate"), dict) else {}
            out.append((delegate.get("type", "bridge"), "the overlay plugin's delegate"))
            ipam = p.get("ipam") if isinstance(p.get("ipam"), dict) else {}
            out.append((ipam.get("type", "host-local"), "the delegate's IPAM"))
    seen, unique = set(), []
    for name, why in out:
        if name not in seen:
            seen.add(name)
            unique.append((name, why))
    return unique


def _configs(f: NodeFacts) -> list[tuple[ConfFile, Optional[dict], Optional[str]]]:
    return [(c, *parse_conf(c)) for c in f.cni.files]


def ours(f: NodeFacts) -> Optional[tuple[ConfFile, dict]]:
    for c, doc, _ in _configs(f):
        if doc is not None and is_ours(doc):
            return c, doc
    return None


def cni_conf(f: NodeFacts) -> list[Finding]:
    c = f.cni
    if c.conf_dir_error:
        return [finding("cni-conf", "error", f"the CNI conf dir {c.conf_dir} cannot be read",
                        "the install-cni init container writes it: look at its log", ev(c.conf_dir, c.conf_dir_error))]
    parsed = _configs(f)
    listing = ev(c.conf_dir, ", ".join(x.name for x in c.files) or "empty")
    mine = ours(f)
    if mine is None:
        return [finding("cni-conf", "error", f"no overlay CNI config in {c.conf_dir}: the runtime cannot set up pods",
                        "run overlayd install-cni (the DaemonSet's init container) or restart the DaemonSet pod",
                        listing)]
    conf, doc = mine
    out = []
    before = True
    for file, parsed_doc, error in parsed:
        if file is conf:
            before = False
            continue
        where = ev(os.path.join(c.conf_dir, file.name), error or f"type(s) {', '.join(p['type'] for p in parsed_doc['plugins'])}")
        if error:
            out.append(finding("cni-conf", "warning", f"{file.name} is not a usable CNI config ({error})",
                               f"remove {os.path.join(c.conf_dir, file.name)}; some runtimes (containerd) "
                               "refuse the whole directory when a file sorts before theirs and fails to parse",
                               where))
        elif before:
            out.append(finding("cni-conf", "warning", f"{file.name} sorts before {conf.name}: the runtime "
                               f"uses it, not ours", f"remove {os.path.join(c.conf_dir, file.name)} (a leftover, "
                               "e.g. flannel's after a migration); the runtime picks the first config by name",
                               where, listing))
        elif is_ours(parsed_doc):
            out.append(finding("cni-conf", "warning", f"a second overlay config {file.name} after {conf.name}",
                               f"remove {os.path.join(c.conf_dir, file.name)}", where))
        else:
            out.append(finding("cni-conf", "info", f"{file.name} sorts after {conf.name} and is not used", "",
                               where))
    plugin = next(p for p in doc["plugins"] if p.get("type") == "overlay")
    here = ev(os.path.join(c.conf_dir, conf.name), json.dumps(plugin, sort_keys=True))
    subnet_file = plugin.get("subnetFile", "/run/flannel/subnet.env")
    if subnet_file != f.settings.subnet_file:
        out.append(finding("cni-conf", "error", f"the plugin reads {subnet_file}, overlayd writes "
                           f"{f.settings.subnet_file}", "make the conflist's subnetFile and --subnet-file the same",
                           here))
    sock = plugin.get("cniSocket", "/run/flannel/cni.sock")
    if f.settings.cni_socket and sock != f.settings.cni_socket:
        out.append(finding("cni-conf", "warning", f"the plugin asks {sock or 'no socket'}, overlayd serves "
                           f"{f.settings.cni_socket}: every pod runs the slower fallback plugin",
                           "make the conflist's cniSocket and --cni-socket the same", here))
    if not [x for x in out if x.severity in ("warning", "error")]:
        out.insert(0, ok("cni-conf", f"{conf.name} is the one active config, and it is ours", listing, here))
    return out


def cni_bin(f: NodeFacts) -> list[Finding]:
    mine = ours(f)
    if mine is None:
        return []
    conf, doc = mine
    found = {b.name: b for b in f.cni.binaries}
    dirs = ":".join(f.cni.bin_dirs)
    bad, seen = [], []
    for name, why in needed_binaries(doc):
        b = found.get(name)
        if b is None or b.path is None:
            bad.append(ev(dirs, f"{name} ({why}): not found"))
        elif b.error or b.mode is None or not stat.S_ISREG(b.mode):
            bad.append(ev(b.path, f"{name} ({why}): {b.error or 'not a regular file'}"))
        elif not b.mode & 0o111:
            bad.append(ev(b.path, f"{name} ({why}): not executable (mode {stat.filemode(b.mode)})"))
        else:
            seen.append(f"{b.path} {stat.filemode(b.mode)}")
    if bad:
        return [finding("cni-bin", "error", f"{len(bad)} plugin binar{'y' if len(bad) == 1 else 'ies'} "
                        f"{conf.name} needs {'is' if len(bad) == 1 else 'are'} missing or not executable: "
                        + ", ".join(e.detail.split(' (')[0] for e in bad),
                        "the DaemonSet's init containers install overlay, bridge, host-local, portmap and "
                        "loopback into the bin dir: restart the DaemonSet pod, or install "
                        "containernetworking-plugins", *bad)]
    return [ok("cni-bin", f"every binary {conf.name} needs is there and executable",
               ev(dirs, "; ".join(seen)))]


def cni_service(f: NodeFacts) -> list[Finding]:
    c = f.cni
    if not f.settings.cni_socket:
        return [finding("cni-service", "info", "the CNI service is off (--cni-socket ''): every pod runs the "
                        "fallback plugin", "", ev("flags", "--cni-socket ''"))]
    where = ev(c.socket_path, c.socket_error or c.socket_kind or "?")
    if c.socket_kind != "socket" or c.socket_error:
        return [finding("cni-service", "warning", f"the CNI service does not answer on {c.socket_path}: pods are "
                        "set up by the slower fallback plugin", "restart overlayd on this node; its log says "
                        "why the service is off", where)]
    return [ok("cni-service", f"the CNI service accepts connections on {c.socket_path}", where)]


def sysctls(f: NodeFacts) -> list[Finding]:
    s, dev = f.kernel.sysctls, f.kernel.device_name
    src = "/proc/sys/net"
    out = []
    fwd = s.get("net.ipv4.ip_forward")
    if fwd != "1":
        out.append(finding("sysctls", "error", f"net.ipv4.ip_forward is {fwd}: the node does not route pod traffic",
                           "sysctl -w net.ipv4.ip_forward=1 (and persist it in /etc/sysctl.d)",
                           ev(src, f"net.ipv4.ip_forward = {fwd}")))
    nf = s.get("net.bridge.bridge-nf-call-iptables")
    if nf is None:
        out.append(finding("sysctls", "warning", "br_netfilter is not loaded: kube-proxy's rules do not see "
                           "traffic between pods on one bridge (Services to a pod on the same node fail)",
                           "modprobe br_netfilter (and list it in /etc/modules-load.d)",
                           ev(src, "net.bridge.bridge-nf-call-iptables: absent")))
    elif nf != "1":
        out.append(finding("sysctls", "warning", f"net.bridge.bridge-nf-call-iptables is {nf}: kube-proxy's rules "
                           "do not see bridged pod traffic", "sysctl -w net.bridge.bridge-nf-call-iptables=1",
                           ev(src, f"net.bridge.bridge-nf-call-iptables = {nf}")))
    rp_all, rp_dev = s.get("net.ipv4.conf.all.rp_filter"), s.get(f"net.ipv4.conf.{dev}.rp_filter")
    effective = max(int(x) for x in (rp_all or "0", rp_dev or "0") if x.isdigit())
    if effective == 1:
        out.append(finding("sysctls", "warning", f"strict rp_filter on {dev}: packets from pods whose subnet is "
                           "not routed back through it (during convergence, DirectRouting) are dropped",
                           f"sysctl -w net.ipv4.conf.{dev.replace('.', '/')}.rp_filter=2 (loose), and "
                           "net.ipv4.conf.all.rp_filter to 0 or 2",
                           ev(src, f"net.ipv4.conf.all.rp_filter = {rp_all}, net.ipv4.conf.{dev}.rp_filter = {rp_dev}")))
    if out:
        return out
    return [ok("sysctls", "ip_forward on, bridge-nf-call-iptables on, rp_filter not strict on " + dev,
               ev(src, ", ".join(f"{k} = {v}" for k, v in sorted(s.items()))))]


def tx_checksum(f: NodeFacts) -> list[Finding]:
    k = f.kernel
    if k.device is None or k.tx_checksum is None:
        return []
    where = ev(f"ethtool ETHTOOL_GTXCSUM {k.device_name}", "on" if k.tx_checksum else "off")
    flag = ev("flags", "--vxlan-tx-checksum-off " + ("on" if f.settings.tx_checksum_off else "off"))
    if f.settings.tx_checksum_off and k.tx_checksum:
        return [finding("tx-checksum", "error", f"the workaround is configured but {k.device_name} offloads tx "
                        "checksums again", "overlayd turns it off on every reconcile; restart overlayd if it "
                        "stays on, and see whether something else (a NIC tool, udev) turns it back on",
                        where, flag)]
    if k.tx_checksum:
        return [finding("tx-checksum", "info", f"{k.device_name} offloads tx checksums; if Service traffic to "
                        "other nodes stalls or is dropped (flannel #2152), run overlayd with "
                        "--vxlan-tx-checksum-off", "", where, flag)]
    return [ok("tx-checksum", f"tx checksum offload is off on {k.device_name} (the flannel #2152 workaround)",
               where, flag)]


def masquerade(f: NodeFacts) -> list[Finding]:
    env = f.subnet_env or {}
    mine = ours(f)
    delegate = {}
    if mine is not None:
        plugin = next(p for p in mine[1]["plugins"] if p.get("type") == "overlay")
        delegate = plugin.get("delegate") if isinstance(plugin.get("delegate"), dict) else {}
    ipmasq = env.get("FLANNEL_IPMASQ") == "true"
    bridge_masq = delegate.get("ipMasq", not ipmasq)
    rules = _pod_masquerade_rules(f.kernel.nat_rules or "")
    evidence = [ev(f.settings.subnet_file, f"FLANNEL_IPMASQ={env.get('FLANNEL_IPMASQ')}"),
                ev(f"{f.cni.conf_dir}/{mine[0].name}" if mine else f.cni.conf_dir,
                   f"delegate ipMasq {json.dumps(delegate['ipMasq']) if 'ipMasq' in delegate else 'unset'}"),
                ev("iptables-save -t nat", f"{len(rules)} CNI MASQUERADE rule(s) for pods")]
    if bridge_masq or rules:
        why = ("new pods: the bridge delegate masquerades everything leaving the pod's own /24" if bridge_masq
               else f"{len(rules)} existing pod(s) still have the bridge's MASQUERADE rule")
        return [finding("masquerade", "warning", "pod-to-pod traffic across nodes is SNATed to the node's "
                        f"address ({why}): peers and NetworkPolicies see the node, not the pod",
                        "run overlayd with --ip-masq (its rules keep the pod network's addresses) and leave "
                        "the delegate's ipMasq unset; pods created before keep their rules until recreated",
                        *evidence, more=[ev("iptables-save -t nat", r) for r in rules[:3]])]
    return [ok("masquerade", "pod-to-pod traffic keeps pod addresses" + (" (overlayd masquerades only traffic "
               "leaving the pod network)" if f.settings.ip_masq else ""), *evidence)]


def _pod_masquerade_rules(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith("-A CNI-") and re.search(r"-j MASQUERADE\b", line)]
