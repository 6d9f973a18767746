"""FIX over TLS (stdlib ssl) with a self-signed certificate made for the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fix.acceptor import Acceptor
from sessions.echo import EchoApplication
from tests.fix_client import AsyncFixClient
from tests.test_fix_acceptor import lookup
from tests.test_fix_session import DD
from venue.db import make_engine, sqlite_url


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_logon_and_echo_over_tls_and_plain_tcp_gets_nothing(tmp_path):
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def main():
        engine = make_engine(sqlite_url(tmp_path))
        acceptor = Acceptor(lookup, EchoApplication(), engine, dictionary=DD)
        port = await acceptor.start("127.0.0.1", 0, ssl_context=server_ctx)
        client = await AsyncFixClient.connect(port, ssl=client_ctx, host="localhost")
        assert client.writer.get_extra_info("ssl_object").version().startswith("TLS")
        assert (await client.logon()).get(35) == b"A"
        await client.send("D", (11, "T1"), (21, 1), (38, 1), (40, 1), (54, 1), (55, "X"), (60, "20260101-00:00:00"))
        assert (await client.recv()).get(11) == b"T1"
        client.close()
        plain = await AsyncFixClient.connect(port, sender="TW2")
        assert await plain.logon(reset=True) is None  # a cleartext Logon is not a TLS handshake
        plain.close()
        await acceptor.stop()
        await engine.dispose()

    asyncio.run(main())
