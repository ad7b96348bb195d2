"""CNI spec versions: which we speak, which one to use with a delegate, result conversion.

Result shapes: 0.3.x/0.4.0 carry `ips[].version` ("4"/"6"); 1.0.0 dropped it; 1.1.0 results
are 1.0.0 results. CHECK exists from 0.4.0, STATUS and GC from 1.1.0.
"""
from .errors import CniError, INCOMPATIBLE_VERSION

SUPPORTED = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
NEWEST = SUPPORTED[-1]
SINCE = {"ADD": "0.3.1", "DEL": "0.3.1", "CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


def key(version: str) -> tuple:
    try:
        parts = tuple(int(p) for p in version.split("."))
    except (AttributeError, ValueError):
        return (-1,)
    return parts if len(parts) == 3 else (-1,)


def require_supported(version, command: str) -> str:
    """The netconf's cniVersion, if we speak it and it has `command`; else error code 1."""
    if version not in SUPPORTED:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported by the overlay plugin",
                       f"set cniVersion in the CNI config to one of {', '.join(SUPPORTED)}")
    since = SINCE.get(command)
    if since and key(version) < key(since):
        raise CniError(INCOMPATIBLE_VERSION, f"{command} needs cniVersion {since} or later, the config says {version}",
                       f"raise cniVersion in the CNI config to {since} or later")
    return version


def for_delegate(wanted: str, delegate_supports) -> str:
    """The newest version both sides speak, not newer than `wanted` (the delegate's results get converted)."""
    common = [v for v in delegate_supports if v in SUPPORTED and key(v) <= key(wanted)]
    if not common:
        raise CniError(INCOMPATIBLE_VERSION,
                       f"the delegate plugin speaks none of {', '.join(v for v in SUPPORTED if key(v) <= key(wanted))}",
                       f"it supports {', '.join(delegate_supports) or 'nothing'}; install containernetworking-plugins 0.8 or later")
    return max(common, key=key)


def convert_result(result, to_version: str):
    """Re-shape an ADD result (or prevResult) for `to_version`; unknown shapes pass through unchanged."""
    if not isinstance(result, dict):
        return result
    out = dict(result)
    out["cniVersion"] = to_version
    ips = result.get("ips")
    if isinstance(ips, list):
        new_ips = []
        for entry in ips:
            if not isinstance(entry, dict):
                new_ips.append(entry)
                continue
            entry = dict(entry)
            if key(to_version) >= (1, 0, 0):
                entry.pop("version", None)
            elif "version" not in entry:
                entry["version"] = "6" if ":" in str(entry.get("address", "")) else "4"
            new_ips.append(entry)
        out["ips"] = new_ips
    return out
