"""Drives the x/y/z × a/b/c model in a lab: pods through `overlayd.lab.pods` (what
`overlayd lab pod add` does), policies and labels through the real API, and reachability through
the pod agents' probes (real packets between the pods' network namespaces). What is common with a
real cluster's run (state, steps, waiting until the kernel agrees) is driver.ModelDriver.
"""
from __future__ import annotations

import concurrent.futures
import os
import random
import time
from typing import Optional

from overlayd.lab import pods as labpods

from .driver import ModelDriver
from .model import container_ports, default_pod_labels, node_for, pod_keys

NP_PATH = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"


class ModelLab(ModelDriver):
    def __init__(self, lab, *, timeout: float = 0.25, deadline: float = float(os.environ.get("NETPOL_DEADLINE", "90"))):
        super().__init__(timeout=timeout, deadline=deadline)
        self.lab = lab
        self.sockets: dict = {}
        self.families = (4, 6) if lab.dual_stack else (4,)

    # -- set-up ---------------------------------------------------------------------------------
    def deploy(self) -> "ModelLab":
        keys = pod_keys()
        for key in keys:
            ns, name = key.split("/")
            spec = labpods.PodSpec(ns, name, node_for(key, len(self.lab.nodes)), default_pod_labels(key),
                                   container_ports())
            pod = labpods.add(self.lab, spec)
            self.ips[key] = tuple(a for a in (pod.ip, pod.ip6) if a)
            self.sockets[key] = pod.agent_socket
            self.nodes[key] = pod.node
        return self

    @property
    def api(self):
        return self.lab.api

    # -- writing to the API (driver.ModelDriver's hooks) ---------------------------------------------
    def _write_policy(self, policy: dict) -> None:
        ns, name = policy["metadata"]["namespace"], policy["metadata"]["name"]
        path = NP_PATH.format(ns=ns)
        try:
            self.api.request("POST", path, policy)
        except Exception as err:
            if getattr(err, "status", None) != 409:
                raise
            self.api.request("PUT", f"{path}/{name}", policy)

    def _delete_policy(self, ns: str, name: str) -> None:
        self.api.request("DELETE", f"{NP_PATH.format(ns=ns)}/{name}")

    def _delete_policies(self, ns: str) -> None:
        self.api.request("DELETE", NP_PATH.format(ns=ns))

    def _write_pod_labels(self, key: str, labels: dict) -> None:
        ns, name = key.split("/")
        labpods.set_labels(self.lab, ns, name, labels)

    def _write_ns_labels(self, ns: str, labels: dict) -> None:
        labpods.set_namespace_labels(self.lab, ns, labels)

    # -- probing --------------------------------------------------------------------------------
    def _addr(self, key: str, family: int) -> str:
        return next(a for a in self.ips[key] if (":" in a) == (family == 6))

    def probe(self, checks: list[tuple], timeout: Optional[float] = None) -> dict:
        """checks: [(port, proto, family)] -> {(port, proto, family): {(src, dst): bool}}, one round."""
        timeout = timeout or self.timeout
        keys = pod_keys()
        out = {c: {} for c in checks}
        stream = [c for c in checks if c[1] in ("TCP", "UDP")]
        sctp = [c for c in checks if c[1] == "SCTP"]

        def from_source(src):
            targets = [(dst, c) for c in stream for dst in keys if dst != src]
            if not targets:
                return src, []
            reply = labpods.agent_request(self.sockets[src], {
                "op": "probe", "timeout": timeout,
                "targets": [[self._addr(dst, c[2]), c[0], c[1]] for dst, c in targets]})
            return src, [(dst, c, (answer or "").split(" ")[0] == dst) for (dst, c), answer in zip(targets, reply["results"])]

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(keys)) as pool:
            for src, results in pool.map(from_source, keys):
                for dst, c, ok in results:
                    out[c][(src, dst)] = ok
        if sctp:
            self._probe_sctp(sctp, out, timeout)
        return out

    def seen_sources(self, port: int = 80, proto: str = "TCP", family: int = 4) -> dict:
        """{(src, dst): the source address dst's server saw} over every pair, one round."""
        out = {}
        for src in pod_keys():
            dsts = [d for d in pod_keys() if d != src]
            reply = labpods.agent_request(self.sockets[src], {"op": "probe", "timeout": 2.0, "targets": [
                [self._addr(d, family), port, proto] for d in dsts]})
            for d, answer in zip(dsts, reply["results"]):
                out[(src, d)] = answer.split(" ")[1] if answer else None
        return out

    def _probe_sctp(self, checks: list[tuple], out: dict, timeout: float) -> None:
        """Crafted SCTP INITs (no SCTP sockets on this kernel): a cell is allowed when the
        destination pod's raw socket saw the INIT with the probe's tag."""
        keys = pod_keys()
        tags = {}
        tag_iter = iter(random.sample(range(1, 2 ** 31), len(keys) * len(keys) * len(checks)))
        for key in keys:                                       # drop what earlier rounds left
            labpods.agent_request(self.sockets[key], {"op": "sctp_seen"})
        for src in keys:
            targets = []
            for c in checks:
                for dst in keys:
                    if dst != src:
                        tag = next(tag_iter)
                        tags[tag] = (c, src, dst)
                        targets.append([self._addr(dst, c[2]), c[0], tag])
            labpods.agent_request(self.sockets[src], {"op": "sctp_send", "targets": targets})
        for c, src, dst in tags.values():
            out[c][(src, dst)] = False
        time.sleep(min(timeout, 0.3))      # packets in flight; the answer is what arrived, not a wait on state
        for dst in keys:
            for src_ip, port, tag in labpods.agent_request(self.sockets[dst], {"op": "sctp_seen"})["seen"]:
                if tag in tags and tags[tag][2] == dst:
                    c, src, _ = tags[tag]
                    out[c][(src, dst)] = True
