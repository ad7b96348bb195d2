"""The two things the plugin does outside its own process, behind one seam.

`LocalHost` does them from this process: the plugin as the runtime started it. The overlayd
CNI service (overlayd/cni_service.py) passes a host that asks the native front end, which the
runtime started, to do them instead, so they happen in the runtime's context, not the daemon's.
"""
from . import netns, spawn


class LocalHost:
    def run(self, path: str, argv, env: dict, stdin: bytes):
        """-> (exit code, stdout bytes, stderr bytes); OSError if it cannot be started."""
        return spawn.run(path, argv, env, stdin)

    def interface_exists(self, netns_path: str, ifname: str) -> bool:
        """CniError(INVALID_ENVIRONMENT) if the namespace cannot be entered."""
        return netns.interface_exists(netns_path, ifname)


LOCAL = LocalHost()
