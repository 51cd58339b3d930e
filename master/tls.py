"""TLS in front of the master's API: a private CA and a server certificate for a first deployment
(``ffwatt stack up --generate-cert``), and the configuration of the nginx that terminates it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ffwatt.settings import REPO

__all__ = ["generate_ca_and_server_cert", "proxy_config"]


def proxy_config(*, prefix: Path | str, listen: str | int, cert: Path | str, key: Path | str,
                 upstreams: list[str]) -> str:
    """The TLS proxy's nginx configuration (infra/nginx/ffwatt-master.conf) in front of the API processes at
    ``upstreams`` (host:port). One that refuses, or answers no connection within 5 s, is left for 5 s and the
    request goes to the next; nginx never sends on a POST it already sent."""
    servers = "\n        ".join(f"server {address} max_fails=1 fail_timeout=5s;" for address in upstreams)
    template = (REPO / "infra" / "nginx" / "ffwatt-master.conf").read_text()
    return template.format(prefix=prefix, listen=listen, cert=cert, key=key, servers=servers)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ffwatt"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def generate_ca_and_server_cert(directory: Path, names: list[str], *, days: int = 825) -> Path:
    """Write ca.pem, ca-key.pem, server.pem, server-key.pem; the server cert covers ``names``
    (DNS names or IP addresses). Returns the CA path clients verify with."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("ffwatt CA")).issuer_name(_name("ffwatt CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "ca-key.pem", ca_key)
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(directory / "server-key.pem", key)
    return directory / "ca.pem"
