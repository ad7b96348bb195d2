"""Entry point of the `overlay` CNI plugin: CNI_* environment + config on stdin -> JSON on stdout."""
import os
import sys

from . import fastjson, request, versions
from .errors import CniError, GENERIC


def _load(command: str):
    if command == "ADD":
        from .commands import add as module
    elif command == "DEL":
        from .commands import delete as module
    elif command == "CHECK":
        from .commands import check as module
    elif command == "STATUS":
        from .commands import status as module
    elif command == "GC":
        from .commands import gc as module
    else:
        from .commands import version as module
    return module


def _error_version(stdin: bytes) -> str:
    try:
        version = fastjson.loads(stdin).get("cniVersion")
    except Exception:
        return versions.NEWEST
    return version if version in versions.SUPPORTED else versions.NEWEST


def handle(environ, stdin: bytes, host=None, accept=None):
    """One plugin call as data: -> (exit code, stdout bytes, stderr bytes).

    `host` does what happens outside this process (default: from here, cni_plugin.host);
    `accept(request)` is called before anything is done for a valid request; what it raises
    reaches the caller (the CNI service uses it to hand requests back to the plugin).
    """
    try:
        req = request.parse(environ, stdin, host)
    except CniError as err:
        return 1, _dumps(err.as_dict(_error_version(stdin))), b""
    if accept is not None:
        accept(req)
    try:
        result = _load(req.command).run(req)
    except CniError as err:
        return 1, _dumps(err.as_dict(_error_version(stdin))), b""
    except KeyboardInterrupt:
        return 1, _dumps(CniError(GENERIC, "interrupted").as_dict(_error_version(stdin))), b""
    except Exception as err:  # a bug: still answer in CNI form, with the traceback on stderr
        import traceback
        error = CniError(GENERIC, f"internal error in the overlay plugin: {err!r}",
                         "please report it with the stderr output")
        return 1, _dumps(error.as_dict(_error_version(stdin))), traceback.format_exc().encode()
    return 0, (_dumps(result) if result is not None else b""), b""


def main(argv=None) -> int:
    stdin = b""
    if os.environ.get("CNI_COMMAND") or not sys.stdin.isatty():
        stdin = sys.stdin.buffer.read()
    code, out, err = handle(os.environ, stdin)
    if err:
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    if out:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
    return code


def _dumps(obj) -> bytes:
    return (fastjson.dumps(obj) + "\n").encode()


if __name__ == "__main__":
    sys.exit(main())
