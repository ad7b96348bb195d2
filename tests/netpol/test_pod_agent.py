"""The pod agent and `lab pod add/del` wiring, on an etcd-mode lab (no API objects there): real
namespaces, the real CNI plugin, real packets. TCP and UDP by connections, SCTP by crafted INITs."""
from __future__ import annotations

import os
import struct

import pytest

from overlayd.lab import pod_agent, pods as labpods
from overlayd.lab.cluster import Lab
from overlayd.lab.netns import LabError

pytestmark = [pytest.mark.e2e, pytest.mark.netpol]


def test_crc32c_known_answer():
    # RFC 3720 B.4: 32 bytes of zeros
    assert pod_agent.crc32c(bytes(32)) == 0x8A9136AA
    init = pod_agent.sctp_init(40000, 80, 0x1234)
    assert pod_agent.parse_sctp_init(init) == (80, 0x1234)
    assert struct.unpack("!H", init[2:4])[0] == 80


@pytest.fixture(scope="module")
def etcd_lab():
    lab = Lab()
    try:
        lab.up(2, 0)
        assert lab.wait_converged(30)
        yield lab
    finally:
        lab.down()


def test_pods_serve_and_probe_across_nodes(etcd_lab):
    lab = etcd_lab
    a = labpods.add(lab, labpods.PodSpec("t1", "a", "n1", {"app": "a"}, [("http", 8080, "TCP"), ("q", 5353, "UDP")]))
    b = labpods.add(lab, labpods.PodSpec("t1", "b", "n2", {}, []))
    reply = labpods.agent_request(b.agent_socket, {"op": "probe", "timeout": 2, "targets": [
        [a.ip, 8080, "TCP"], [a.ip, 5353, "UDP"], [a.ip, 80, "TCP"], [a.ip, 81, "UDP"], [a.ip, 9999, "TCP"]]})
    assert [r and r.split(" ")[0] for r in reply["results"]] == ["t1/a", "t1/a", "t1/a", "t1/a", None]
    labpods.agent_request(a.agent_socket, {"op": "sctp_seen"})
    labpods.agent_request(b.agent_socket, {"op": "sctp_send", "targets": [[a.ip, 81, 777]]})
    for _ in range(50):
        seen = labpods.agent_request(a.agent_socket, {"op": "sctp_seen"})["seen"]
        if seen:
            break
    # (the source address is the subject of the policy suite: without policy, the bridge's ipMasq
    # may rewrite cross-node traffic to the node's address)
    assert [s[1:] for s in seen] == [[81, 777]]

    with pytest.raises(LabError, match="exists already"):
        labpods.add(lab, labpods.PodSpec("t1", "a", "n1"))
    loaded = Lab.load(lab.name)
    assert {(p.namespace, p.name) for p in loaded.pods} == {("t1", "a"), ("t1", "b")}
    labpods.delete(loaded, "t1", "a")
    assert not os.path.exists(f"/var/run/netns/{a.netns}")
    assert not os.path.exists(f"/proc/{a.agent_pid}")
    assert [(p.namespace, p.name) for p in Lab.load(lab.name).pods] == [("t1", "b")]


@pytest.mark.parametrize("text", ["http80", "http:80/ICMP", "http:0/TCP", "Bad_Name:80/TCP"])
def test_bad_port_names_the_flag(text):
    with pytest.raises(LabError, match="--port"):
        labpods.parse_port(text)


def test_bad_labels_and_names():
    with pytest.raises(LabError, match="--labels"):
        labpods.parse_labels("app")
    assert labpods.parse_labels("app=web, tier=front") == {"app": "web", "tier": "front"}
    with pytest.raises(LabError, match="--namespace"):
        labpods.validate(labpods.PodSpec("Bad_NS", "p", "n1"), ["n1"])
    with pytest.raises(LabError, match="--node 'n4'"):
        labpods.validate(labpods.PodSpec("ns", "p", "n4"), ["n1", "n2"])


def test_watch_and_connect_rate(etcd_lab):
    lab = etcd_lab
    a = labpods.add(lab, labpods.PodSpec("t2", "a", "n1", {}, []))
    b = labpods.add(lab, labpods.PodSpec("t2", "b", "n2", {}, []))
    try:
        allowed = labpods.agent_request(b.agent_socket, {"op": "watch", "target": [a.ip, 80, "TCP"], "want": True,
                                                        "deadline": 5})
        assert allowed["at"] is not None and allowed["attempts"] >= 4
        # nothing listens on 9: every attempt is refused, so "denied" is seen at once
        refused = labpods.agent_request(b.agent_socket, {"op": "watch", "target": [a.ip, 9, "TCP"], "want": False,
                                                        "deadline": 5})
        assert refused["at"] is not None
        rate = labpods.agent_request(b.agent_socket, {"op": "connect_rate", "target": [a.ip, 80], "seconds": 0.5,
                                                     "parallel": 2})
        assert rate["ok"] > 10 and rate["failed"] == 0
    finally:
        labpods.delete(lab, "t2", "a")
        labpods.delete(lab, "t2", "b")
