"""Importing a package's submodules without running its __init__ (start-up time and memory).

A package whose __init__ imports everything it ships makes every user pay for all of it. Here
prometheus_client: its __init__ loads the exposition code, which imports http.server and
urllib.request, and urllib.request imports ssl (OpenSSL mapped into the process). The daemon
needs only the registry and the metric types to start; the exposition loads later, with the
health server, off the start path (overlayd.start_up).

register_without_init(name) puts the package in sys.modules with its path set and its __init__
not run, so `from name.sub import X` loads just name.sub. The first name asked of the package
itself that is not a submodule (`from prometheus_client import Counter` elsewhere) runs the real
__init__ then, so such imports keep working.
"""
from __future__ import annotations

import importlib.util
import sys


def register_without_init(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None:
        return                                        # not a package (or not installed): leave it
    pkg = importlib.util.module_from_spec(spec)       # __path__, __spec__ set; __init__ not run

    def full_init(attr: str):
        if attr.startswith("__") or importlib.util.find_spec(f"{name}.{attr}") is not None:
            raise AttributeError(attr)                # a dunder or a submodule: the import system's
        del pkg.__getattr__
        spec.loader.exec_module(pkg)
        return getattr(pkg, attr)

    pkg.__getattr__ = full_init
    sys.modules[name] = pkg
