"""CNI start-up cost: median ADD+DEL of `overlay` (with its delegate) vs bridge+host-local called directly.

Same delegate config, same node and pod namespaces, 30 rounds each, interleaved so machine load
hits every contestant alike. Contestants:
  - the native front end served by overlayd's CNI service (a node running overlayd: the target);
  - the front end with no service, so the Python plugin answers (overlayd down or restarting);
  - the self-contained bundle with no service (nodes without Python, overlayd down).
Target from issue 5: ratio <= 1.3 for the served plugin.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import sys
import time

from cni_plugin import bundle, delegate_conf, launcher, subnet_env
from cni_plugin.invoke import plugin_env
from cni_plugin.netns import inside
from overlayd.lab.cleanup import Cleanup
from overlayd.lab.netns import NETNS_DIR, add_netns, unique_token

ROUNDS = 30


def _add_del(exe: str, conf: dict, cid: str, pod_path: str, cni_path: list[str]) -> float:
    data = json.dumps(conf)
    started = time.perf_counter()
    for command in ("ADD", "DEL"):
        proc = subprocess.run([exe], input=data, capture_output=True, text=True,
                              env=plugin_env(command, cid, pod_path, "eth0", cni_path))
        if proc.returncode != 0:
            raise RuntimeError(f"{exe} {command}: {proc.stdout} {proc.stderr}")
    return time.perf_counter() - started


def main() -> None:
    token = unique_token()
    with Cleanup() as cleanup, tempfile.TemporaryDirectory(prefix="bench-cni-") as tmp:
        node = add_netns(f"ovb-{token}-node", cleanup)
        pod_path = os.path.join(NETNS_DIR, add_netns(f"ovb-{token}-pod", cleanup))
        subnet_file = os.path.join(tmp, "subnet.env")
        with open(subnet_file, "w") as f:
            f.write("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1450\n"
                    "FLANNEL_IPMASQ=true\n")
        sock = os.path.join(tmp, "cni.sock")
        served = {"cniVersion": "1.0.0", "name": f"bench-{token}", "type": "overlay", "subnetFile": subnet_file,
                  "dataDir": os.path.join(tmp, "cache"), "ipam": {"dataDir": os.path.join(tmp, "ipam")},
                  "cniSocket": sock}
        alone = dict(served, cniSocket="")
        direct = delegate_conf.build(served, subnet_env.read(subnet_file))
        direct["cniVersion"] = "1.0.0"
        lanch_dir, bundle_dir = os.path.join(tmp, "launcher"), os.path.join(tmp, "bundle")
        exe = launcher.write(lanch_dir)
        contestants = {
            "bridge+host-local direct": ("/usr/lib/cni/bridge", direct, ["/usr/lib/cni"]),
            "overlay, overlayd serving": (exe, served, [lanch_dir, "/usr/lib/cni"]),
            "overlay, Python plugin": (exe, alone, [lanch_dir, "/usr/lib/cni"]),
        }
        try:
            contestants["bundle, Python plugin"] = (bundle.build(bundle_dir), alone, [bundle_dir, "/usr/lib/cni"])
        except bundle.BundleError as err:
            print(f"bundle not measured: {err}")
        service = subprocess.Popen([sys.executable, "-m", "overlayd.cni_service", "--socket", sock,
                                    "--subnet-file", subnet_file, "--data-dir", served["dataDir"]],
                                   stderr=subprocess.DEVNULL)
        cleanup.push(f"CNI service pid {service.pid}", lambda: (service.terminate(), service.wait(10)))
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the CNI service did not start")
            time.sleep(0.05)
        times = {name: [] for name in contestants}
        with inside(os.path.join(NETNS_DIR, node)):  # plugins run in the node's namespace, as under kubelet
            for name, (exe, conf, path) in contestants.items():  # warm-up (page cache, version memo)
                _add_del(exe, conf, f"warm-{len(times[name])}", pod_path, path)
            for i in range(ROUNDS):
                for name, (exe, conf, path) in contestants.items():
                    times[name].append(_add_del(exe, conf, f"r{i}", pod_path, path))
        base = statistics.median(times["bridge+host-local direct"])
        print(f"median ADD+DEL over {ROUNDS} interleaved rounds:")
        for name, samples in times.items():
            med = statistics.median(samples)
            print(f"  {name:28s} {med * 1000:7.1f} ms   ratio {med / base:4.2f}x")
        print("target (issue 5): overlay, overlayd serving <= 1.30x of direct")


if __name__ == "__main__":
    main()
