"""The lab control plane's certificates: one CA, serving and client certificates, the
service-account signing key, laid out as kubeadm lays out /etc/kubernetes/pki:

    ca.crt/ca.key                 the cluster CA (client-ca-file and the server's issuer)
    apiserver.crt/key             kube-apiserver's serving certificate (SANs below)
    admin.crt/key                 CN=kubernetes-admin, O=system:masters (the admin kubeconfig)
    controller-manager.crt/key    CN=system:kube-controller-manager
    scheduler.crt/key             CN=system:kube-scheduler
    apiserver-kubelet-client.*    kube-apiserver -> kubelet (exec, logs), O=system:masters
    sa.key/sa.pub                 service-account token signing (ECDSA P-256: ES256 tokens)

Made in-process with `cryptography` (the lab's extra; never on the daemon's or the plugin's
path): a lab is brought up dozens of times per test run, and 14 openssl processes cost seconds.
`issue()` is public, so more clients (kubelets) can be given certificates from the same CA.
"""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID = datetime.timedelta(days=3650)


class PkiError(Exception):
    pass


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load(pki: "Pki"):
    with open(pki.ca_cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(pki.ca_key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def _san(entries: Iterable[str]) -> list:
    names = []
    for entry in entries:
        kind, _, value = entry.partition(":")
        if kind == "IP":
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        elif kind == "DNS":
            names.append(x509.DNSName(value))
        else:
            raise PkiError(f"subjectAltName {entry!r}: use IP:<address> or DNS:<name>")
    return names


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
        ca_cert, ca_key = _load(self)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs] +
                            [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALID)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                         else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        sans = _san(sans)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        crt_path, key_path = self.cert(name)
        _write(key_path, _key_pem(key), 0o600)
        _write(crt_path, cert.public_bytes(serialization.Encoding.PEM))
        return crt_path, key_path


def make_pki(directory: str, *, server_ips: Iterable[str], server_names: Iterable[str] = ()) -> Pki:
    """The CA, the API server's serving certificate and the control plane's client certificates."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    pki = Pki(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "overlayd-lab-ca")])
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALID)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
          .sign(key, hashes.SHA256()))
    _write(pki.ca_key, _key_pem(key), 0o600)
    _write(pki.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", "localhost", *server_names]
    pki.issue("apiserver", "kube-apiserver", server=True,
              sans=[f"DNS:{n}" for n in names] + [f"IP:{ip}" for ip in server_ips])
    pki.issue("admin", "kubernetes-admin", orgs=["system:masters"])
    pki.issue("controller-manager", "system:kube-controller-manager")
    pki.issue("scheduler", "system:kube-scheduler")
    pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", orgs=["system:masters"])
    sa = ec.generate_private_key(ec.SECP256R1())
    _write(pki.path("sa.key"), _key_pem(sa), 0o600)
    _write(pki.path("sa.pub"), sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki
