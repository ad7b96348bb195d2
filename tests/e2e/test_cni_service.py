"""Issue 5 end to end: pods are wired through overlayd's CNI service, and still when overlayd is down.

The lab's runtime runs the native front end in each node's namespace for every pod, exactly as
kubelet would; the node's overlayd serves ADD/DEL on its --cni-socket. The counters on /metrics
say who answered.
"""
import os
import signal

from prometheus_client.parser import text_string_to_metric_families

from overlayd.lab.netns import run

from .conftest import wait_until

HEALTH = ("--healthz-port=8471", "--healthz-ip=127.0.0.1")


def served(lab, node, command="ADD", result="ok"):
    """The node's count of CNI requests with that result; None while /metrics does not answer."""
    proc = run(["/usr/bin/python3", "-c", "import urllib.request\n"
                "print(urllib.request.urlopen('http://127.0.0.1:8471/metrics',timeout=5).read().decode())"],
               netns=node.netns, check=False)
    if proc.returncode != 0:
        return None
    for fam in text_string_to_metric_families(proc.stdout):
        for s in fam.samples:
            if s.name == "overlayd_cni_requests_total" and s.labels == {"command": command, "result": result}:
                return s.value
    return 0.0


def test_pods_are_served_by_overlayd_and_still_wired_while_it_is_down(make_lab):
    lab = make_lab(2, 1, daemon_args=HEALTH)
    assert lab.wait_converged(30)
    n1, n2 = lab.node("n1"), lab.node("n2")
    assert served(lab, n1) == 1 and served(lab, n2) == 1          # the lab's pods went through the service
    assert os.stat(n1.cni_socket).st_mode & 0o777 == 0o600
    far = next(p for p in lab.pods if p.node == "n2")

    lab.stop_daemon(n1, signal.SIGKILL)                              # a crash: the socket file stays behind
    assert os.path.exists(n1.cni_socket)
    alone = lab.add_pod(n1, 2)                                       # the Python plugin answers
    assert lab.ping(alone, far.ip, count=3, timeout=5)

    lab.start_daemon(n1)
    assert wait_until(lambda: served(lab, n1, "ADD", "ok") == 0 and lab.routes_converged(), 30)
    again = lab.add_pod(n1, 3)
    assert served(lab, n1) == 1                                      # the restarted daemon serves again
    assert lab.ping(again, far.ip, count=3, timeout=5)
    lab.cni(n1, "DEL", alone)                                        # a pod added without the service
    assert served(lab, n1, "DEL", "ok") == 1
    assert not any(name.startswith(alone.container_id) for name in os.listdir(os.path.join(n1.workdir, "cni")))
