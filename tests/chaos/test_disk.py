"""Scenario 6: subnet.env and the plugin cache on one small tmpfs, host-local's directory on another;
full, then read-only, then given back."""
import pytest

from overlayd.lab import scenarios
from overlayd.lab.scenarios import table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

IO_FAILURE = 5


def test_full_or_read_only_disk_gives_clear_errors_no_torn_files_and_recovers():
    r = scenarios.disk_trouble()
    print(table([r["row"]]))
    s = r["steps"]
    for name, step in s.items():
        for path, problem in step.get("files", {}).items():
            assert not problem, f"after {name!r}: {path}: {problem}"
    assert s["add a (room)"]["rc"] == 0
    # host-local cannot write its reservation: its own error, passed through, nothing half-done.
    b = s["add b (host-local's disk full)"]
    assert b["rc"] != 0 and "no space left on device" in b["msg"].lower(), b
    assert not b["pod_has_eth0"] and b["veths"] == s["add a (room)"]["veths"], "the failed ADD left links behind"
    before = set(s["add a (room)"]["files"])
    assert set(b["files"]) == before, f"the failed ADD left files: {sorted(set(b['files']) - before)}"
    # Our cache cannot be written: CNI code 5 (I/O failure), naming the file and the fix.
    b2 = s["add b (cache disk full too)"]
    assert b2["code"] == IO_FAILURE and "No space left on device" in b2["msg"] and "dataDir" in b2["msg"], b2
    assert not b2["pod_has_eth0"] and set(b2["files"]) == before, sorted(set(b2["files"]) - before)
    # The daemon cannot rewrite subnet.env: it stays up, not ready, saying why; the old file is whole.
    d = s["daemon restart (disk full)"]
    assert d["alive"] and d["readyz"] and "No space left on device" in d["readyz"][1], d
    assert d["subnet_env_unchanged"]
    assert s["del a (disks full)"]["rc"] == 0, "DEL must work on a full disk (it frees space)"
    assert s["space back"]["ready"] and s["space back"]["subnet_env_new"], s["space back"]
    assert s["add b (room again)"]["rc"] == 0
    for name in ("add c (read-only)", "del b (read-only)"):
        assert s[name]["code"] == IO_FAILURE and "Read-only file system" in s[name]["msg"], s[name]
    assert not s["add c (read-only)"]["pod_has_eth0"]
    assert s["add c (writable again)"]["rc"] == 0 and s["del b (writable again)"]["rc"] == 0
    assert r["leaks"] == [], r["leaks"]
