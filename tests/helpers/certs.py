"""Throw-away PKI for the mutual-TLS tests: a cluster CA, node certificates it signed, and a
foreign CA with a node certificate of its own.

The foreign pair is a well-formed certificate chain that simply was not issued by the
cluster's CA, so a test that shows it is refused shows the CA check itself (not a broken file
or a name mismatch) doing the refusing. Every node certificate carries IP 127.0.0.1 in its
subjectAltName, since the tests dial peers by address, and both EKUs, since a node is a client
of its peers and a server to them. Keys are EC P-256: generating them takes milliseconds, which
matters for a fixture made per module.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: the certificates are valid from a day ago (clock skew between test processes is harmless)
#: until 30 days ahead; long enough for any test run, short enough to be obviously disposable
_NOT_BEFORE = datetime.timedelta(days=1)
_VALIDITY = datetime.timedelta(days=30)


@dataclasses.dataclass(frozen=True)
class NodeCert:
    """A node's certificate and private key (PEM files)."""

    cert: Path
    key: Path

    def flags(self, ca: Path) -> list[str]:
        """The `--tls-cert/--tls-key/--tls-ca` flags of `chronotick-node` for this identity."""
        return ["--tls-cert", str(self.cert), "--tls-key", str(self.key), "--tls-ca", str(ca)]


@dataclasses.dataclass(frozen=True)
class TestPki:
    """Paths of the PEM files `make_pki` wrote."""

    __test__ = False  # not a test class, whatever its name says to pytest

    #: the cluster's CA certificate
    ca: Path
    #: node id -> certificate signed by the cluster CA
    nodes: dict[str, NodeCert]
    #: a CA the cluster does not trust, and a node certificate it signed
    foreign_ca: Path
    foreign_node: NodeCert


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ChronoTick tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_ca(
    directory: Path, stem: str, common_name: str
) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _NOT_BEFORE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{stem}.pem"
    _write_cert(path, cert)
    return path, cert, key


def _make_node(
    directory: Path,
    stem: str,
    common_name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    ips: Sequence[str],
    dns_names: Sequence[str],
) -> NodeCert:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    addresses = ["127.0.0.1", *(ip for ip in ips if ip != "127.0.0.1")]
    alt_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in addresses
    ]
    alt_names += [x509.DNSName(name) for name in dns_names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _NOT_BEFORE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return NodeCert(cert_path, key_path)


def make_pki(
    directory: Path,
    node_ids: Sequence[str],
    *,
    ips: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    foreign_node_id: str = "intruder",
) -> TestPki:
    """Write a cluster CA, one certificate per node id, and a foreign CA and node into
    `directory` (which must exist). Every node certificate names IP 127.0.0.1, `ips` and
    `dns_names` in its subjectAltName."""
    ca_path, ca_cert, ca_key = _make_ca(directory, "cluster-ca", "ChronoTick test cluster CA")
    nodes = {
        node_id: _make_node(directory, node_id, node_id, ca_cert, ca_key, ips, dns_names)
        for node_id in node_ids
    }
    foreign_path, foreign_cert, foreign_key = _make_ca(
        directory, "foreign-ca", "ChronoTick test foreign CA"
    )
    foreign_node = _make_node(
        directory, foreign_node_id, foreign_node_id, foreign_cert, foreign_key, ips, dns_names
    )
    return TestPki(ca_path, nodes, foreign_path, foreign_node)
