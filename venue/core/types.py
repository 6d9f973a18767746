"""Small enumerations shared by commands and events (values match FIX where FIX has one)."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Side(StrEnum):
    BUY = "1"
    SELL = "2"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrdType(StrEnum):
    MARKET = "1"
    LIMIT = "2"
    STOP = "3"
    STOP_LIMIT = "4"


class TimeInForce(StrEnum):
    DAY = "0"
    GTC = "1"
    IOC = "3"
    FOK = "4"
    GTD = "6"


class StpMode(StrEnum):
    """Self-trade prevention: what happens when an order would trade with its own account."""

    NONE = "N"
    EXPIRE_TAKER = "T"
    EXPIRE_MAKER = "M"
    EXPIRE_BOTH = "B"
    DECREMENT_CANCEL = "D"


class TradingStatus(StrEnum):
    OPEN = "open"
    HALTED = "halted"
    CLOSED = "closed"


class RejectCode(IntEnum):
    """Venue reject codes carried by OrderRejected / CancelRejected (documented for clients)."""

    UNKNOWN_INSTRUMENT = 1
    INSTRUMENT_HALTED = 2
    INSTRUMENT_CLOSED = 3
    BAD_TICK = 4
    BAD_LOT = 5
    QTY_TOO_SMALL = 6
    QTY_TOO_LARGE = 7
    NOTIONAL_TOO_SMALL = 8
    OUTSIDE_PRICE_BAND = 9
    POST_ONLY_WOULD_TAKE = 10
    FOK_NOT_FILLED = 11
    DUPLICATE_CL_ORD_ID = 12
    UNKNOWN_ORDER = 13
    INSUFFICIENT_BALANCE = 14
    KILL_SWITCH = 15
    NOT_ENTITLED = 16
    THROTTLED = 17
    RISK_LIMIT = 18
    INVALID_ORDER = 19
    NO_LIQUIDITY = 20
    SELF_TRADE = 21
    TOO_LATE_TO_CANCEL = 22


class CancelReason(StrEnum):
    CLIENT = "client"
    MASS_CANCEL = "mass_cancel"
    IOC_REMAINDER = "ioc_remainder"
    SELF_TRADE = "self_trade"
    CANCEL_ON_DISCONNECT = "cancel_on_disconnect"
    KILL_SWITCH = "kill_switch"
    OPERATOR = "operator"
    NO_LIQUIDITY = "no_liquidity"
    PRICE_BAND = "price_band"
    KYC = "kyc"
