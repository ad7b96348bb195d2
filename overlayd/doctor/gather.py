"""Gather a node's facts: the only part of doctor that reads the world. Thin: read, record, move on.

Everything is read from where the daemon works: netlink and /proc/sys of the current network
namespace, the daemon's files, its health server, its lease store. A part that fails records its
error; the checks decide what that means.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from typing import Mapping, Optional

from subnet_lease.config import ConfigError

from ..desired import is_self
from ..netlink import AF_INET, Netlink
from ..subnet_file import read_subnet_file
from ..underlay import select_underlay
from . import probe as probe_mod
from .checks_host import CONF_EXTENSIONS
from .facts import (Binary, CniFacts, ConfFile, DoctorSettings, HealthFacts, KernelFacts, Link, NodeFacts, Port,
                    StoreFacts, UnderlayFacts)

MAX_CONF_BYTES = 1 << 20


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> DoctorSettings:
    node = (args.node_name or environ.get("NODE_NAME")) if args.kube_subnet_mgr else None
    host = args.healthz_ip
    health = None
    if args.healthz_port:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        health = f"http://{'[' + host + ']' if ':' in host else host}:{args.healthz_port}"
    return DoctorSettings(
        node=node or socket.gethostname(), subnet_file=args.subnet_file, ip_masq=args.ip_masq,
        cni_socket=args.cni_socket, health_url=health, tx_checksum_off=args.vxlan_tx_checksum_off,
        kube=bool(args.kube_subnet_mgr), renew_margin=args.subnet_lease_renew_margin * 60.0,
        cni_conf_dir=args.cni_conf_dir, cni_bin_dirs=tuple(args.cni_bin_dir or ("/opt/cni/bin",)),
        probe_timeout=args.probe_timeout)


def gather(args: argparse.Namespace, environ: Mapping[str, str]) -> NodeFacts:
    settings = settings_from_args(args, environ)
    with Netlink() as nl:
        underlay, underlay_error = _underlay(nl, args)
        store = _store(args, environ, underlay)
        kernel = _kernel(nl, store, underlay, underlay_error)
    if not settings.kube and underlay is not None:       # etcd mode: nodes are known by their address
        settings = dataclasses.replace(settings, node=f"{settings.node} ({args.public_ip or underlay.ip})")
    env_exists = os.path.exists(settings.subnet_file)
    facts = NodeFacts(settings=settings, store=store,
                      subnet_env=read_subnet_file(settings.subnet_file) if env_exists else None,
                      kernel=kernel, cni=_cni(settings), health=_health(settings.health_url))
    probes, note = _probes(facts)
    return NodeFacts(**{**facts.__dict__, "probes": tuple(probes), "probe_note": note})


def _underlay(nl: Netlink, args) -> tuple[Optional[UnderlayFacts], Optional[str]]:
    try:
        u = select_underlay(nl, ifaces=tuple(args.iface), iface_regex=tuple(args.iface_regex),
                            can_reach=args.iface_can_reach, public_ip=args.public_ip)
    except Exception as err:           # SettingsError, DatapathError: recorded, judged by the checks
        return None, str(err)
    return UnderlayFacts(u.name, u.index, u.ip, u.mtu, str(u.network)), None


def _store(args, environ, underlay: Optional[UnderlayFacts]) -> StoreFacts:
    from ..backend_flags import make_backend
    if args.kube_subnet_mgr:
        source = f"Kubernetes API {args.kube_api_url or args.kubeconfig_file or 'in-cluster'}"
    else:
        source = f"etcd {args.etcd_endpoints} prefix {args.etcd_prefix}"
    if args.kube_subnet_mgr:
        import kubernetes.client   # noqa: F401  (seconds of imports on a busy node: not the store's time)
    started = time.monotonic()

    def read():
        backend = make_backend(args, environ)
        try:
            try:
                config, config_error = backend.get_network_config(), None
            except ConfigError as err:
                config, config_error = None, str(err)
            if hasattr(backend, "leases_with_ttl"):
                leases, _ = backend.leases_with_ttl()
            else:
                leases, _ = backend.snapshot()
            if args.kube_subnet_mgr:
                name = backend.node_name()
                own = next((x for x in leases if x.node_name == name), None)
                by = f"Node {name}"
            else:
                ip = args.public_ip or (underlay.ip if underlay else None)
                own = next((x for x in leases if ip and str(x.public_ip) == ip), None)
                by = f"PublicIP {ip}"
            return StoreFacts(source, None, config, config_error, tuple(leases), own, by)
        finally:
            backend.close()

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        facts = pool.submit(read).result(timeout=args.store_timeout)
    except concurrent.futures.TimeoutError:
        facts = StoreFacts(source, f"no answer within {args.store_timeout:g}s (--store-timeout)")
    except Exception as err:
        facts = StoreFacts(source, f"{type(err).__name__}: {err}")
    finally:
        pool.shutdown(wait=False)
    return StoreFacts(**{**facts.__dict__, "elapsed": time.monotonic() - started})


def _kernel(nl: Netlink, store: StoreFacts, underlay, underlay_error) -> KernelFacts:
    vni = store.config.backend.vni if store.config else 1
    name = f"flannel.{vni}"
    sysctls = _sysctls(name)
    nat = _run(["iptables-save", "-t", "nat"])
    try:
        dev = nl.link(name)
        addrs, entries, txcsum = (), None, None
        if dev is not None:
            addrs = tuple(f"{a.ip}/{a.prefixlen}" for a in nl.addresses(dev.index))
            entries = nl.dump_entries(dev.index, AF_INET,
                                      direct_within=store.config.network if store.config else None)
            try:
                txcsum = nl.tx_checksum(dev.index)
            except Exception:
                txcsum = None
        bridge = nl.link("cni0")
        dev, bridge = _plain(dev), _plain(bridge)
    except Exception as err:
        return KernelFacts(underlay, underlay_error, name, sysctls=sysctls, nat_rules=nat, error=str(err))
    ports = ()
    if bridge is not None:
        ports = tuple(Port(p, int(_read(f"/sys/class/net/{p}/mtu") or 0))
                      for p in sorted(_listdir("/sys/class/net/cni0/brif")))
    return KernelFacts(underlay, underlay_error, name, dev, addrs, txcsum, entries, bridge, ports, sysctls, nat)


def _plain(link) -> Optional[Link]:
    return None if link is None else Link(**dataclasses.asdict(link))


def _sysctls(device: str) -> dict:
    paths = {"net.ipv4.ip_forward": "net/ipv4/ip_forward",
             "net.bridge.bridge-nf-call-iptables": "net/bridge/bridge-nf-call-iptables",
             "net.ipv4.conf.all.rp_filter": "net/ipv4/conf/all/rp_filter",
             f"net.ipv4.conf.{device}.rp_filter": f"net/ipv4/conf/{device}/rp_filter"}
    return {k: _read("/proc/sys/" + v) for k, v in paths.items()}


def _cni(s: DoctorSettings) -> CniFacts:
    files, conf_error = [], None
    try:
        for name in sorted(os.listdir(s.cni_conf_dir)):
            if not name.endswith(CONF_EXTENSIONS):
                continue
            path = os.path.join(s.cni_conf_dir, name)
            try:
                with open(path, "rb") as f:
                    files.append(ConfFile(name, f.read(MAX_CONF_BYTES).decode("utf-8", "replace")))
            except OSError as err:
                files.append(ConfFile(name, error=f"cannot read: {err.strerror}"))
    except OSError as err:
        conf_error = err.strerror or str(err)
    binaries: dict[str, Binary] = {}
    for d in s.cni_bin_dirs:
        for name in sorted(_listdir(d)):
            if name in binaries:
                continue
            path = os.path.join(d, name)
            try:
                binaries[name] = Binary(name, path, os.stat(path).st_mode)
            except OSError as err:
                binaries[name] = Binary(name, path, error=err.strerror or str(err))
    kind, sock_error = None, None
    if s.cni_socket:
        try:
            mode = os.stat(s.cni_socket).st_mode
            kind = "socket" if stat.S_ISSOCK(mode) else "not a socket"
        except FileNotFoundError:
            kind = "missing"
        if kind == "socket":
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(2.0)
            try:
                c.connect(s.cni_socket)
                kind = "socket: connect() accepted"
            except OSError as err:
                sock_error = f"connect(): {err.strerror or err}"
            finally:
                c.close()
    return CniFacts(s.cni_conf_dir, tuple(files), conf_error, s.cni_bin_dirs, tuple(binaries.values()),
                    s.cni_socket, "socket" if kind and kind.startswith("socket") else kind, sock_error)


def _health(url: Optional[str]) -> HealthFacts:
    if url is None:
        return HealthFacts(None)
    got = {}
    for path in ("healthz", "readyz", "metrics"):
        try:
            with urllib.request.urlopen(f"{url}/{path}", timeout=3) as r:
                got[path] = (r.status, r.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as err:
            got[path] = (err.code, err.read().decode("utf-8", "replace"))
        except (OSError, ValueError) as err:
            return HealthFacts(url, error=str(getattr(err, "reason", None) or err))
    metrics = got["metrics"][1] if got["metrics"][0] == 200 else None
    return HealthFacts(url, got["healthz"], got["readyz"], metrics)


def _probes(f: NodeFacts) -> tuple[list, str]:
    own, config, k = f.store.own, f.store.config, f.kernel
    if own is None or config is None or own.subnet is None:
        return [], "this node's lease is unknown"
    if k.device is None or k.underlay is None:
        return [], f"{k.device_name} or the underlay is missing"
    targets = [probe_mod.Target(p.key, str(p.public_ip), str(p.subnet.network_address), p.vtep_mac)
               for p in f.store.leases
               if not is_self(own, p) and p.subnet is not None and p.public_ip is not None and p.vtep_mac]
    if not targets:
        return [], "no peers"
    try:
        return probe_mod.probe(targets, vni=config.backend.vni, port=config.backend.port, local_ip=k.underlay.ip,
                               src_mac=k.device.mac, src_vtep_ip=str(own.subnet.network_address),
                               timeout=f.settings.probe_timeout), ""
    except OSError as err:
        return [], f"cannot send probes: {err}"


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _run(argv: list[str]) -> Optional[str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
