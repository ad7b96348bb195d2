"""The plugin's start-up path imports the standard library only (and none of its slow parts)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cni_plugin.invoke import plugin_env

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Run main() exactly as the launcher does, then report every module that got imported.
PROBE = (
    "import sys\n"
    f"sys.path.insert(0, {ROOT!r})\n"
    "from cni_plugin.main import main\n"
    "rc = main()\n"
    "sys.stderr.write('MODULES=' + ','.join(sorted(sys.modules)) + '\\n')\n"
    "sys.exit(rc)\n"
)
# Not forbidden by the design, but each costs milliseconds on every pod start.
SLOW = {"json", "re", "subprocess", "enum", "ipaddress", "dataclasses", "typing", "socket", "logging"}


def imported(node, command, conf, pod):
    env = plugin_env(command, "ctr-1", node.netns_path(pod), "eth0", node.runtime.cni_path)
    proc = subprocess.run(["ip", "netns", "exec", node.netns, sys.executable, "-IS", "-c", PROBE],
                          input=json.dumps(conf), capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = [l for l in proc.stderr.splitlines() if l.startswith("MODULES=")][0]
    return json.loads(proc.stdout) if proc.stdout.strip() else None, set(line[8:].split(","))


def test_add_check_del_import_only_the_standard_library(node):
    pod = node.pod()
    conf = node.runtime.overlay_conf()
    result, add_mods = imported(node, "ADD", conf, pod)
    _, check_mods = imported(node, "CHECK", dict(conf, prevResult=result), pod)
    _, del_mods = imported(node, "DEL", dict(conf, prevResult=result), pod)
    for command, mods in (("ADD", add_mods), ("CHECK", check_mods), ("DEL", del_mods)):
        foreign = {m for m in mods if m.split(".")[0] not in sys.stdlib_module_names
                   and m.split(".")[0] not in ("cni_plugin", "__main__")}
        assert not foreign, f"{command} imported non-stdlib modules: {sorted(foreign)}"
        assert not (mods & SLOW), f"{command} imported slow stdlib modules: {sorted(mods & SLOW)}"
    assert node.leftovers() == {"veths": [], "ips": [], "cache": []}
