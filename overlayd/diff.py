"""The difference between desired and actual entries, as a Plan. Pure."""
from __future__ import annotations

from .entries import Entries, PeerEntries, Plan


def plan_changes(desired: Entries, actual: Entries) -> Plan:
    plan = plan_removals(desired, actual)
    plan.add = plan_adds(desired, actual)
    return plan


def plan_adds(desired: Entries, actual: Entries) -> list[PeerEntries]:
    """What each desired peer still needs, grouped by peer (ARP, FDB, route), so a failed step
    can roll that peer back. A route whose gateway changed is replaced, not removed."""
    adds = []
    fdb_by_mac = {f.mac: f for f in desired.fdbs}
    for dst, route in desired.routes.items():
        neigh = desired.neighs.get(route.gateway) if not route.direct else None
        fdb = fdb_by_mac.get(neigh.mac) if neigh is not None else None
        need_neigh = neigh is not None and actual.neighs.get(neigh.ip) != neigh
        need_fdb = fdb is not None and fdb not in actual.fdbs
        need_route = actual.routes.get(dst) != route
        if need_neigh or need_fdb or need_route:
            adds.append(PeerEntries(route=route, neigh=neigh if need_neigh else None,
                                    fdb=fdb if need_fdb else None))
    return adds


def plan_removals(desired: Entries, actual: Entries) -> Plan:
    """Whatever in the kernel no lease explains."""
    return Plan(del_routes=[r for dst, r in actual.routes.items() if dst not in desired.routes],
                del_fdbs=[f for f in actual.fdbs if f not in desired.fdbs],
                del_neighs=[n for ip, n in actual.neighs.items() if ip not in desired.neighs])
