"""Run a CNI plugin exactly as a container runtime does (for the lab, tests and benchmarks).

Not on the plugin's own start-up path, so it may use subprocess/json freely.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Optional, Sequence

DEFAULT_CNI_PATH = ("/usr/lib/cni",)


def plugin_env(command: str, container_id: Optional[str], netns_path: Optional[str], ifname: Optional[str],
               cni_path: Sequence[str], args: Optional[str] = None) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
           "CNI_PATH": os.pathsep.join(cni_path)}
    for name, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns_path),
                        ("CNI_IFNAME", ifname), ("CNI_ARGS", args)):
        if value:
            env[name] = value
    return env


def run_plugin(executable: str, command: str, netconf: dict, container_id: Optional[str] = None,
               netns_path: Optional[str] = None, ifname: Optional[str] = "eth0",
               cni_path: Optional[Sequence[str]] = None, run_in_netns: Optional[str] = None,
               args: Optional[str] = None, timeout: float = 60):
    """-> (exit code, parsed JSON stdout or its raw text ('' if empty), stderr text).

    `cni_path` defaults to [the executable's directory, /usr/lib/cni]; `run_in_netns` runs the
    plugin inside that named namespace (`ip netns exec`), as kubelet runs it on its node.
    """
    if cni_path is None:
        cni_path = [os.path.dirname(os.path.abspath(executable)), *DEFAULT_CNI_PATH]
    env = plugin_env(command, container_id, netns_path, ifname, cni_path, args)
    cmd = [executable]
    if run_in_netns:
        cmd = ["ip", "netns", "exec", run_in_netns, *cmd]
    proc = subprocess.run(cmd, input=json.dumps(netconf), capture_output=True, text=True, env=env,
                          timeout=timeout)
    out = proc.stdout.strip()
    try:
        parsed = json.loads(out) if out else ""
    except ValueError:
        parsed = out
    return proc.returncode, parsed, proc.stderr
