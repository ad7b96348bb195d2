"""The two things the plugin does outside its own process, behind one seam.

`LocalHost` does them from this process: the plugin as the runtime started it. The overlayd
CNI service (overlayd/cni_service.py) passes a host that asks the native front end, which the
runtime started, to do them instead, so they happen in the runtime's context, not the daemon's.
"""
from . import netns, spawn


class LocalHost:
    def run(self, plugin_type: str, path: str, env: dict, stdin: bytes):
        """Run delegate `plugin_type`, found at `path`, with env["CNI_COMMAND"], `env` and `stdin`
        -> (exit code, stdout bytes, stderr bytes); OSError if it cannot be started."""
        return spawn.run(path, [path], env, stdin)

    def interface_exists(self, netns_path: str, ifname: str) -> bool:
        """CniError(INVALID_ENVIRONMENT) if the namespace cannot be entered."""
        return netns.interface_exists(netns_path, ifname)


LOCAL = LocalHost()
