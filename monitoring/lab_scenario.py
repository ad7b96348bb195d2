"""The lab run behind docs/img/panels.png: things that move the dashboard's panels, a minute apart.

    .venv/bin/python monitoring/lab_scenario.py           # prints the lab's name, leaves it up
    python3 monitoring/render_panels.py --lab NAME --minutes 7
    overlayd lab down --name NAME

3 nodes with Prometheus; then pods added and removed (CNI requests), a fourth node joining and
leaving (lease events on every node), a peer's route deleted by hand on n1 (drift, repaired by the
next resync, every 30 s here).
"""
from __future__ import annotations

import time

from overlayd.lab.cluster import Lab
from overlayd.lab.netns import ip


def main() -> None:
    lab = Lab(daemon_args=("--ip-masq", "--resync=30"), prometheus=True, log=print)
    lab.up(3, 1)
    print(lab.name, flush=True)
    time.sleep(60)
    for round_ in range(2, 5):                       # CNI ADDs ...
        for node in lab.nodes:
            lab.add_pod(node, round_)
        time.sleep(10)
    lab.save_state()
    time.sleep(40)
    for pod in [p for p in lab.pods if not p.name.endswith("p1")]:     # ... and DELs
        lab.cni(lab.node(pod.node), "DEL", pod)
    lab.pods = [p for p in lab.pods if p.name.endswith("p1")]
    lab.save_state()
    time.sleep(50)
    n4 = lab.add_node(4)                             # a node joins: a lease event on every node
    lab.start_daemon(n4)
    lab.wait_for_subnet_file(n4)
    lab.save_state()
    time.sleep(60)
    n1 = lab.node("n1")                              # drift: a route deleted behind the daemon's back
    ip("route", "del", lab.subnets()["n2"].rsplit(".", 1)[0] + ".0/24", netns=n1.netns)
    time.sleep(60)
    lab.stop_daemon(n4)                              # the node leaves: its lease is revoked
    key = [k for k in lab.etcd.etcdctl("get", "--prefix", "/coreos.com/network/subnets", "--keys-only").stdout.split()
           if lab.subnets()["n4"].rsplit(".", 1)[0] + ".0-24" in k]
    for k in key:
        lab.etcd.etcdctl("del", k)
    lab.save_state()
    time.sleep(60)


if __name__ == "__main__":
    main()
