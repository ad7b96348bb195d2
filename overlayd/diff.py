"""The difference between desired and actual entries, as a Plan. Pure."""
from __future__ import annotations

from .entries import Entries, PeerEntries, Plan


def plan_changes(desired: Entries, actual: Entries) -> Plan:
    plan = Plan()
    desired_peer_routes = set(desired.routes)
    fdb_by_mac = {f.mac: f for f in desired.fdbs}
    # Additions grouped by peer (ARP, FDB, route), so a failed step can roll that peer back.
    for dst, route in desired.routes.items():
        neigh = desired.neighs.get(route.gateway) if not route.direct else None
        fdb = fdb_by_mac.get(neigh.mac) if neigh is not None else None
        need_neigh = neigh is not None and actual.neighs.get(neigh.ip) != neigh
        need_fdb = fdb is not None and fdb not in actual.fdbs
        need_route = actual.routes.get(dst) != route
        if need_neigh or need_fdb or need_route:
            plan.add.append(PeerEntries(route=route, neigh=neigh if need_neigh else None,
                                        fdb=fdb if need_fdb else None))
    # Removals: whatever no lease explains. A route whose gateway changed is replaced, not removed.
    plan.del_routes = [r for dst, r in actual.routes.items() if dst not in desired_peer_routes]
    plan.del_fdbs = [f for f in actual.fdbs if f not in desired.fdbs]
    plan.del_neighs = [n for ip, n in actual.neighs.items() if ip not in desired.neighs]
    return plan
