"""Ed25519-signed FIX logons, the scheme of Binance's FIX API.

The signed payload is the values of MsgType (35), SenderCompID (49), TargetCompID (56),
MsgSeqNum (34) and SendingTime (52) joined by SOH, with no trailing SOH. The Logon carries
RawDataLength (95), RawData (96) = the base64 signature, and Username (553) = the key id.

Nothing here imports ``fix``: FIX clients, tests and the README use these helpers directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SOH = "\x01"
TAG_RAW_DATA_LENGTH = 95
TAG_RAW_DATA = 96
TAG_USERNAME = 553


class KeyFormatError(ValueError):
    """A key that is not an Ed25519 key in one of the accepted encodings."""


def logon_payload(msg_type: str, sender: str, target: str, seq: int | str, sending_time: str) -> bytes:
    """The exact bytes that are signed: 35, 49, 56, 34, 52 joined by SOH."""
    return SOH.join((msg_type, sender, target, str(seq), sending_time)).encode("utf-8", "replace")


def sign_logon(
    private_key: Ed25519PrivateKey, msg_type: str, sender: str, target: str, seq: int | str, sending_time: str
) -> str:
    """The base64 Ed25519 signature that goes into RawData (96)."""
    signature = private_key.sign(logon_payload(msg_type, sender, target, seq, sending_time))
    return base64.b64encode(signature).decode("ascii")


def verify_logon(
    public_key: Ed25519PublicKey,
    signature_b64: str,
    msg_type: str,
    sender: str,
    target: str,
    seq: int | str,
    sending_time: str,
) -> bool:
    """True when ``signature_b64`` is a valid signature of the logon payload by ``public_key``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(signature) != 64:
        return False
    try:
        public_key.verify(signature, logon_payload(msg_type, sender, target, seq, sending_time))
    except InvalidSignature:
        return False
    return True


def signed_logon_fields(
    private_key: Ed25519PrivateKey, key_id: str, sender: str, target: str, seq: int | str, sending_time: str
) -> list[tuple[int, str]]:
    """The fields a client adds to its Logon: RawDataLength (95), RawData (96), Username (553)."""
    signature = sign_logon(private_key, "A", sender, target, seq, sending_time)
    return [(TAG_RAW_DATA_LENGTH, str(len(signature))), (TAG_RAW_DATA, signature), (TAG_USERNAME, key_id)]


# ---- keys -------------------------------------------------------------------------------------


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(public_key: Ed25519PublicKey) -> str:
    """The public key as stored in the registry: base64 of the 32 raw bytes."""
    return base64.b64encode(raw_public_bytes(public_key)).decode("ascii")


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """A key id derived from the public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted."""
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(data: bytes | str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM, or from base64 PKCS#8 DER (Binance's vector form)."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(base64.b64decode(data, validate=True), password=None)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise KeyFormatError(f"not a readable unencrypted PKCS#8 private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError("not an Ed25519 private key")
    return key


def load_private_key_file(path: str | Path) -> Ed25519PrivateKey:
    return load_private_key(Path(path).read_bytes())


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo), or base64 of the 32 raw bytes."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            raw = base64.b64decode(data, validate=True)
            if len(raw) != 32:
                raise ValueError(f"expected 32 raw bytes, got {len(raw)}")
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise KeyFormatError(f"not a readable Ed25519 public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("not an Ed25519 public key")
    return key
