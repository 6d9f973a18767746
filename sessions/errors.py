"""The venue's business error codes (tag 7001 VenueErrorCode), shared by every session kind.

Codes 1-99 are the core's ``RejectCode`` values; 100+ are found at the FIX edge, before a
command reaches the core. docs/rules-of-engagement.md lists them all.
"""

from __future__ import annotations

from enum import IntEnum


class EdgeError(IntEnum):
    MISSING_FIELD = 100
    BAD_VALUE = 101
    UNSUPPORTED_ORDER_TYPE = 102
    UNSUPPORTED_TIME_IN_FORCE = 103
    UNKNOWN_ACCOUNT = 104
    UNSUPPORTED_MESSAGE = 105
    READ_ONLY_SESSION = 106


class EdgeReject(Exception):
    """A message that cannot become a venue command; carries a code, a text and the FIX reason."""

    def __init__(self, code: int, text: str, ord_rej_reason: int = 99) -> None:
        super().__init__(text)
        self.code = int(code)
        self.text = text
        self.ord_rej_reason = ord_rej_reason
