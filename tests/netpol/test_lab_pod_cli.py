"""`overlayd lab pod add/del` and `lab status --json`, as an outside check drives them: the
commands, the API objects they leave, the pod's network namespace and its served ports."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from overlayd.lab import pods as labpods

pytestmark = [pytest.mark.e2e, pytest.mark.netpol]


def overlayd(lab, *args, check=True):
    exe = os.path.join(os.path.dirname(sys.executable), "overlayd")
    from overlayd.lab.cluster import STATE_DIR
    env = dict(os.environ, OVERLAYD_LAB_STATE_DIR=STATE_DIR)       # the state this process's labs write
    proc = subprocess.run([exe, "lab", *args, "--name", lab.name], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.netpol_smoke
def test_pod_add_status_del(model_lab):
    lab = model_lab.lab
    out = overlayd(lab, "pod", "add", "--namespace", "cli-ns", "--pod", "web", "--node", "n2",
                   "--labels", "app=web,tier=front", "--port", "http:8080/TCP", "--port", "dns:53/UDP")
    doc = json.loads(out.stdout)
    assert {k: doc[k] for k in ("namespace", "name", "node")} == {"namespace": "cli-ns", "name": "web", "node": "n2"}
    assert doc["ips"] and os.path.exists(f"/var/run/netns/{doc['netns']}")

    ns = lab.api.request("GET", "/api/v1/namespaces/cli-ns")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "cli-ns"
    pod = lab.api.request("GET", "/api/v1/namespaces/cli-ns/pods/web")
    assert pod["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert pod["spec"]["nodeName"] == "n2"
    assert [(p["name"], p["containerPort"], p["protocol"]) for p in pod["spec"]["containers"][0]["ports"]] == \
        [("http", 8080, "TCP"), ("dns", 53, "UDP")]
    assert [i["ip"] for i in pod["status"]["podIPs"]] == doc["ips"]

    status = json.loads(overlayd(lab, "status", "--json").stdout)
    mine = [p for p in status["pods"] if p.get("namespace") == "cli-ns"]
    assert len(mine) == 1 and mine[0]["labels"] == {"app": "web", "tier": "front"} and mine[0]["ips"] == doc["ips"]

    # the declared ports are served from the pod's namespace: x/b on another node reaches them once
    # the engines know the new pod (a new pod is closed until its rules are in)
    for port, proto in ((8080, "TCP"), (53, "UDP")):
        seen = labpods.agent_request(model_lab.sockets["x/b"], {"op": "watch", "target": [doc["ips"][0], port, proto],
                                                              "want": True, "deadline": model_lab.deadline},
                                     timeout=model_lab.deadline + 10)
        assert seen["at"] is not None, f"x/b never reached cli-ns/web on {port}/{proto}"

    overlayd(lab, "pod", "del", "--namespace", "cli-ns", "--pod", "web")
    assert not os.path.exists(f"/var/run/netns/{doc['netns']}")
    with pytest.raises(Exception) as err:
        lab.api.request("GET", "/api/v1/namespaces/cli-ns/pods/web")
    assert getattr(err.value, "status", None) == 404


@pytest.mark.netpol_smoke
@pytest.mark.parametrize("args, field", [
    (["--port", "http80"], "--port"),
    (["--port", "http:80/ICMP"], "--port"),
    (["--labels", "app"], "--labels"),
    (["--node", "n9"], "--node"),
])
def test_pod_add_bad_input_names_the_field(model_lab, args, field):
    base = {"--namespace": "bad", "--pod": "p", "--node": "n1"}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    proc = overlayd(model_lab.lab, "pod", "add", *flat, check=False)
    assert proc.returncode == 1
    assert field in proc.stderr
    assert not any(p.namespace == "bad" for p in type(model_lab.lab).load(model_lab.lab.name).pods)


@pytest.mark.netpol_smoke
def test_allow_http_demo(model_lab, capsys):
    """What `overlayd lab demo --network-policy` shows, on the suite's lab: allow-http before and after."""
    from overlayd.lab import policy_demo
    lab = model_lab.lab
    try:
        assert policy_demo.run(lab, lambda m: None) == 0
        out = capsys.readouterr().out
        assert "allow-http enforced" in out
        after = out[out.index("after allow-http: connections to port 80/TCP"):]
        rows = {line.split()[0]: line.split()[1:] for line in after.splitlines()[2:6]}
        assert rows["other"][0] == "denied" and rows["frontend"][0] == "ok" and rows["frontend-2"][0] == "ok"
    finally:
        lab.api.request("DELETE", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies")
        for name, *_ in policy_demo.DEMO_PODS:
            if labpods.find(lab, "default", name):
                labpods.delete(lab, "default", name)
