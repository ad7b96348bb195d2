"""nft scripts from models (pure): the whole table in one transaction, or the difference of two.

full(): "table; delete table; table {...}" replaces our table atomically (the kernel never holds
half a rule set, and nothing outside our table is touched). incremental(old, new): element, chain,
set and counter changes in one transaction, ordered so every reference is valid when it commits.
"""
from __future__ import annotations

from typing import Optional

from .compile import TABLE, NftModel

BASE_CHAIN = "forward"
HOOK = "type filter hook forward priority filter - 5; policy accept;"


def _elements(elems) -> str:
    return ", ".join(sorted(elems))


def _set_decl(name, s) -> str:
    flags = f" flags {', '.join(s.flags)};" if s.flags else ""
    elems = f" elements = {{ {_elements(s.elements)} }};" if s.elements else ""
    return f"\tset {name} {{ type {s.type};{flags}{elems} }}\n"


def _map_decl(name, m) -> str:
    elems = f" elements = {{ {', '.join(f'{k} : {v}' for k, v in m.elements)} }};" if m.elements else ""
    return f"\tmap {name} {{ type {m.type};{elems} }}\n"


def full(model: NftModel, table: str = TABLE) -> str:
    out = [f"table inet {table}\n", f"delete table inet {table}\n", f"table inet {table} {{\n",
           "\tcomment \"overlayd NetworkPolicy (--network-policy); written whole by the daemon\"\n"]
    out += [f"\tcounter {c} {{ }}\n" for c in model.counters]
    out += [_set_decl(n, s) for n, s in sorted(model.sets.items())]
    out += [_map_decl(n, m) for n, m in sorted(model.maps.items())]
    for name, rules in sorted(model.chains.items()):
        if name == BASE_CHAIN:
            continue
        out.append(f"\tchain {name} {{\n" + "".join(f"\t\t{r}\n" for r in rules) + "\t}\n")
    out.append(f"\tchain {BASE_CHAIN} {{\n\t\t{HOOK}\n" + "".join(f"\t\t{r}\n" for r in model.chains[BASE_CHAIN])
               + "\t}\n")
    out.append("}\n")
    return "".join(out)


def remove(table: str = TABLE) -> str:
    return f"table inet {table}\ndelete table inet {table}\n"


def incremental(old: NftModel, new: NftModel, table: str = TABLE) -> Optional[str]:
    """The transaction from `old` to `new`, or None when only a full replace can do it."""
    if old.log_group != new.log_group or old.chains.get(BASE_CHAIN) != new.chains.get(BASE_CHAIN):
        return None
    for name in old.chains.keys() & new.chains.keys():
        if old.chains[name] != new.chains[name]:
            return None
    for name in old.sets.keys() & new.sets.keys():
        if (old.sets[name].type, old.sets[name].flags) != (new.sets[name].type, new.sets[name].flags):
            return None
    if set(old.maps) != set(new.maps):
        return None
    t = f"inet {table}"
    out = [f"add counter {t} {c}\n" for c in sorted(set(new.counters) - set(old.counters))]
    for name in sorted(new.sets.keys() - old.sets.keys()):
        out.append(f"add{_set_decl(name, new.sets[name]).replace(chr(9) + 'set', ' set ' + t, 1)}")
    for name in sorted(new.chains.keys() - old.chains.keys()):
        out.append(f"add chain {t} {name}\n")
        out += [f"add rule {t} {name} {r}\n" for r in new.chains[name]]
    for name in sorted(old.sets.keys() & new.sets.keys()):
        gone = old.sets[name].elements - new.sets[name].elements
        added = new.sets[name].elements - old.sets[name].elements
        if gone:
            out.append(f"delete element {t} {name} {{ {_elements(gone)} }}\n")
        if added:
            out.append(f"add element {t} {name} {{ {_elements(added)} }}\n")
    for name in sorted(new.maps):
        before, after = dict(old.maps[name].elements), dict(new.maps[name].elements)
        gone = [k for k in before if after.get(k) != before[k]]
        added = [f"{k} : {after[k]}" for k in after if before.get(k) != after[k]]
        if gone:
            out.append(f"delete element {t} {name} {{ {', '.join(sorted(gone))} }}\n")
        if added:
            out.append(f"add element {t} {name} {{ {', '.join(sorted(added))} }}\n")
    out += [f"delete chain {t} {name}\n" for name in sorted(old.chains.keys() - new.chains.keys())]
    out += [f"delete set {t} {name}\n" for name in sorted(old.sets.keys() - new.sets.keys())]
    out += [f"delete counter {t} {c}\n" for c in sorted(set(old.counters) - set(new.counters))]
    return "".join(out)
