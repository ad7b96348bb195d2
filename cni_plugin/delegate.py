"""Calling the delegate plugin the way a runtime would: env + stdin in, result or error out."""
import os

from . import fastjson, host as hosts, spawn, versions
from .errors import CniError, GENERIC, INVALID_CONFIG, INVALID_ENVIRONMENT, DECODE_FAILURE


class Delegate:
    """One delegate binary, found on CNI_PATH; `env` is the CNI_* environment to pass on."""

    def __init__(self, plugin_type: str, search_path, env: dict, version_cache_dir: str = None,
                 host=hosts.LOCAL):
        if not spawn.plugin_name_ok(plugin_type):
            raise CniError(INVALID_CONFIG, f"delegate type {plugin_type!r} is not a plugin name",
                           "delegate.type names a plugin in CNI_PATH, such as \"bridge\"; it cannot be a path "
                           "(no '/')")
        self.type = plugin_type
        self.path = spawn.find(plugin_type, search_path)
        if self.path is None:
            raise CniError(INVALID_ENVIRONMENT, f"delegate plugin {plugin_type!r} not found in CNI_PATH "
                           f"({':'.join(search_path) or 'empty'})",
                           "install the reference CNI plugins (bridge, host-local, portmap) into the CNI bin dir")
        self.env = env
        self.version_cache_dir = version_cache_dir
        self.host = host

    def call(self, command: str, conf: dict, **overrides):
        """Run `command`; returns the parsed stdout (None if empty). CniError with the delegate's code on failure.

        The environment is ours with CNI_COMMAND set (and `overrides`: None removes a name); the
        native front end builds the same one itself (native/delegate.c delegate_env), so the
        only overrides used are the ones it knows: VERSION goes without the container's."""
        env = dict(self.env)
        env["CNI_COMMAND"] = command
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        try:
            code, out, err = self.host.run(self.type, self.path, env, fastjson.dumps(conf).encode())
        except OSError as exc:
            raise CniError(GENERIC, f"cannot run delegate {self.path}: {exc.strerror}") from None
        parsed = None
        text = out.strip()
        if text:
            try:
                parsed = fastjson.loads(text)
            except ValueError:
                if code == 0:
                    raise CniError(DECODE_FAILURE, f"delegate {self.type} {command} printed something that is not JSON",
                                   text[:500].decode("utf-8", "replace")) from None
        if code != 0:
            if isinstance(parsed, dict) and "code" in parsed:
                raise CniError(parsed.get("code") or GENERIC, f"{self.type} {command}: {parsed.get('msg', '')}",
                               parsed.get("details", "") or "")
            detail = (err or out).strip()[:500].decode("utf-8", "replace")
            raise CniError(GENERIC, f"{self.type} {command} failed with exit code {code}", detail)
        return parsed

    def supported_versions(self) -> list:
        """Ask once per delegate binary (VERSION); remembered next to our cache, keyed by size+mtime."""
        st = os.stat(self.path)
        memo = None
        if self.version_cache_dir:
            memo = os.path.join(self.version_cache_dir, f".version-{self.type}-{st.st_size}-{st.st_mtime_ns}")
            try:
                with open(memo, "rb") as f:
                    return fastjson.loads(f.read())
            except (OSError, ValueError):
                pass
        reply = self.call("VERSION", {"cniVersion": versions.NEWEST},
                          CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None, CNI_ARGS=None)
        supported = list((reply or {}).get("supportedVersions") or [])
        if memo and supported:
            try:
                tmp = f"{memo}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    f.write(fastjson.dumps(supported))
                os.rename(tmp, memo)
            except OSError:
                pass  # only an optimisation
        return supported
