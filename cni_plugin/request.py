"""One plugin invocation as plain data: the CNI_* environment and the network config on stdin."""
import os

from . import cache, fastjson, host as hosts, subnet_env
from .errors import CniError, DECODE_FAILURE, INVALID_CONFIG, INVALID_ENVIRONMENT

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
_NEEDS = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "STATUS": ("CNI_PATH",),
    "GC": ("CNI_PATH",),
    "VERSION": (),
}
SOCKET_DEFAULT = "/run/flannel/cni.sock"  # overlayd's --cni-socket; the same default in native/overlay.c
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Request:
    """command, container_id, netns, ifname, args, cni_path (list), netconf (dict), and our fields.

    `host` runs delegates and looks into the pod's namespace (cni_plugin.host)."""

    __slots__ = ("command", "container_id", "netns", "ifname", "args", "cni_path", "netconf",
                 "cni_version", "subnet_file", "data_dir", "environ", "host")

    def __init__(self, **fields):
        for name in self.__slots__:
            setattr(self, name, fields.get(name))


def command_of(environ) -> str:
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        what = f"is {command!r}" if command else "is not set"
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND {what}",
                       f"this is a CNI plugin: the container runtime runs it with CNI_COMMAND={'|'.join(COMMANDS)} "
                       "and the network config on stdin")
    return command


def parse(environ, stdin: bytes, host=None) -> Request:
    """host: cni_plugin.host's interface; None: this process (host.LOCAL)."""
    host = host or hosts.LOCAL
    command = command_of(environ)
    for name in _NEEDS[command]:
        if not environ.get(name):
            raise CniError(INVALID_ENVIRONMENT, f"{name} is not set (needed for {command})",
                           "the container runtime must set CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_PATH")
    container_id = environ.get("CNI_CONTAINERID") or None
    if container_id is not None and (not container_id[0].isalnum() or not _ID_CHARS.issuperset(container_id)):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {container_id!r} is not a valid container ID",
                       "it must start with a letter or digit and contain only letters, digits, '_', '.', '-'")
    ifname = environ.get("CNI_IFNAME") or None
    if ifname is not None and (len(ifname) > 15 or ifname in (".", "..")
                               or any(c in ifname for c in "/: \t\n")):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname!r} is not a valid interface name",
                       "use at most 15 characters without '/', ':' or spaces, e.g. eth0")
    try:
        netconf = fastjson.loads(stdin) if stdin.strip() else None
    except (ValueError, UnicodeDecodeError) as err:
        raise CniError(DECODE_FAILURE, f"the network config on stdin is not valid JSON: {err}",
                       "check the CNI config file in /etc/cni/net.d") from None
    if command == "VERSION":
        version = netconf.get("cniVersion") if isinstance(netconf, dict) else None
        return Request(command=command, netconf=netconf or {}, cni_version=version, environ=environ, host=host)
    if not isinstance(netconf, dict):
        raise CniError(DECODE_FAILURE if netconf is None else INVALID_CONFIG,
                       "the network config on stdin must be a JSON object",
                       'e.g. {"cniVersion": "1.0.0", "name": "overlay", "type": "overlay"}')
    version = netconf.get("cniVersion")
    if not isinstance(version, str):
        raise CniError(INVALID_CONFIG, "the network config has no string `cniVersion`",
                       'add e.g. "cniVersion": "1.0.0"')
    name = netconf.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(INVALID_CONFIG, "the network config has no `name`", 'add e.g. "name": "overlay"')
    subnet_file = _path_field(netconf, "subnetFile", subnet_env.DEFAULT_PATH)
    data_dir = _path_field(netconf, "dataDir", cache.DEFAULT_DATA_DIR)
    socket = netconf.get("cniSocket", SOCKET_DEFAULT)
    if socket != "":   # read by the native front end; checked here so a typo is not silently slow
        _path_field(netconf, "cniSocket", SOCKET_DEFAULT)
    return Request(command=command, container_id=container_id, netns=environ.get("CNI_NETNS") or None,
                   ifname=ifname, args=environ.get("CNI_ARGS") or None,
                   cni_path=[p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p],
                   netconf=netconf, cni_version=version, subnet_file=subnet_file, data_dir=data_dir,
                   environ=environ, host=host)


def _path_field(netconf: dict, field: str, default: str) -> str:
    value = netconf.get(field, default)
    if not isinstance(value, str) or not value.startswith("/"):
        raise CniError(INVALID_CONFIG, f"`{field}` must be an absolute path, got {value!r}",
                       f'e.g. "{field}": "{default}"')
    return value
