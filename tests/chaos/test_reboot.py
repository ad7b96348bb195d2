"""Scenario 4: a node reboots. Its namespace, processes and /run state go away, its /var/lib
state (the plugin's cache, host-local's reservations) stays; it comes back on the same address."""
import pytest

from overlayd.lab import scenarios
from overlayd.lab.scenarios import table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_node_reboot_keeps_subnet_releases_old_pods_and_converges():
    r = scenarios.node_reboot(nodes=3, pods_per_node=2)
    print(table([r["row"]]), r["timing"])
    assert r["subnet_kept"], "the rebooted node came back with another subnet"
    assert r["var_lib_kept"], "the plugin cache or host-local's reservations did not survive the reboot"
    assert all(result == "ok" for _, result in r["dels"]), f"the runtime's DELs of the old pods: {r['dels']}"
    assert [f for f in r["ipam_after_dels"] if not f.endswith("last_reserved_ip.0")] == [], \
        f"DEL left host-local reservations: {r['ipam_after_dels']}"
    assert all(r["new_pod_ips"]) and r["collisions"] == [], f"address collisions: {r['collisions']}"
    assert r["converge_s"] is not None, f"peers did not converge: {r['problems_after']}"
    assert r["ping_other_nodes"]["lost"] == 0, f"traffic between the other nodes suffered: {r['ping_other_nodes']}"
    assert r["leaks"] == [], r["leaks"]
