"""Syntax checks for FIX field values, one predicate per dictionary type.

Each predicate takes the raw ``bytes`` value and returns ``True`` when it is well formed.
The rules are QuickFIX's converters (``FieldConvertors.h``): integers are an optional '-'
and digits that fit the C++ type (no '+', no spaces); decimals are an optional '-', digits
and an optional fraction (``1.``, ``.5`` pass, ``+1``, ``1e5`` fail); timestamps are
``YYYYMMDD-HH:MM:SS[.f…]`` with up to nine fraction digits and ranged components.
Beyond QuickFIX (which treats them as strings) LOCALMKTDATE, UTCDATE(ONLY), MONTHYEAR and
DAYOFMONTH are checked against the FIX 4.4 specification.

Every numeric type is bounded in length *inside* its predicate, so the memoised checks of the
dictionary's hot path enforce the bounds at no extra pass, and no value is ever converted before
its length is known (``int()`` of a 5,000-digit string is slow and, past 4,300 digits, raises):

* INT, LENGTH, NUMINGROUP, TAGNUM: a signed 32-bit integer, as QuickFIX (at most 10 digits).
* SEQNUM: at most 18 digits (up to 999,999,999,999,999,999), stricter than QuickFIX's unsigned
  64-bit, so that a sequence number and its successor always fit a signed 64-bit column.
* FLOAT, QTY, PRICE, PRICEOFFSET, AMT, PERCENTAGE: at most 32 characters (sign, digits, point).
* DAYOFMONTH: 1 to 31.

:func:`bound_problem` says, for the reject's Text, when a value fails only for its size.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Check = Callable[[bytes], bool]

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

#: Longest SEQNUM, in digits: 999,999,999,999,999,999 + 1 still fits a signed 64-bit integer.
SEQNUM_MAX_DIGITS = 18
SEQNUM_MAX = 10**SEQNUM_MAX_DIGITS - 1
#: Longest decimal value (FLOAT, QTY, PRICE, PRICEOFFSET, AMT, PERCENTAGE), sign and point included.
DECIMAL_MAX_LEN = 32


def is_int(value: bytes) -> bool:
    """Signed 32-bit integer (QuickFIX IntConvertor: INT, LENGTH, NUMINGROUP, TAGNUM).

    The length is checked before any conversion: at most 10 digits, then the range."""
    if value.isdigit():
        n = len(value)
        return n < 10 or (n == 10 and int(value) <= _INT32_MAX)
    if value[:1] == b"-" and value[1:].isdigit():
        n = len(value)
        return n < 11 or (n == 11 and int(value) >= _INT32_MIN)
    return False


def is_seqnum(value: bytes) -> bool:
    """Non-negative integer of 1 to 18 digits (QuickFIX takes any unsigned 64-bit value; the
    venue stores sequence numbers in signed 64-bit columns and must be able to add one)."""
    return len(value) <= SEQNUM_MAX_DIGITS and value.isdigit()


def is_decimal(value: bytes) -> bool:
    """FLOAT, QTY, PRICE, PRICEOFFSET, AMT, PERCENTAGE (QuickFIX DoubleConvertor syntax).

    An optional '-', then digits with at most one '.', at least one digit; at most
    ``DECIMAL_MAX_LEN`` characters in all.
    """
    if len(value) > DECIMAL_MAX_LEN:
        return False
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

_INT_TYPES = frozenset({"INT", "LENGTH", "NUMINGROUP", "TAGNUM"})
_DECIMAL_TYPES = frozenset({"FLOAT", "QTY", "PRICE", "PRICEOFFSET", "AMT", "PERCENTAGE"})

#: The documented bound of each numeric type, as the reject's Text states it.
LIMITS: dict[str, str] = {
    **{t: f"a signed 32-bit integer ({_INT32_MIN} to {_INT32_MAX})" for t in _INT_TYPES},
    "SEQNUM": f"at most {SEQNUM_MAX_DIGITS} digits (0 to {SEQNUM_MAX})",
    **{t: f"at most {DECIMAL_MAX_LEN} characters" for t in _DECIMAL_TYPES},
    "DAYOFMONTH": "1 to 31",
}


def bound_problem(type_name: str, value: bytes) -> str | None:
    """How a value breaks its type's bound when it is well formed but too long or too large
    (``"has 5000 characters; a QTY is at most 32 characters"``, ``"= 32; a DAYOFMONTH is 1 to
    31"``), else None. The reject's Text puts the field's name and tag in front.

    Only called once a value has failed its check, to word the reject; never on the hot path.
    """
    if type_name in _INT_TYPES:
        digits = value[1:] if value[:1] == b"-" else value
        shaped = digits.isdigit()
    elif type_name == "SEQNUM":
        shaped = value.isdigit()
    elif type_name in _DECIMAL_TYPES:
        digits = value[1:] if value[:1] == b"-" else value
        shaped = len(value) > DECIMAL_MAX_LEN and digits.replace(b".", b"", 1).isdigit()
    elif type_name == "DAYOFMONTH":
        shaped = value.isdigit()
    else:
        return None
    if not shaped:
        return None
    shown = f"= {value.decode()}" if len(value) <= 20 else f"has {len(value)} characters"
    article = "an" if type_name[0] in "AEIOU" else "a"
    return f"{shown}; {article} {type_name} is {LIMITS[type_name]}"


#: Types whose enumerated values are space-separated lists (each item must be an enum).
MULTI_VALUE_TYPES = frozenset({"MULTIPLEVALUESTRING", "MULTIPLESTRINGVALUE", "MULTIPLECHARVALUE"})
