"""Signed withdrawal requests and operator approvals: canonical bytes, signing, verification.

A withdrawal request is signed by the customer's Ed25519 withdrawal key over the canonical JSON
(sorted keys, no spaces, ASCII) of: domain tag, account, asset, amount (canonical decimal
string), destination, nonce, expiry (unix seconds). Its digest (SHA-256 of those bytes) names
it. An approval is an operator's Ed25519 signature over the canonical JSON of: domain tag,
request id, request digest, decision, operator, nonce, expiry. Nothing is ever signed over
free-form text, and no field can be reinterpreted as another (separate domain tags).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

REQUEST_DOMAIN = "venue/custody/withdrawal-request/v1"
APPROVAL_DOMAIN = "venue/custody/approval/v1"
DECISIONS = ("approve", "reject")
_TOKEN = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class RequestFormatError(ValueError):
    """A request or approval that is not well formed (before any signature check)."""


def format_amount(units: int, decimals: int) -> str:
    """Integer smallest units -> canonical decimal string ('1.5', '0.00000001', '20')."""
    if units <= 0:
        raise RequestFormatError("amount must be positive")
    d = Decimal(units).scaleb(-decimals)
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_amount(text: str, decimals: int) -> int:
    """Canonical decimal string -> integer units; refuses any non-canonical spelling."""
    try:
        d = Decimal(text)
    except (InvalidOperation, TypeError):
        raise RequestFormatError(f"amount {text!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise RequestFormatError(f"amount {text!r} must be a positive number")
    scaled = d.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise RequestFormatError(f"amount {text!r} has more than {decimals} decimals")
    units = int(scaled)
    if format_amount(units, decimals) != text:
        raise RequestFormatError(f"amount {text!r} is not in canonical form ({format_amount(units, decimals)!r})")
    return units


def _check_token(name: str, value: str) -> None:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise RequestFormatError(f"{name} {value!r} is not a valid token")


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _b64sig(sig: str) -> bytes | None:
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    return raw if len(raw) == 64 else None


def _verify(public_key: Ed25519PublicKey, signature: str, payload: bytes) -> bool:
    raw = _b64sig(signature)
    if raw is None:
        return False
    try:
        public_key.verify(raw, payload)
    except InvalidSignature:
        return False
    return True


@dataclass(slots=True, frozen=True)
class WithdrawalRequest:
    account: str
    asset: str
    amount: str  # canonical decimal string
    destination: str
    nonce: str
    expiry: int  # unix seconds

    def validate(self) -> None:
        for name in ("account", "asset", "destination", "nonce"):
            _check_token(name, getattr(self, name))
        if not isinstance(self.expiry, int) or isinstance(self.expiry, bool) or self.expiry <= 0:
            raise RequestFormatError("expiry must be a positive integer (unix seconds)")
        if not isinstance(self.amount, str):
            raise RequestFormatError("amount must be a decimal string")

    def canonical(self) -> bytes:
        self.validate()
        return _canonical({"domain": REQUEST_DOMAIN, **asdict(self)})

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @property
    def request_id(self) -> str:
        return "W" + self.digest()[:23]


@dataclass(slots=True, frozen=True)
class SignedRequest:
    request: WithdrawalRequest
    key_id: str
    signature: str  # base64 of 64 bytes

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            payload = self.request.canonical()
        except RequestFormatError:
            return False
        return _verify(public_key, self.signature, payload)

    def to_json(self) -> str:
        return json.dumps({"request": asdict(self.request), "key_id": self.key_id, "signature": self.signature},
                          sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> SignedRequest:
        try:
            d = json.loads(text)
            r = d["request"]
            req = WithdrawalRequest(str(r["account"]), str(r["asset"]), str(r["amount"]), str(r["destination"]),
                                    str(r["nonce"]), int(r["expiry"]))
            return cls(req, str(d["key_id"]), str(d.get("signature", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise RequestFormatError(f"not a withdrawal request document: {exc}") from None


def sign_request(key: Ed25519PrivateKey, key_id: str, request: WithdrawalRequest) -> SignedRequest:
    return SignedRequest(request, key_id, base64.b64encode(key.sign(request.canonical())).decode("ascii"))


@dataclass(slots=True, frozen=True)
class Approval:
    request_id: str
    digest: str
    decision: str  # approve | reject
    operator: str
    nonce: str
    expiry: int  # unix seconds

    def canonical(self) -> bytes:
        for name in ("request_id", "operator", "nonce"):
            _check_token(name, getattr(self, name))
        if self.decision not in DECISIONS:
            raise RequestFormatError(f"decision must be one of {DECISIONS}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise RequestFormatError("digest must be 64 lowercase hex digits")
        return _canonical({"domain": APPROVAL_DOMAIN, **asdict(self)})


@dataclass(slots=True, frozen=True)
class SignedApproval:
    approval: Approval
    signature: str

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            payload = self.approval.canonical()
        except RequestFormatError:
            return False
        return _verify(public_key, self.signature, payload)


def sign_approval(key: Ed25519PrivateKey, approval: Approval) -> SignedApproval:
    return SignedApproval(approval, base64.b64encode(key.sign(approval.canonical())).decode("ascii"))


ADDRESS_DOMAIN = "venue/custody/whitelist-address/v1"


@dataclass(slots=True, frozen=True)
class AddressAddition:
    """A customer's signed instruction to whitelist a withdrawal destination."""

    account: str
    asset: str
    address: str
    label: str
    nonce: str
    expiry: int  # unix seconds

    def canonical(self) -> bytes:
        for name in ("account", "asset", "address", "nonce"):
            _check_token(name, getattr(self, name))
        if not isinstance(self.label, str) or len(self.label) > 128 or not self.label.isprintable():
            raise RequestFormatError("label must be printable text of at most 128 characters")
        if not isinstance(self.expiry, int) or self.expiry <= 0:
            raise RequestFormatError("expiry must be a positive integer (unix seconds)")
        return _canonical({"domain": ADDRESS_DOMAIN, **asdict(self)})


@dataclass(slots=True, frozen=True)
class SignedAddressAddition:
    addition: AddressAddition
    key_id: str
    signature: str

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            payload = self.addition.canonical()
        except RequestFormatError:
            return False
        return _verify(public_key, self.signature, payload)


def sign_address(key: Ed25519PrivateKey, key_id: str, addition: AddressAddition) -> SignedAddressAddition:
    return SignedAddressAddition(addition, key_id, base64.b64encode(key.sign(addition.canonical())).decode("ascii"))
