"""Every check, in report order, over one node's facts. Pure."""
from __future__ import annotations

from . import checks_datapath, checks_host, checks_store
from .facts import NodeFacts
from .report import CHECKS, Report

CHECK_FUNCTIONS = {
    "daemon": checks_store.daemon,
    "lease-store": checks_store.lease_store,
    "lease-ttl": checks_store.lease_ttl,
    "subnet-env": checks_store.subnet_env,
    "device": checks_datapath.device,
    "entries": checks_datapath.entries,
    "mtu": checks_datapath.mtu,
    "reachability": checks_datapath.reachability,
    "cni-bin": checks_host.cni_bin,
    "cni-conf": checks_host.cni_conf,
    "cni-service": checks_host.cni_service,
    "sysctls": checks_host.sysctls,
    "tx-checksum": checks_host.tx_checksum,
    "masquerade": checks_host.masquerade,
    "policy": checks_store.policy,
}
assert tuple(CHECK_FUNCTIONS) == CHECKS


def diagnose(facts: NodeFacts) -> Report:
    findings = []
    for check in CHECK_FUNCTIONS.values():
        findings += check(facts)
    return Report(facts.settings.node, tuple(findings))
