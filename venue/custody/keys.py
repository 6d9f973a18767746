"""Private keys at rest: Ed25519 keys encrypted under a passphrase with scrypt + AES-256-GCM.

Every key has one purpose (``logon``, ``approval``, ``custody``) bound into the ciphertext as
associated data, so a key stored for one purpose cannot be unlocked as another. The KDF is
scrypt with n = 2**15 (r=8, p=1) by default, well above the library's PBKDF2 default; the
parameters are stored with each key so they can be raised later. Nothing here logs key material;
``SealedKey.__repr__`` shows only the id and purpose.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from venue.access.signing import key_id_for, raw_public_bytes

MIN_SCRYPT_N = 2**15


class KeyPurpose(StrEnum):
    LOGON = "logon"  # FIX logon signatures
    APPROVAL = "approval"  # operators' approvals of withdrawals and transfers
    CUSTODY = "custody"  # the venue's wallet keys (sign chain transfers)
    WITHDRAWAL = "withdrawal"  # a customer's key for signing withdrawal requests


class SealError(ValueError):
    """A key that cannot be unlocked (wrong passphrase, wrong purpose, tampered ciphertext)."""


@dataclass(slots=True, frozen=True)
class SealedKey:
    """An encrypted Ed25519 private key and what is needed to open it (all public data)."""

    key_id: str
    purpose: KeyPurpose
    public_key: bytes  # 32 raw bytes
    salt: bytes
    n: int
    r: int
    p: int
    nonce: bytes
    ciphertext: bytes = field(repr=False)

    def to_json(self) -> str:
        b = lambda x: base64.b64encode(x).decode("ascii")  # noqa: E731
        return json.dumps({"key_id": self.key_id, "purpose": str(self.purpose), "public_key": b(self.public_key),
                           "kdf": {"name": "scrypt", "n": self.n, "r": self.r, "p": self.p, "salt": b(self.salt)},
                           "cipher": {"name": "aes-256-gcm", "nonce": b(self.nonce),
                                      "ciphertext": b(self.ciphertext)}}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SealedKey:
        d = json.loads(text)
        u = base64.b64decode
        kdf, cipher = d["kdf"], d["cipher"]
        if kdf.get("name") != "scrypt" or cipher.get("name") != "aes-256-gcm":
            raise SealError("unsupported key envelope")
        return cls(d["key_id"], KeyPurpose(d["purpose"]), u(d["public_key"]), u(kdf["salt"]), int(kdf["n"]),
                   int(kdf["r"]), int(kdf["p"]), u(cipher["nonce"]), u(cipher["ciphertext"]))


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if n < MIN_SCRYPT_N:
        raise SealError(f"scrypt n={n} below the minimum {MIN_SCRYPT_N}")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _aad(key_id: str, purpose: KeyPurpose) -> bytes:
    return f"venue-key-v1|{purpose}|{key_id}".encode("ascii")


def seal(private_key: Ed25519PrivateKey, purpose: KeyPurpose, passphrase: str, *, n: int = MIN_SCRYPT_N,
         r: int = 8, p: int = 1) -> SealedKey:
    """Encrypt ``private_key`` for ``purpose`` under ``passphrase``."""
    if not passphrase:
        raise SealError("an empty passphrase is not allowed")
    pub = private_key.public_key()
    key_id = key_id_for(pub)
    salt, nonce = os.urandom(16), os.urandom(12)
    raw = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
    ct = AESGCM(_derive(passphrase, salt, n, r, p)).encrypt(nonce, raw, _aad(key_id, purpose))
    return SealedKey(key_id, purpose, raw_public_bytes(pub), salt, n, r, p, nonce, ct)


def unseal(sealed: SealedKey, passphrase: str, purpose: KeyPurpose) -> Ed25519PrivateKey:
    """Decrypt a sealed key; refuses a key of another purpose or a wrong passphrase."""
    if sealed.purpose != purpose:
        raise SealError(f"key {sealed.key_id} is a {sealed.purpose} key, not a {purpose} key")
    try:
        raw = AESGCM(_derive(passphrase, sealed.salt, sealed.n, sealed.r, sealed.p)).decrypt(
            sealed.nonce, sealed.ciphertext, _aad(sealed.key_id, purpose))
    except InvalidTag:
        raise SealError(f"cannot unlock key {sealed.key_id}: wrong passphrase or altered key") from None
    key = Ed25519PrivateKey.from_private_bytes(raw)
    if raw_public_bytes(key.public_key()) != sealed.public_key:
        raise SealError(f"key {sealed.key_id}: public key mismatch")
    return key


def generate(purpose: KeyPurpose, passphrase: str, **kdf: int) -> tuple[SealedKey, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    return seal(key, purpose, passphrase, **kdf), key


def public_from_raw(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)
