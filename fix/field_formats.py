"""Syntax checks for FIX field values, one predicate per dictionary type.

Each predicate takes the raw ``bytes`` value and returns ``True`` when it is well formed.
The rules are QuickFIX's converters (``FieldConvertors.h``): integers are an optional '-'
and digits that fit the C++ type (no '+', no spaces); decimals are an optional '-', digits
and an optional fraction (``1.``, ``.5`` pass, ``+1``, ``1e5`` fail); timestamps are
``YYYYMMDD-HH:MM:SS[.f…]`` with up to nine fraction digits and ranged components.
Beyond QuickFIX (which treats them as strings) LOCALMKTDATE, UTCDATE(ONLY), MONTHYEAR and
DAYOFMONTH are checked against the FIX 4.4 specification.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Check = Callable[[bytes], bool]

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_UINT64_MAX = 2**64 - 1


def is_int(value: bytes) -> bool:
    """Signed 32-bit integer (QuickFIX IntConvertor: INT, LENGTH, NUMINGROUP, TAGNUM)."""
    if value.isdigit():
        return len(value) < 10 or int(value) <= _INT32_MAX
    if value[:1] == b"-" and value[1:].isdigit():
        return len(value) < 11 or int(value) >= _INT32_MIN
    return False


def is_seqnum(value: bytes) -> bool:
    """Unsigned 64-bit integer (QuickFIX UInt64Convertor)."""
    return value.isdigit() and (len(value) < 20 or int(value) <= _UINT64_MAX)


def is_decimal(value: bytes) -> bool:
    """FLOAT, QTY, PRICE, PRICEOFFSET, AMT, PERCENTAGE (QuickFIX DoubleConvertor).

    An optional '-', then digits with at most one '.', at least one digit.
    """
    if value[:1] == b"-":
        value = value[1:]
    return value.replace(b".", b"", 1).isdigit()


def is_char(value: bytes) -> bool:
    return len(value) == 1


def is_boolean(value: bytes) -> bool:
    return value == b"Y" or value == b"N"


_DATE = rb"\d{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_TIME = rb"(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)"
_FRACTION = rb"(?:\.\d{0,9})?"  # QuickFIX accepts a bare '.', and at most 27 characters overall
_UTCTIMESTAMP = re.compile(_DATE + b"-" + _TIME + _FRACTION)
_UTCTIMEONLY = re.compile(_TIME + _FRACTION)
_DATE_ONLY = re.compile(_DATE)
_MONTHYEAR = re.compile(rb"\d{4}(?:0[1-9]|1[0-2])(?:(?:0[1-9]|[12]\d|3[01])|w[1-5])?")


def is_utctimestamp(value: bytes) -> bool:
    """``YYYYMMDD-HH:MM:SS`` optionally followed by ``.`` and up to 9 digits (ranges checked)."""
    return _UTCTIMESTAMP.fullmatch(value) is not None


def is_utctimeonly(value: bytes) -> bool:
    """``HH:MM:SS`` optionally followed by ``.`` and up to 9 digits."""
    return _UTCTIMEONLY.fullmatch(value) is not None


def is_date(value: bytes) -> bool:
    """UTCDATEONLY, UTCDATE and LOCALMKTDATE: ``YYYYMMDD``, month 1-12, day 1-31."""
    return _DATE_ONLY.fullmatch(value) is not None


def is_monthyear(value: bytes) -> bool:
    """``YYYYMM``, ``YYYYMMDD`` or ``YYYYMMwN`` (N = week 1-5)."""
    return _MONTHYEAR.fullmatch(value) is not None


def is_dayofmonth(value: bytes) -> bool:
    return value.isdigit() and len(value) <= 2 and 1 <= int(value) <= 31


#: Dictionary type name → predicate. Types absent here (STRING, CURRENCY, EXCHANGE, COUNTRY,
#: MULTIPLEVALUESTRING, DATA, …) accept any value, as in QuickFIX.
CHECKS: dict[str, Check] = {
    "INT": is_int,
    "LENGTH": is_int,
    "NUMINGROUP": is_int,
    "TAGNUM": is_int,
    "SEQNUM": is_seqnum,
    "FLOAT": is_decimal,
    "QTY": is_decimal,
    "PRICE": is_decimal,
    "PRICEOFFSET": is_decimal,
    "AMT": is_decimal,
    "PERCENTAGE": is_decimal,
    "CHAR": is_char,
    "BOOLEAN": is_boolean,
    "UTCTIMESTAMP": is_utctimestamp,
    "TIME": is_utctimestamp,
    "UTCTIMEONLY": is_utctimeonly,
    "UTCDATEONLY": is_date,
    "UTCDATE": is_date,
    "LOCALMKTDATE": is_date,
    "MONTHYEAR": is_monthyear,
    "DAYOFMONTH": is_dayofmonth,
}

#: Types whose enumerated values are space-separated lists (each item must be an enum).
MULTI_VALUE_TYPES = frozenset({"MULTIPLEVALUESTRING", "MULTIPLESTRINGVALUE", "MULTIPLECHARVALUE"})
