"""The daemon's start path imports no pyroute2 module at all: links, addresses, route lookups and
the link watcher go over overlayd's own rtnetlink sockets (overlayd/netlink_links.py, Wire), so
the ~0.1 s and ~6.6 MB pyroute2 cost at every start are gone."""
import subprocess
import sys

PROBE = """
import sys
import overlayd.daemon_main, overlayd.daemon, overlayd.datapath, overlayd.netlink
print(sorted(m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")))
"""


def test_the_daemons_start_path_loads_no_pyroute2_module():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
