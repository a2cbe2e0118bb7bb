"""TLS is always verified: an untrusted certificate fails at once with a clear message; trusting
the CA (``REQUESTS_CA_BUNDLE``, as an institution would) makes the same server work."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipelines.fetch.base import FetchError
from pipelines.fetch.credentials import ChainCredentials
from pipelines.fetch.mirror.physionet import PhysioNetMirror
from pipelines.fetch.source import fetch_source

from .conftest import FAST_RETRY


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_untrusted_certificate_fails_fast_and_a_trusted_ca_works(
    physionet_tree, physionet_manifest, tmp_path, monkeypatch, caplog
):
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = PhysioNetMirror(physionet_tree)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    url = f"https://localhost:{srv.server_address[1]}"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    run = {
        "endpoints": {"physionet": url},
        "credentials": ChainCredentials([]),
        "progress": False,
        "retry": FAST_RETRY,
        "files": "g1/*.hea",
    }
    with srv:
        with caplog.at_level(logging.INFO, logger="climb.fetch"), pytest.raises(FetchError) as info:
            fetch_source(physionet_manifest, tmp_path / "raw", **run)
        assert f"TLS certificate verification failed for localhost:{srv.server_address[1]}" in str(info.value)
        assert "retrying" not in caplog.text  # a bad certificate is not a transient error
        assert srv.stats.requests == []  # no HTTP request got past the handshake
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        log = fetch_source(physionet_manifest, tmp_path / "raw", **run)
    assert len(log.files) == 3 and log.base_url.startswith("https://localhost:")
