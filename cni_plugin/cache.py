"""What ADD hands to DEL and GC: one file per (container, interface) under the netconf's dataDir.

Each file holds the delegate config exactly as the delegate got it, so DEL releases the same
addresses even when the subnet file changed or vanished. Written before the delegate runs,
fsynced, renamed into place; a node-wide flock serialises ADD/DEL/GC of this plugin.
"""
import fcntl
import os

from . import fastjson
from .errors import CniError, IO_FAILURE

# /var/lib, not /run: host-local keeps its reservations in /var/lib/cni/networks across reboots,
# and after a reboot the runtime's DELs must still find the config that releases them.
DEFAULT_DATA_DIR = "/var/lib/cni/overlay"
SUFFIX = ".json"


class Store:
    def __init__(self, data_dir: str):
        self.data_dir = data_dir

    def path(self, container_id: str, ifname: str) -> str:
        # Container IDs and interface names were validated (no '/', no '..') by request.parse.
        return os.path.join(self.data_dir, f"{container_id}-{ifname}{SUFFIX}")

    def _ensure_dir(self) -> None:
        try:
            os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        except OSError as err:
            raise CniError(IO_FAILURE, f"cannot create dataDir {self.data_dir}: {err.strerror}",
                           "set `dataDir` in the CNI config to a writable directory") from None

    def lock(self):
        """A context manager holding this node's plugin lock."""
        self._ensure_dir()
        return _Flock(os.path.join(self.data_dir, ".lock"))

    def save(self, container_id: str, ifname: str, entry: dict) -> None:
        self._ensure_dir()
        final = self.path(container_id, ifname)
        tmp = f"{final}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, fastjson.dumps(entry).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            dfd = os.open(self.data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as err:
            _unlink(tmp)
            raise CniError(IO_FAILURE, f"cannot write {final}: {err.strerror}",
                           "check free space and permissions of the CNI config's `dataDir`") from None

    def load(self, container_id: str, ifname: str):
        try:
            with open(self.path(container_id, ifname), "rb") as f:
                entry = fastjson.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # torn or unreadable: treat as gone; DEL falls back to the subnet file
        return entry if isinstance(entry, dict) and isinstance(entry.get("delegate"), dict) else None

    def remove(self, container_id: str, ifname: str) -> None:
        _unlink(self.path(container_id, ifname))

    def entries(self) -> list:
        """Every cached attachment as (container_id, ifname, entry), for GC."""
        out = []
        try:
            names = os.listdir(self.data_dir)
        except FileNotFoundError:
            return out
        for name in sorted(names):
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            try:
                with open(os.path.join(self.data_dir, name), "rb") as f:
                    entry = fastjson.loads(f.read())
            except (OSError, ValueError):
                continue
            if isinstance(entry, dict) and entry.get("containerID") and entry.get("ifname"):
                out.append((entry["containerID"], entry["ifname"], entry))
        return out


class _Flock:
    def __init__(self, path: str):
        self.path = path
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:     # a read-only or broken dataDir: the runtime retries later
            raise CniError(IO_FAILURE, f"cannot open the plugin lock {self.path}: {err.strerror}",
                           "the CNI config's `dataDir` must be on a writable file system") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        self.fd = None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
