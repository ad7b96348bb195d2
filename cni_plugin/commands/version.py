"""VERSION: the spec versions we speak."""
from .. import versions


def run(req):
    asked = req.cni_version
    return {"cniVersion": asked if asked in versions.SUPPORTED else versions.NEWEST,
            "supportedVersions": list(versions.SUPPORTED)}
