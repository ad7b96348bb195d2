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


def main(argv=None) -> int:
    stdin = b""
    try:
        if os.environ.get("CNI_COMMAND") or not sys.stdin.isatty():
            stdin = sys.stdin.buffer.read()
        req = request.parse(os.environ, stdin)
        result = _load(req.command).run(req)
    except CniError as err:
        _write(err.as_dict(_error_version(stdin)))
        return 1
    except KeyboardInterrupt:
        _write(CniError(GENERIC, "interrupted").as_dict(_error_version(stdin)))
        return 1
    except Exception as err:  # a bug: still answer in CNI form, with the traceback on stderr
        import traceback
        traceback.print_exc()
        _write(CniError(GENERIC, f"internal error in the overlay plugin: {err!r}",
                        "please report it with the stderr output").as_dict(_error_version(stdin)))
        return 1
    if result is not None:
        _write(result)
    return 0


def _write(obj) -> None:
    sys.stdout.write(fastjson.dumps(obj))
    sys.stdout.write("\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
