"""The daemon's start path imports only the pyroute2 modules it uses (overlayd.netlink registers
the package without running its __init__), and the rest of pyroute2 still imports on demand."""
import subprocess
import sys

PROBE = """
import sys
import overlayd.daemon_main, overlayd.daemon
loaded = sorted(m for m in sys.modules if m.startswith("pyroute2"))
print(len(loaded), any(m.startswith(("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.plan9")) for m in loaded))
from pyroute2 import Conntrack, IPRoute        # names of the real package __init__
from pyroute2.iproute.linux import IPRoute as Linux
import pyroute2
print(Conntrack.__name__, IPRoute is Linux, pyroute2.__version__ != "")
"""


def test_start_path_skips_pyroute2s_package_init_and_the_rest_still_imports():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    count, heavy, name, same, version = out
    assert heavy == "False", out          # no NDB, IPDB, plan9... on the start path
    assert int(count) < 130, out          # the full package loads ~165 modules
    assert (name, same, version) == ("Conntrack", "True", "True")
