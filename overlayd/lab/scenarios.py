"""Chaos scenarios (issue 14): each brings up its own lab, breaks it, measures, and tears it down.

Every scenario returns a plain dict: the table's columns (`row`: scenario, packets lost, time
to converge, leaks found, memory growth) and the details the tests assert on. `make soak` and
`tests/chaos` call the same functions, the tests with short durations. This module only
gathers them: scenario_base (shared steps), scenario_store (1, 2), scenario_node (3, 4),
scenario_disk (6); the soak (5) is overlayd.lab.soak.
"""
from .scenario_base import Row, table, wait_for  # noqa: F401
from .scenario_disk import cni_attempt, disk_files, disk_trouble  # noqa: F401
from .scenario_node import kill_under_load, node_reboot  # noqa: F401
from .scenario_store import owner_cut_off_past_ttl, store_blackhole  # noqa: F401
