"""Checks of the daemon, the lease store, this node's lease and subnet.env (pure: facts in, findings out)."""
from __future__ import annotations

import ipaddress
import re
from typing import Optional

from ..subnet_file import first_host
from .facts import NodeFacts
from .report import Finding, ev, finding, ok


def daemon(f: NodeFacts) -> list[Finding]:
    h = f.health
    if h.url is None:
        return [finding("daemon", "info", "the daemon's health server is off (--healthz-port 0): "
                        "readiness, metrics and policy status were not read",
                        "run overlayd with --healthz-port (the manifests use 8471)",
                        ev("flags", "--healthz-port 0"))]
    if h.error or h.readyz is None:
        return [finding("daemon", "error", f"overlayd does not answer on {h.url}",
                        "is overlayd running on this node? look at its log "
                        "(kubectl -n kube-overlayd logs ds/overlayd -c overlayd)",
                        ev(h.url, h.error or "no answer"))]
    code, body = h.readyz
    live = ev(f"{h.url}/healthz", f"{h.healthz[0]} {h.healthz[1].strip()}") if h.healthz else None
    evidence = [ev(f"{h.url}/readyz", f"{code} {body.strip()}")] + ([live] if live else [])
    if h.healthz and h.healthz[0] != 200:
        return [finding("daemon", "error", "overlayd's loop is stuck (/healthz fails)",
                        "send it SIGUSR1 to log every thread's stack, then restart it", *evidence)]
    if code != 200:
        return [finding("daemon", "error", f"overlayd is not ready: {body.strip()}",
                        "the reason names what it waits for; see the lease-store and subnet-env checks",
                        *evidence)]
    return [ok("daemon", "overlayd is live and ready", *evidence)]


def lease_store(f: NodeFacts) -> list[Finding]:
    s = f.store
    where = ev(s.source, s.error) if s.error else ev(s.source, f"answered in {s.elapsed * 1000:.0f} ms, "
                                                              f"{len(s.leases)} lease(s)")
    if s.error:
        return [finding("lease-store", "error", "the lease store cannot be reached",
                        "check the store's address and credentials in overlayd's flags, and that the "
                        "store runs (etcdctl endpoint health / kubectl get --raw /readyz)", where)]
    if s.config_error:
        return [finding("lease-store", "error", "the network config cannot be read",
                        "write a valid net-conf.json (docs/configuration.md, net-conf.json)",
                        where, ev("network config", s.config_error))]
    if s.own is None:
        return [finding("lease-store", "error", f"the store holds no lease for this node ({s.own_by})",
                        "look at overlayd's log: it acquires (or re-creates) its lease within seconds "
                        "once the store answers", where)]
    return [ok("lease-store", f"the store answers and holds this node's lease {s.own.key}", where,
               ev("own lease", f"{s.own.key}: {s.own_by}"))]


def lease_ttl(f: NodeFacts) -> list[Finding]:
    s = f.store
    if s.error or s.own is None:
        return []
    if f.settings.kube:
        return [ok("lease-ttl", "kube mode: the node's podCIDR does not expire",
                   ev(s.source, f"Node {s.own.node_name}"))]
    own = s.own
    if own.lease_id is None:
        return [ok("lease-ttl", "a reservation (no etcd lease): it does not expire",
                   ev(s.source, f"{own.key} has no lease"))]
    detail = ev(f"{s.source} lease timetolive {own.lease_id:x}", f"TTL {own.ttl}s")
    margin = f.settings.renew_margin
    # Keep-alives hold the TTL near its full value; below the renew margin they have been failing.
    if own.ttl is not None and own.ttl < margin:
        return [finding("lease-ttl", "warning",
                        f"this node's lease expires in {own.ttl}s, less than the renew margin "
                        f"({margin:.0f}s): renewals are failing",
                        "look at overlayd's log for keep-alive errors; if the lease expires, the node's "
                        "key is removed and peers drop its routes until overlayd re-creates it",
                        detail, ev("flags", f"--subnet-lease-renew-margin {margin / 60:.0f} (minutes)"))]
    return [ok("lease-ttl", f"the lease has {own.ttl}s left", detail)]


def subnet_env(f: NodeFacts) -> list[Finding]:
    path = f.settings.subnet_file
    env = f.subnet_env
    if env is None:
        return [finding("subnet-env", "error", f"{path} does not exist: the CNI plugin cannot set up pods",
                        "overlayd writes it once it holds a lease: see the daemon and lease-store checks",
                        ev(path, "no such file"))]
    own, config = f.store.own, f.store.config
    if own is None or config is None:
        return [finding("subnet-env", "info", "not compared: the own lease or the network config is unknown",
                        "", ev(path, _env_text(env)))]
    want = {"FLANNEL_NETWORK": str(config.network) if config.network else None,
            "FLANNEL_SUBNET": str(first_host(own.subnet)) if own.subnet else None,
            "FLANNEL_IPMASQ": "true" if f.settings.ip_masq else "false"}
    if config.enable_ipv6 and own.ipv6_subnet is not None:
        want["FLANNEL_IPV6_NETWORK"] = str(config.ipv6_network)
        want["FLANNEL_IPV6_SUBNET"] = str(first_host(own.ipv6_subnet))
    wrong = {k: (env.get(k), v) for k, v in want.items() if v is not None and env.get(k) != v}
    if wrong:
        return [finding("subnet-env", "error",
                        "subnet.env disagrees with the lease: " + ", ".join(
                            f"{k}={have} (want {w})" for k, (have, w) in wrong.items()),
                        "pods would get addresses peers do not route here; overlayd rewrites the file on "
                        "its next start (restart its pod), then recreate the pods set up meanwhile",
                        ev(path, _env_text(env)), ev(f.store.source, f"own lease {own.key}"),
                        ev("flags", f"--ip-masq {'on' if f.settings.ip_masq else 'off'}"))]
    return [ok("subnet-env", "subnet.env matches the lease and the network config", ev(path, _env_text(env)))]


def policy(f: NodeFacts) -> list[Finding]:
    """NetworkPolicy sync, read from the daemon's /metrics (overlayd_policy_* series)."""
    text = f.health.metrics
    if text is None:
        return []
    series = _samples(text, "overlayd_policy_")
    source = f"{f.health.url}/metrics"
    if not series:
        return [finding("policy", "info", "not enabled (no overlayd_policy_* metrics)", "",
                        ev(source, "no overlayd_policy_* series"))]
    failures = series.get("overlayd_policy_nft_failures_total", 0.0)
    bad = series.get("overlayd_policy_bad_objects", 0.0)
    policies = series.get("overlayd_policy_policies", 0.0)
    evidence = [ev(source, f"{k} {v:g}") for k, v in sorted(series.items())
                if k in ("overlayd_policy_nft_failures_total", "overlayd_policy_bad_objects",
                         "overlayd_policy_policies")]
    if failures:
        return [finding("policy", "warning", f"{failures:g} nftables policy transaction(s) failed",
                        "look at overlayd's log (nft errors); policies may not be enforced as written",
                        *evidence)]
    if bad:
        return [finding("policy", "warning", f"{bad:g} API object(s) left out of policy enforcement",
                        "/readyz and overlayd's log name them", *evidence)]
    return [ok("policy", f"{policies:g} NetworkPolicies enforced, no sync failures", *evidence)]


def _samples(text: str, prefix: str) -> dict[str, float]:
    """Sums of the samples of every series starting with prefix, by metric name (labels summed)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m and m.group(1).startswith(prefix) and not m.group(1).endswith(("_bucket", "_created")):
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                pass
    return out


def _env_text(env: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(env.items()))


def parse_network(text: Optional[str]):
    try:
        return ipaddress.ip_interface(text) if text else None
    except ValueError:
        return None
