"""Sealed keys (scrypt + AES-GCM, one purpose each) and the canonical signed documents."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from venue.access.signing import key_id_for
from venue.custody import keys
from venue.custody.keys import KeyPurpose, SealError
from venue.custody.requests import (
    Approval,
    RequestFormatError,
    SignedRequest,
    WithdrawalRequest,
    format_amount,
    parse_amount,
    sign_approval,
    sign_request,
)

_SEALED: dict[str, tuple[keys.SealedKey, Ed25519PrivateKey]] = {}


def sealed_custody() -> tuple[keys.SealedKey, Ed25519PrivateKey]:
    if not _SEALED:
        _SEALED["k"] = keys.generate(KeyPurpose.CUSTODY, "correct horse")
    return _SEALED["k"]


def test_sealed_key_round_trips_through_json_and_unlocks_with_its_passphrase():
    sealed, key = sealed_custody()
    again = keys.SealedKey.from_json(sealed.to_json())
    opened = keys.unseal(again, "correct horse", KeyPurpose.CUSTODY)
    assert opened.sign(b"x") == key.sign(b"x")
    assert again.key_id == key_id_for(key.public_key())
    assert again.n >= 2**15


def test_wrong_passphrase_or_altered_ciphertext_does_not_unlock():
    sealed, _ = sealed_custody()
    with pytest.raises(SealError, match="wrong passphrase"):
        keys.unseal(sealed, "wrong", KeyPurpose.CUSTODY)
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(SealError):
        keys.unseal(dataclasses.replace(sealed, ciphertext=flipped), "correct horse", KeyPurpose.CUSTODY)


def test_a_key_sealed_for_one_purpose_cannot_be_used_for_another():
    sealed, _ = sealed_custody()
    with pytest.raises(SealError, match="not a approval key"):
        keys.unseal(sealed, "correct horse", KeyPurpose.APPROVAL)
    # relabelling the envelope does not help: the purpose is bound into the ciphertext
    relabelled = dataclasses.replace(sealed, purpose=KeyPurpose.LOGON)
    with pytest.raises(SealError, match="wrong passphrase or altered"):
        keys.unseal(relabelled, "correct horse", KeyPurpose.LOGON)


def test_weak_kdf_parameters_and_empty_passphrases_are_refused():
    key = Ed25519PrivateKey.generate()
    with pytest.raises(SealError, match="below the minimum"):
        keys.seal(key, KeyPurpose.CUSTODY, "pw", n=2**14)
    with pytest.raises(SealError, match="empty passphrase"):
        keys.seal(key, KeyPurpose.CUSTODY, "")


def test_sealed_key_never_shows_secret_material(caplog):
    sealed, key = sealed_custody()
    text = repr(sealed) + str(sealed)
    logging.getLogger("t").warning("%s", sealed)
    raw = key.private_bytes_raw()
    assert sealed.ciphertext.hex() not in text and raw.hex() not in caplog.text
    assert "ciphertext" not in text and "correct horse" not in sealed.to_json()


def test_amounts_have_exactly_one_canonical_spelling():
    assert format_amount(150_000_000, 8) == "1.5"
    assert format_amount(1, 8) == "0.00000001"
    assert format_amount(2_000_000, 6) == "2"
    assert parse_amount("1.5", 8) == 150_000_000
    for bad in ("1.50", "+1.5", "1.5e0", "01.5", "0", "-1", "1.000000001", "NaN", "abc", " 1.5"):
        with pytest.raises(RequestFormatError):
            parse_amount(bad, 8)


def test_request_signature_covers_every_field_and_the_domain_tag():
    key = Ed25519PrivateKey.generate()
    req = WithdrawalRequest("A1", "BTC", "0.5", "dest", "n1", 2_000_000_000)
    signed = sign_request(key, "kid", req)
    assert signed.verify(key.public_key())
    body = json.loads(req.canonical())
    assert body["domain"] == "venue/custody/withdrawal-request/v1"
    assert set(body) == {"domain", "account", "asset", "amount", "destination", "nonce", "expiry"}
    for change in ({"account": "A2"}, {"asset": "ETH"}, {"amount": "0.6"}, {"destination": "x"},
                   {"nonce": "n2"}, {"expiry": 2_000_000_001}):
        assert not SignedRequest(dataclasses.replace(req, **change), "kid", signed.signature).verify(
            key.public_key())
    # the same bytes signed as an approval are not a request signature (domain separation)
    ap = sign_approval(key, Approval("W1", "0" * 64, "approve", "op", "n1", 2_000_000_000))
    assert not SignedRequest(req, "kid", ap.signature).verify(key.public_key())
    assert SignedRequest.from_json(signed.to_json()) == signed


def test_malformed_fields_and_signatures_do_not_verify():
    key = Ed25519PrivateKey.generate()
    req = WithdrawalRequest("A1", "BTC", "0.5", "dest with space", "n1", 2_000_000_000)
    with pytest.raises(RequestFormatError):
        req.canonical()
    ok = sign_request(key, "kid", WithdrawalRequest("A1", "BTC", "0.5", "dest", "n1", 2_000_000_000))
    for sig in ("", "not base64!", "AAAA"):
        assert not dataclasses.replace(ok, signature=sig).verify(key.public_key())
