"""Who submitted a withdrawal request, authenticated: four eyes needs the submitter to be a person
the venue knows, not a name a tool typed (the CLI's ``--actor`` was free text, so an operator could
submit as "x" and then approve their own request).

A submission is a registered operator's Ed25519 signature (their approval key, the one
``venue withdrawals approve`` signs with) over the canonical JSON of: domain tag, the request's
digest, the operator's name and an expiry (unix seconds). The venue verifies it against the
operator's registered key and stores that operator as the request's submitter; an instruction
without a valid submission is refused.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from venue.custody.requests import RequestFormatError, SignedRequest, _canonical, _check_token, _verify

SUBMISSION_DOMAIN = "venue/custody/submission/v1"
MAX_TTL_S = 86_400  # a submission is signed just before it is handed in; a day is generous
NS = 1_000_000_000


class SubmissionError(ValueError):
    """The submission is missing, malformed, not signed by a registered operator, or expired."""


@dataclass(slots=True, frozen=True)
class Submission:
    digest: str  # the withdrawal request's digest
    operator: str
    expiry: int  # unix seconds

    def canonical(self) -> bytes:
        _check_token("operator", self.operator)
        if not isinstance(self.digest, str) or len(self.digest) != 64:
            raise RequestFormatError("digest must be 64 hex digits")
        if not isinstance(self.expiry, int) or self.expiry <= 0:
            raise RequestFormatError("expiry must be a positive integer (unix seconds)")
        return _canonical({"domain": SUBMISSION_DOMAIN, **asdict(self)})


@dataclass(slots=True, frozen=True)
class SignedSubmission:
    submission: Submission
    signature: str

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        try:
            payload = self.submission.canonical()
        except RequestFormatError:
            return False
        return _verify(public_key, self.signature, payload)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.submission), "signature": self.signature}

    @classmethod
    def from_dict(cls, d: Any) -> SignedSubmission:
        try:
            return cls(Submission(str(d["digest"]), str(d["operator"]), int(d["expiry"])), str(d["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SubmissionError(f"malformed submission: {exc}") from None


def sign_submission(key: Ed25519PrivateKey, request: SignedRequest, operator: str, expiry: int) -> SignedSubmission:
    s = Submission(request.request.digest(), operator, expiry)
    return SignedSubmission(s, base64.b64encode(key.sign(s.canonical())).decode("ascii"))


async def submitter(directory: Any, raw: Any, request: SignedRequest, now_ns: int) -> str:
    """The registered operator who signed this request's submission; SubmissionError otherwise."""
    if raw is None:
        raise SubmissionError("a withdrawal is submitted by a registered operator: sign the submission with "
                              "your operator key (venue withdraw submit/sign --operator NAME --operator-key FILE)")
    signed = SignedSubmission.from_dict(raw)
    s = signed.submission
    op = await directory.operator(s.operator)
    if op is None:
        raise SubmissionError(f"{s.operator} is not a registered operator")
    if not signed.verify(Ed25519PublicKey.from_public_bytes(op.public_key)):
        raise SubmissionError(f"bad submission signature: not signed by {s.operator}'s key, or altered")
    if s.digest != request.request.digest():
        raise SubmissionError("the submission is for a different request (digest mismatch)")
    if s.expiry * NS <= now_ns:
        raise SubmissionError(f"the submission expired at {s.expiry} (unix seconds)")
    if s.expiry * NS > now_ns + MAX_TTL_S * NS:
        raise SubmissionError(f"the submission is valid for more than {MAX_TTL_S} s")
    return s.operator
