"""The HTTP Kubernetes API emulator the kube backend's tests use.

It moved to overlayd.lab.kube_api, because `overlayd lab up --kube` runs it as a process inside
the lab's switch namespace and tests/ is not installed; this name stays for the tests here.
"""
from overlayd.lab.kube_api import KubeEmulator, UnixApiClient, new_node

__all__ = ["KubeEmulator", "UnixApiClient", "new_node"]
