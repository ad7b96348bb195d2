"""Pieces ADD, DEL, CHECK and GC share: the store, the delegate, version negotiation."""
from .. import cache, versions
from ..delegate import Delegate


def store(req) -> cache.Store:
    return cache.Store(req.data_dir)


def delegate_for(req, conf: dict) -> Delegate:
    return Delegate(conf.get("type", "bridge"), req.cni_path, dict(req.environ), version_cache_dir=req.data_dir,
                    host=req.host)


def negotiate(req, delegate: Delegate) -> str:
    return versions.for_delegate(req.cni_version, delegate.supported_versions())


def with_prev_result(req, conf: dict, delegate_version: str) -> dict:
    """The config to send: the cached one plus this call's prevResult, in the delegate's version."""
    conf = dict(conf)
    conf["cniVersion"] = delegate_version
    prev = req.netconf.get("prevResult")
    if prev is not None:
        conf["prevResult"] = versions.convert_result(prev, delegate_version)
    else:
        conf.pop("prevResult", None)
    for passthrough in ("runtimeConfig", "args"):
        if passthrough in req.netconf:
            conf[passthrough] = req.netconf[passthrough]
    return conf
