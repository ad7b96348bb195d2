"""`make bench`: run every bench/bench_*.py module's main(); each prints its figures and ratios.

`python -m bench NAME` runs only bench_NAME.
"""
import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv or n in argv]
    failed = 0
    for name in names:
        print(f"=== {name}", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as err:  # one broken benchmark should not hide the others' figures
            failed += 1
            print(f"!!! {name} failed: {err!r}", flush=True)
        print(f"--- {name} took {time.monotonic() - started:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
