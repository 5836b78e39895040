"""Certificates for the test control plane, made with the openssl command line.

A CA signs the API server's serving certificate and the client certificates of the
admin, the controller manager and the node agent; a separate RSA key signs service
account tokens. Test-only: the keys live under the cluster's state folder.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(pki: Pki, name: str, subject: str, extensions: str) -> None:
    d = pki.dir
    ext = d / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("genrsa", "-out", pki.key(name).name, "2048", cwd=d)
    _openssl("req", "-new", "-key", pki.key(name).name, "-subj", subject,
             "-out", f"{name}.csr", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "30", "-sha256", "-extfile", ext.name,
             "-out", pki.cert(name).name, cwd=d)  # fmt: skip


CLIENT_EXT = "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
SERVER_EXT = (
    "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc\n"
)

# name -> (subject, extensions). Groups (O=) drive RBAC: system:masters is the admin.
IDENTITIES = {
    "apiserver": ("/CN=kube-apiserver", SERVER_EXT),
    "admin": ("/O=system:masters/CN=admin", CLIENT_EXT),
    "controller-manager": ("/CN=system:kube-controller-manager", CLIENT_EXT),
    "agent": ("/O=system:masters/CN=test-node-agent", CLIENT_EXT),
}


def issue_server_certificate(pki: Pki, name: str) -> None:
    """A serving certificate for 127.0.0.1 signed by the CA (another test server's)."""
    if not pki.cert(name).exists():
        _issue(pki, name, f"/CN={name}", SERVER_EXT)


def make_pki(dir: Path) -> Pki:
    """Create the CA, every identity and the service-account key pair (idempotent)."""
    pki = Pki(dir)
    if pki.sa_pub.exists():
        return pki
    dir.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "30", "-subj", "/CN=scalingstudy-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)  # fmt: skip
    for name, (subject, ext) in IDENTITIES.items():
        _issue(pki, name, subject, ext)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=dir)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=dir)
    return pki
