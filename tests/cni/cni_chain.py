"""A small libcni: run a conflist's plugins in order with prevResult, as containerd/CRI-O do.

ADD runs the plugins in order, each getting the previous result as prevResult; the final
result is cached (as libcni does in /var/lib/cni/results). CHECK runs them in order with the
cached result; DEL in reverse order with it. Only capabilities a plugin declares get its
runtimeConfig.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from cni_plugin.invoke import run_plugin


class ChainError(AssertionError):
    def __init__(self, plugin: str, command: str, rc: int, out, err: str):
        super().__init__(f"{plugin} {command} failed rc={rc}: {out} {err}")
        self.plugin, self.command, self.rc, self.out, self.err = plugin, command, rc, out, err


@dataclass
class Runtime:
    conflist: dict
    overlay: str                      # path of the `overlay` executable
    node_netns: str                   # kubelet's namespace: where plugins run
    cni_path: list = field(default_factory=list)
    results: dict = field(default_factory=dict)   # (container_id, ifname) -> cached result

    def __post_init__(self):
        if not self.cni_path:
            self.cni_path = [os.path.dirname(self.overlay), "/usr/lib/cni"]

    def _conf(self, plugin: dict, prev, runtime_config: dict | None) -> dict:
        conf = dict(plugin)
        conf["cniVersion"] = self.conflist["cniVersion"]
        conf["name"] = self.conflist["name"]
        if prev is not None:
            conf["prevResult"] = prev
        caps = {k: v for k, v in (runtime_config or {}).items() if plugin.get("capabilities", {}).get(k)}
        if caps:
            conf["runtimeConfig"] = caps
        conf.pop("capabilities", None)
        return conf

    def exec(self, plugin: dict, command: str, conf: dict, container_id=None, netns=None, ifname="eth0"):
        exe = self.overlay if plugin["type"] == "overlay" else os.path.join("/usr/lib/cni", plugin["type"])
        return run_plugin(exe, command, conf, container_id, netns, ifname, cni_path=self.cni_path,
                          run_in_netns=self.node_netns)

    def add(self, container_id: str, netns: str, ifname: str = "eth0", runtime_config: dict | None = None):
        prev = None
        for plugin in self.conflist["plugins"]:
            rc, out, err = self.exec(plugin, "ADD", self._conf(plugin, prev, runtime_config),
                                     container_id, netns, ifname)
            if rc != 0:
                raise ChainError(plugin["type"], "ADD", rc, out, err)
            prev = out
        self.results[(container_id, ifname)] = prev
        return prev

    def check(self, container_id: str, netns: str, ifname: str = "eth0", runtime_config: dict | None = None,
              only: tuple = ("overlay",)):
        """CHECK in order. Debian's portmap 1.1.1 fails every CHECK of an IPv4-only pod
        (containernetworking/plugins#819, fixed later), so by default only our plugin is checked."""
        prev = self.results[(container_id, ifname)]
        for plugin in self.conflist["plugins"]:
            if only and plugin["type"] not in only:
                continue
            rc, out, err = self.exec(plugin, "CHECK", self._conf(plugin, prev, runtime_config),
                                     container_id, netns, ifname)
            if rc != 0:
                raise ChainError(plugin["type"], "CHECK", rc, out, err)

    def delete(self, container_id: str, netns: str | None, ifname: str = "eth0",
               runtime_config: dict | None = None):
        prev = self.results.get((container_id, ifname))
        for plugin in reversed(self.conflist["plugins"]):
            rc, out, err = self.exec(plugin, "DEL", self._conf(plugin, prev, runtime_config),
                                     container_id, netns, ifname)
            if rc != 0:
                raise ChainError(plugin["type"], "DEL", rc, out, err)
        self.results.pop((container_id, ifname), None)

    def overlay_conf(self) -> dict:
        """Our plugin's own config as the runtime would send it (no prevResult)."""
        return self._conf(self.conflist["plugins"][0], None, None)
