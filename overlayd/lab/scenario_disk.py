"""Scenario 6 (issue 14): a full or read-only disk under subnet.env, the plugin cache and host-local."""
from __future__ import annotations

import json
import os
import time

from cni_plugin.invoke import run_plugin

from . import probes
from .chaos import SmallDisk
from .cluster import Lab, Pod
from .netns import add_netns, run
from .scenario_base import Row, teardown, wait_for

# -- 6: a full or read-only disk under the node's state -------------------------------------
def cni_attempt(lab: Lab, node, pod, command: str, netconf: dict) -> dict:
    """One CNI call as the runtime makes it: {'rc', 'code', 'msg'} (rc 0: success)."""
    rc, doc, err = run_plugin(lab.plugin, command, netconf, pod.container_id, f"/var/run/netns/{pod.netns}",
                              "eth0", [os.path.dirname(lab.plugin), "/usr/lib/cni"], run_in_netns=node.netns)
    doc = doc if isinstance(doc, dict) else {}
    return {"rc": rc, "code": doc.get("code"), "msg": f"{doc.get('msg', '')} {doc.get('details', '')}".strip(),
            "ips": [i["address"] for i in doc.get("ips", [])] if rc == 0 else []}


def disk_files(root: str) -> dict:
    """Every file under root with its content problems: {'path': problem or ''} (pure reading)."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root)
            if f in (".filler", ".lock") or f.startswith(("lock", ".version-")):
                continue
            problem = ""
            try:
                with open(path) as fh:
                    text = fh.read()
            except OSError as err:
                problem = str(err)
            else:
                if ".tmp" in f or f.startswith(".subnet.env."):
                    problem = "temporary file left behind"
                elif f == "subnet.env":
                    keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line}
                    if not {"FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"} <= keys:
                        problem = f"truncated subnet.env: {text!r}"
                elif rel.startswith("cni"):
                    try:
                        json.loads(text)
                    except ValueError:
                        problem = f"corrupt cache entry: {text[:80]!r}"
                elif rel.startswith("ipam") and not f.startswith("last_reserved_ip") and not text.strip():
                    problem = "empty host-local reservation"
            found[rel] = problem
    return found


def disk_trouble(*, log=lambda m: None) -> dict:
    """subnet.env and the plugin cache on one small tmpfs, host-local's reservations on another;
    each filled, given back, made read-only and writable again, with ADD/DEL and a daemon restart
    in between. Every step's CNI result, readiness and the files' state are returned."""
    lab = Lab(log=log, daemon_args=(f"--healthz-port={probes.HEALTH_PORT}",))
    out = {"scenario": "disk full / read-only (subnet.env, CNI cache, host-local)", "steps": {}}
    disks = []
    steps = out["steps"]
    try:
        lab.up(1, 0)
        node = lab.nodes[0]
        lab.stop_daemon(node)
        state = SmallDisk(os.path.join(node.workdir, "state"))
        ipam = SmallDisk(os.path.join(node.workdir, "ipam-disk"))
        for d in (state, ipam):
            disks.append(d.mount())
        subnet_file = os.path.join(state.path, "subnet.env")
        node.extra_args = [f"--subnet-file={subnet_file}", f"--cni-data-dir={state.path}/cni"]
        lab.start_daemon(node)
        wait_for(lambda: probes.ready(node.netns), 30)
        conf = dict(node.netconf(), subnetFile=subnet_file, dataDir=f"{state.path}/cni",
                    ipam={"dataDir": ipam.path})
        pods = {}
        for j in range(1, 4):
            pods[j] = Pod(name=f"d{j}", node=node.name, netns=f"{node.netns}d{j}", container_id=f"{lab.name}-d{j}")
            add_netns(pods[j].netns, lab.cleanup)

        def step(name, command, j):
            result = cni_attempt(lab, node, pods[j], command, conf)
            result["files"] = {**{f"state/{k}": v for k, v in disk_files(state.path).items()},
                               **{f"ipam/{k}": v for k, v in disk_files(ipam.path).items()}}
            result["veths"] = len([l for l in run(["ip", "-o", "link", "show", "type", "veth"],
                                                  netns=node.netns).stdout.splitlines() if l.strip()])
            result["pod_has_eth0"] = run(["ip", "link", "show", "eth0"], netns=pods[j].netns, check=False).returncode == 0
            steps[name] = result
            return result

        step("add a (room)", "ADD", 1)
        ipam.fill()
        step("add b (host-local's disk full)", "ADD", 2)
        state.fill()
        step("add b (cache disk full too)", "ADD", 2)
        subnet_before = open(subnet_file).read()
        lab.stop_daemon(node)                    # a restart that must rewrite subnet.env (new ipmasq)
        node.extra_args.append("--ip-masq")
        lab.start_daemon(node)
        steps["daemon restart (disk full)"] = {
            "readyz": wait_for(lambda: (lambda r: r if r[0] == 503 and "No space" in r[1] else None)(
                probes.http_get(node.netns, "/readyz")), 30),
            "alive": lab.daemon_alive(node), "subnet_env_unchanged": open(subnet_file).read() == subnet_before}
        step("del a (disks full)", "DEL", 1)
        state.free()
        ipam.free()
        t0 = time.monotonic()
        steps["space back"] = {"ready": bool(wait_for(lambda: probes.ready(node.netns), 30)),
                               "ready_after_s": time.monotonic() - t0,
                               "subnet_env_new": "FLANNEL_IPMASQ=true" in open(subnet_file).read()}
        step("add b (room again)", "ADD", 2)
        state.read_only()
        ipam.read_only()
        step("add c (read-only)", "ADD", 3)
        step("del b (read-only)", "DEL", 2)
        state.read_only(False)
        ipam.read_only(False)
        step("add c (writable again)", "ADD", 3)
        step("del b (writable again)", "DEL", 2)
        out["leaks"] = [f"processes left in {node.netns}: {s}" for s in
                        [[p for p in probes.netns_pids(node.netns) if p != node.pid]] if s]
    finally:
        if lab.nodes:
            lab.stop_daemon(lab.nodes[0])
        for d in disks:
            d.unmount()
        out.setdefault("leaks", [])
        out["leaks"] = out["leaks"] + teardown(lab) + [f"mount {d.path}" for d in disks if os.path.ismount(d.path)]
    out["row"] = Row(out["scenario"], None, out["steps"].get("space back", {}).get("ready_after_s"), out["leaks"], None)
    return out
