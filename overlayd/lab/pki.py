"""The lab control plane's certificates: one CA, serving and client certificates, the
service-account signing key. Made with the openssl command (Debian's openssl), into a directory
of the lab's work directory, as kubeadm lays out /etc/kubernetes/pki.

    ca.crt/ca.key                 the cluster CA (client-ca-file and the server's issuer)
    apiserver.crt/key             kube-apiserver's serving certificate (SANs below)
    admin.crt/key                 CN=kubernetes-admin, O=system:masters (the admin kubeconfig)
    controller-manager.crt/key    CN=system:kube-controller-manager
    apiserver-kubelet-client.*    kube-apiserver -> kubelet (exec, logs), O=system:masters
    sa.key/sa.pub                 service-account token signing
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from typing import Iterable

DAYS = "3650"


class PkiError(Exception):
    pass


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PkiError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


@dataclasses.dataclass(frozen=True)
class Pki:
    dir: str

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    @property
    def ca_cert(self) -> str:
        return self.path("ca.crt")

    @property
    def ca_key(self) -> str:
        return self.path("ca.key")

    def cert(self, name: str) -> tuple[str, str]:
        return self.path(f"{name}.crt"), self.path(f"{name}.key")

    def issue(self, name: str, common_name: str, *, orgs: Iterable[str] = (), sans: Iterable[str] = (),
              server: bool = False) -> tuple[str, str]:
        """A key and a certificate signed by the CA; sans like 'IP:192.0.2.254', 'DNS:kubernetes'."""
        crt, key = self.cert(name)
        subject = "".join(f"/O={o}" for o in orgs) + f"/CN={common_name}"
        usage = "serverAuth" if server else "clientAuth"
        ext = ["keyUsage=critical,digitalSignature,keyEncipherment", f"extendedKeyUsage={usage}",
               "basicConstraints=critical,CA:FALSE"]
        sans = list(sans)
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        with tempfile.NamedTemporaryFile("w", dir=self.dir, suffix=".ext", delete=False) as f:
            f.write("\n".join(ext) + "\n")
            extfile = f.name
        csr = self.path(f"{name}.csr")
        try:
            _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", key, "-subj", subject, "-out", csr)
            _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                     "-CAcreateserial", "-days", DAYS, "-extfile", extfile, "-out", crt)
        finally:
            for p in (extfile, csr):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
        os.chmod(key, 0o600)
        return crt, key


def make_pki(directory: str, *, server_ips: Iterable[str], server_names: Iterable[str] = ()) -> Pki:
    """The CA, the API server's serving certificate and the control plane's client certificates."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pki = Pki(directory)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", pki.ca_key, "-out", pki.ca_cert, "-days", DAYS, "-subj", "/CN=overlayd-lab-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    os.chmod(pki.ca_key, 0o600)
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", "localhost", *server_names]
    pki.issue("apiserver", "kube-apiserver", server=True,
              sans=[f"DNS:{n}" for n in names] + [f"IP:{ip}" for ip in server_ips])
    pki.issue("admin", "kubernetes-admin", orgs=["system:masters"])
    pki.issue("controller-manager", "system:kube-controller-manager")
    pki.issue("scheduler", "system:kube-scheduler")
    pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", orgs=["system:masters"])
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pki.path("sa.key"))
    _openssl("pkey", "-in", pki.path("sa.key"), "-pubout", "-out", pki.path("sa.pub"))
    os.chmod(pki.path("sa.key"), 0o600)
    return pki
