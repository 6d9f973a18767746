"""The Binance FIX-API logon signature scheme, checked against Binance's published vector."""

from __future__ import annotations

from venue.access.signing import (
    generate_key,
    key_id_for,
    load_private_key,
    load_public_key,
    logon_payload,
    private_key_pem,
    public_key_b64,
    sign_logon,
    signed_logon_fields,
    verify_logon,
)

BINANCE_KEY = "MC4CAQAwBQYDK2VwBCIEIIJEYWtGBrhACmb9Dvy+qa8WEf0lQOl1s4CLIAB9m89u"
BINANCE_SIG = "4MHXelVVcpkdwuLbl6n73HQUXUf1dse2PCgT1DYqW9w8AVZ1RACFGM+5UdlGPrQHrgtS3CvsRURC1oj73j8gCA=="
VECTOR = ("A", "EXAMPLE", "SPOT", 1, "20240627-11:17:25.223")


def test_binance_published_vector_is_reproduced():
    key = load_private_key(BINANCE_KEY)
    assert sign_logon(key, *VECTOR) == BINANCE_SIG


def test_binance_vector_verifies_with_the_public_key():
    key = load_private_key(BINANCE_KEY)
    assert verify_logon(key.public_key(), BINANCE_SIG, *VECTOR)


def test_payload_is_soh_joined_without_trailing_soh():
    assert logon_payload(*VECTOR) == b"A\x01EXAMPLE\x01SPOT\x011\x0120240627-11:17:25.223"


def test_changing_any_signed_field_breaks_the_signature():
    key = load_private_key(BINANCE_KEY)
    pub = key.public_key()
    for i, other in enumerate(("0", "OTHER", "SPOT2", 2, "20240627-11:17:25.224")):
        fields = list(VECTOR)
        fields[i] = other
        assert not verify_logon(pub, BINANCE_SIG, *fields)


def test_garbage_signature_is_rejected_not_raised():
    pub = load_private_key(BINANCE_KEY).public_key()
    assert not verify_logon(pub, "not base64!!", *VECTOR)
    assert not verify_logon(pub, "AAAA", *VECTOR)


def test_signature_by_another_key_is_rejected():
    other = generate_key()
    assert not verify_logon(other.public_key(), BINANCE_SIG, *VECTOR)


def test_signed_logon_fields_carry_length_signature_and_key_id():
    key = load_private_key(BINANCE_KEY)
    fields = dict(signed_logon_fields(key, "kid-1", "EXAMPLE", "SPOT", 1, "20240627-11:17:25.223"))
    assert fields[96] == BINANCE_SIG
    assert fields[95] == str(len(BINANCE_SIG))
    assert fields[553] == "kid-1"


def test_pem_round_trip_and_stable_key_id():
    key = generate_key()
    again = load_private_key(private_key_pem(key))
    assert public_key_b64(again.public_key()) == public_key_b64(key.public_key())
    pub = load_public_key(public_key_b64(key.public_key()))
    assert key_id_for(pub) == key_id_for(key.public_key())
    assert len(key_id_for(pub)) == 16
