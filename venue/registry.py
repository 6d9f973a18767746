"""The registry: firms, accounts (KYC), FIX sessions, their keys and allow-lists, operators.

SQLAlchemy 2 Core tables on their own ``metadata``; async functions that take an ``AsyncEngine``
(own transaction) or an ``AsyncConnection`` (the caller's transaction, e.g. to write the audit
entry of a change in the same transaction). Loaders return plain frozen dataclasses.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.db import connect  # noqa: F401 - registry.connect is used by callers

metadata = MetaData()

KYC_STATUSES = ("pending", "verified", "rejected", "expired")
SESSION_KINDS = ("order_entry", "drop_copy", "market_data")
KEY_STATES = ("active", "retired")
OPERATOR_ROLES = ("admin", "operator", "compliance", "viewer")
MAX_ACTIVE_KEYS = 2

firms = Table(
    "reg_firms",
    metadata,
    Column("firm_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)

accounts = Table(
    "reg_accounts",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("firm_id", String(64), ForeignKey("reg_firms.firm_id"), nullable=False),
    Column("kyc_status", String(16), nullable=False),
    Column("tier", Integer, nullable=False),
    Column("kyc_expires", Date, nullable=True),
    Column("stp_default", String(1), nullable=False),
    Column("max_order_qty", String(40), nullable=True),
    Column("max_order_notional", String(40), nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

kyc_tiers = Table(
    "reg_kyc_tiers",
    metadata,
    Column("tier", Integer, primary_key=True),
    Column("max_order_notional", String(40), nullable=True),
    Column("max_daily_notional", String(40), nullable=True),
)

fix_sessions = Table(
    "reg_fix_sessions",
    metadata,
    Column("sender_comp_id", String(64), primary_key=True),
    Column("target_comp_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("firm_id", String(64), ForeignKey("reg_firms.firm_id"), nullable=False),
    Column("allowed_networks", Text, nullable=False),  # JSON list of CIDR strings
    Column("heartbeat_min", Integer, nullable=False),
    Column("heartbeat_max", Integer, nullable=False),
    Column("throttle_rate", Float, nullable=False),
    Column("throttle_burst", Integer, nullable=False),
    Column("cancel_on_disconnect", Boolean, nullable=False),
    Column("spare_gtc", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("require_signature", Boolean, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

session_accounts = Table(
    "reg_session_accounts",
    metadata,
    Column("sender_comp_id", String(64), ForeignKey("reg_fix_sessions.sender_comp_id"), primary_key=True),
    Column("account_id", String(64), ForeignKey("reg_accounts.account_id"), primary_key=True),
)

session_keys = Table(
    "reg_session_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("sender_comp_id", String(64), ForeignKey("reg_fix_sessions.sender_comp_id"), nullable=False),
    Column("public_key", String(64), nullable=False),  # base64 of the 32 raw bytes
    Column("state", String(8), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("retired_ns", BigInteger, nullable=True),
)

operators = Table(
    "reg_operators",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
)


class RegistryError(ValueError):
    """A registry change that cannot be made (unknown or duplicate name, bad value)."""


# ---- records ----------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class FirmRecord:
    firm_id: str
    name: str


@dataclass(slots=True, frozen=True)
class AccountRecord:
    account_id: str
    firm_id: str
    kyc_status: str
    tier: int
    kyc_expires: date | None
    stp_default: str
    max_order_qty: Decimal | None
    max_order_notional: Decimal | None

    def kyc_problem(self, today: date) -> str | None:
        """Why this account may not trade on ``today`` (UTC), or None when it may."""
        if self.kyc_status != "verified":
            return f"account {self.account_id} KYC status is {self.kyc_status}"
        if self.kyc_expires is not None and today > self.kyc_expires:
            return f"account {self.account_id} KYC expired on {self.kyc_expires.isoformat()}"
        return None


@dataclass(slots=True, frozen=True)
class KycTier:
    tier: int
    max_order_notional: Decimal | None
    max_daily_notional: Decimal | None


@dataclass(slots=True, frozen=True)
class SessionKey:
    key_id: str
    sender_comp_id: str
    public_key: str
    state: str
    created_ns: int
    retired_ns: int | None


@dataclass(slots=True, frozen=True)
class SessionRecord:
    sender_comp_id: str
    target_comp_id: str
    kind: str
    firm_id: str
    accounts: tuple[str, ...]
    allowed_networks: tuple[str, ...]
    heartbeat_min: int
    heartbeat_max: int
    throttle_rate: float
    throttle_burst: int
    cancel_on_disconnect: bool
    spare_gtc: bool
    enabled: bool
    require_signature: bool
    keys: tuple[SessionKey, ...] = ()
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_networks", tuple(ipaddress.ip_network(n) for n in self.allowed_networks))

    def allows(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """True when ``ip`` falls in one of this session's allowed networks."""
        addr = normalize_ip(ip)
        if addr is None:
            return False
        return any(addr.version == net.version and addr in net for net in self._networks)

    @property
    def active_keys(self) -> tuple[SessionKey, ...]:
        return tuple(k for k in self.keys if k.state == "active")


@dataclass(slots=True, frozen=True)
class OperatorRecord:
    name: str
    role: str
    public_key: str


# ---- helpers ----------------------------------------------------------------------------------


def normalize_ip(ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address | None):
    """An ``ipaddress`` object; IPv4-mapped IPv6 becomes IPv4 and a zone id is dropped; None if bad."""
    if ip is None:
        return None
    if not isinstance(ip, str):
        addr = ip
    else:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0].strip("[]"))
        except ValueError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_networks(cidrs: Iterable[str]) -> list[str]:
    """Validate and normalise CIDR strings (IPv4 or IPv6); a bare address becomes /32 or /128."""
    out: list[str] = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise RegistryError(f"not a network in CIDR notation: {cidr!r}") from None
        if str(net) not in out:
            out.append(str(net))
    return out


#: Bounds on what the registry takes, so no limit or setting can make the core raise on an order
#: (a limit of 1e999999 overflowed the decimal context on every order of its account): a limit is
#: a plain positive decimal of ASCII digits, at most MAX_LIMIT (2**62, the ledger's bound on a
#: quantity in units: a larger limit limits nothing) with at most MAX_LIMIT_DECIMALS decimals.
MAX_LIMIT = Decimal(2**62)
MAX_LIMIT_DECIMALS = 18
_LIMIT_RE = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+", re.ASCII)
#: Integers are within 32 bits; throttle rate in messages per second, a finite number in this range.
MAX_TIER = 2**31 - 1
MAX_HEARTBEAT = 86_400
MIN_THROTTLE_RATE = 0.01
MAX_THROTTLE_RATE = 10_000_000.0
MAX_THROTTLE_BURST = 10_000_000
#: A CompID travels in FIX fields (SOH-delimited tag=value) and logs: printable ASCII, no '|'/'='.
_COMP_ID_RE = re.compile(r"[!-~]([ -~]{0,62}[!-~])?", re.ASCII)


def _decimal(value: Decimal | str | int | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    text = str(value)
    if isinstance(value, str) and not _LIMIT_RE.fullmatch(text):
        raise RegistryError(f"{what} must be a plain positive decimal number (ASCII digits, no sign or "
                            f"exponent), got {value!r}")
    try:
        dec = Decimal(text)
    except (InvalidOperation, ValueError):
        raise RegistryError(f"{what} must be a decimal number, got {value!r}") from None
    if not dec.is_finite() or dec <= 0:
        raise RegistryError(f"{what} must be positive, got {value!r}")
    if dec > MAX_LIMIT:
        raise RegistryError(f"{what} must be at most {MAX_LIMIT}, got {text[:40]}")
    if dec.as_tuple().exponent < -MAX_LIMIT_DECIMALS:  # type: ignore[operator]  # finite: an int
        raise RegistryError(f"{what} has more than {MAX_LIMIT_DECIMALS} decimals, got {text[:60]}")
    return format(dec, "f")


def _bounded_int(value: int, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RegistryError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return value


def check_comp_id(comp_id: str, what: str = "CompID") -> str:
    """A CompID: 1 to 64 printable ASCII characters, no surrounding spaces, no '|' or '=' (no SOH
    or any control character: it is written into FIX messages)."""
    if not isinstance(comp_id, str) or not _COMP_ID_RE.fullmatch(comp_id) or "|" in comp_id or "=" in comp_id:
        raise RegistryError(f"{what} must be 1 to 64 printable ASCII characters without '|', '=', control "
                            f"characters or surrounding spaces, got {comp_id!r}")
    return comp_id


def _dec_or_none(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _now_ns() -> int:
    return time.time_ns()


async def create_schema(engine: AsyncEngine) -> None:
    """Create the registry and audit tables if they do not exist."""
    from venue import audit

    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await audit.create_schema(engine)


# ---- firms and accounts -----------------------------------------------------------------------


async def create_firm(db: AsyncEngine | AsyncConnection, firm_id: str, name: str | None = None) -> FirmRecord:
    if not firm_id:
        raise RegistryError("a firm needs an id")
    async with connect(db) as conn:
        if await conn.scalar(select(firms.c.firm_id).where(firms.c.firm_id == firm_id)):
            raise RegistryError(f"firm {firm_id} already exists")
        await conn.execute(insert(firms).values(firm_id=firm_id, name=name or firm_id, created_ns=_now_ns()))
    return FirmRecord(firm_id, name or firm_id)


async def create_account(
    db: AsyncEngine | AsyncConnection,
    account_id: str,
    firm_id: str,
    *,
    kyc_status: str = "pending",
    tier: int = 1,
    kyc_expires: date | None = None,
    stp_default: str = "T",
    max_order_qty: Decimal | str | None = None,
    max_order_notional: Decimal | str | None = None,
) -> None:
    if not account_id:
        raise RegistryError("an account needs an id")
    _check_kyc(kyc_status, tier)
    async with connect(db) as conn:
        if not await conn.scalar(select(firms.c.firm_id).where(firms.c.firm_id == firm_id)):
            raise RegistryError(f"unknown firm {firm_id}")
        if await conn.scalar(select(accounts.c.account_id).where(accounts.c.account_id == account_id)):
            raise RegistryError(f"account {account_id} already exists")
        now = _now_ns()
        await conn.execute(
            insert(accounts).values(
                account_id=account_id,
                firm_id=firm_id,
                kyc_status=kyc_status,
                tier=tier,
                kyc_expires=kyc_expires,
                stp_default=stp_default,
                max_order_qty=_decimal(max_order_qty, "max order quantity"),
                max_order_notional=_decimal(max_order_notional, "max order notional"),
                created_ns=now,
                updated_ns=now,
            )
        )


def _check_kyc(status: str, tier: int | None) -> None:
    if status not in KYC_STATUSES:
        raise RegistryError(f"KYC status must be one of {', '.join(KYC_STATUSES)}, got {status!r}")
    if tier is not None:
        _bounded_int(tier, "tier", 0, MAX_TIER)


async def set_kyc(
    db: AsyncEngine | AsyncConnection,
    account_id: str,
    status: str,
    *,
    tier: int | None = None,
    expires: date | None = None,
) -> AccountRecord:
    """Change an account's KYC status (and optionally tier and expiry); returns the old record."""
    _check_kyc(status, tier)
    async with connect(db) as conn:
        old = await _get_account(conn, account_id)
        values: dict[str, object] = {"kyc_status": status, "updated_ns": _now_ns()}
        if tier is not None:
            values["tier"] = tier
        if expires is not None:
            values["kyc_expires"] = expires
        await conn.execute(update(accounts).where(accounts.c.account_id == account_id).values(**values))
    return old


async def _get_account(conn: AsyncConnection, account_id: str) -> AccountRecord:
    row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).first()
    if row is None:
        raise RegistryError(f"unknown account {account_id}")
    return _account(row)


def _account(row) -> AccountRecord:
    return AccountRecord(
        account_id=row.account_id,
        firm_id=row.firm_id,
        kyc_status=row.kyc_status,
        tier=row.tier,
        kyc_expires=row.kyc_expires,
        stp_default=row.stp_default,
        max_order_qty=_dec_or_none(row.max_order_qty),
        max_order_notional=_dec_or_none(row.max_order_notional),
    )


async def set_tier_limits(
    db: AsyncEngine | AsyncConnection,
    tier: int,
    max_order_notional: Decimal | str | None,
    max_daily_notional: Decimal | str | None,
) -> None:
    """Set the order-notional limits (per order, per day) that a KYC tier allows."""
    _bounded_int(tier, "tier", 0, MAX_TIER)
    async with connect(db) as conn:
        await conn.execute(delete(kyc_tiers).where(kyc_tiers.c.tier == tier))
        await conn.execute(
            insert(kyc_tiers).values(
                tier=tier,
                max_order_notional=_decimal(max_order_notional, "tier max order notional"),
                max_daily_notional=_decimal(max_daily_notional, "tier max daily notional"),
            )
        )


# ---- sessions ---------------------------------------------------------------------------------


async def create_session(
    db: AsyncEngine | AsyncConnection,
    sender_comp_id: str,
    *,
    firm_id: str,
    kind: str = "order_entry",
    target_comp_id: str = "VENUE",
    entitled_accounts: Sequence[str] = (),
    allowed_networks: Sequence[str] = ("127.0.0.0/8", "::1/128"),
    heartbeat_min: int = 5,
    heartbeat_max: int = 120,
    throttle_rate: float = 50.0,
    throttle_burst: int = 100,
    cancel_on_disconnect: bool = True,
    spare_gtc: bool = False,
    enabled: bool = True,
    require_signature: bool = True,
) -> None:
    """Register a FIX session; every entitled account must belong to ``firm_id``."""
    if not sender_comp_id or not target_comp_id:
        raise RegistryError("a session needs a SenderCompID and a TargetCompID")
    check_comp_id(sender_comp_id, "SenderCompID")
    check_comp_id(target_comp_id, "TargetCompID")
    if kind not in SESSION_KINDS:
        raise RegistryError(f"session kind must be one of {', '.join(SESSION_KINDS)}, got {kind!r}")
    _bounded_int(heartbeat_min, "heartbeat min", 1, MAX_HEARTBEAT)
    _bounded_int(heartbeat_max, "heartbeat max", 1, MAX_HEARTBEAT)
    if not 0 < heartbeat_min <= heartbeat_max:
        raise RegistryError(
            f"heartbeat bounds must satisfy 0 < min <= max, got {heartbeat_min}..{heartbeat_max}"
        )
    try:
        rate = float(throttle_rate)
    except (TypeError, ValueError):
        raise RegistryError(f"throttle rate must be a number, got {throttle_rate!r}") from None
    if not (math.isfinite(rate) and MIN_THROTTLE_RATE <= rate <= MAX_THROTTLE_RATE):
        raise RegistryError(f"throttle rate must be a finite number of messages per second from "
                            f"{MIN_THROTTLE_RATE:g} to {MAX_THROTTLE_RATE:g}, got {throttle_rate!r}")
    _bounded_int(throttle_burst, "throttle burst", 1, MAX_THROTTLE_BURST)
    networks = parse_networks(allowed_networks)
    async with connect(db) as conn:
        if not await conn.scalar(select(firms.c.firm_id).where(firms.c.firm_id == firm_id)):
            raise RegistryError(f"unknown firm {firm_id}")
        if await conn.scalar(
            select(fix_sessions.c.sender_comp_id).where(fix_sessions.c.sender_comp_id == sender_comp_id)
        ):
            raise RegistryError(f"session {sender_comp_id} already exists")
        now = _now_ns()
        await conn.execute(
            insert(fix_sessions).values(
                sender_comp_id=sender_comp_id,
                target_comp_id=target_comp_id,
                kind=kind,
                firm_id=firm_id,
                allowed_networks=json.dumps(networks),
                heartbeat_min=heartbeat_min,
                heartbeat_max=heartbeat_max,
                throttle_rate=float(throttle_rate),
                throttle_burst=throttle_burst,
                cancel_on_disconnect=cancel_on_disconnect,
                spare_gtc=spare_gtc,
                enabled=enabled,
                require_signature=require_signature,
                created_ns=now,
                updated_ns=now,
            )
        )
        for account_id in entitled_accounts:
            await _entitle(conn, sender_comp_id, firm_id, account_id)


async def _entitle(conn: AsyncConnection, sender: str, firm_id: str, account_id: str) -> None:
    acc = await _get_account(conn, account_id)
    if acc.firm_id != firm_id:
        raise RegistryError(f"account {account_id} belongs to firm {acc.firm_id}, not {firm_id}")
    exists = await conn.scalar(
        select(session_accounts.c.account_id).where(
            session_accounts.c.sender_comp_id == sender, session_accounts.c.account_id == account_id
        )
    )
    if not exists:
        await conn.execute(insert(session_accounts).values(sender_comp_id=sender, account_id=account_id))


async def entitle_account(db: AsyncEngine | AsyncConnection, sender_comp_id: str, account_id: str) -> None:
    async with connect(db) as conn:
        sess = await _get_session_row(conn, sender_comp_id)
        await _entitle(conn, sender_comp_id, sess.firm_id, account_id)


async def _get_session_row(conn: AsyncConnection, sender_comp_id: str):
    row = (
        await conn.execute(select(fix_sessions).where(fix_sessions.c.sender_comp_id == sender_comp_id))
    ).first()
    if row is None:
        raise RegistryError(f"unknown session {sender_comp_id}")
    return row


async def set_session_enabled(db: AsyncEngine | AsyncConnection, sender_comp_id: str, enabled: bool) -> bool:
    """Enable or disable a session; returns its previous state."""
    async with connect(db) as conn:
        row = await _get_session_row(conn, sender_comp_id)
        await conn.execute(
            update(fix_sessions)
            .where(fix_sessions.c.sender_comp_id == sender_comp_id)
            .values(enabled=enabled, updated_ns=_now_ns())
        )
    return bool(row.enabled)


async def set_allowed_networks(
    db: AsyncEngine | AsyncConnection, sender_comp_id: str, networks: Sequence[str]
) -> list[str]:
    """Replace a session's allow-list; returns the previous one."""
    new = parse_networks(networks)
    async with connect(db) as conn:
        row = await _get_session_row(conn, sender_comp_id)
        await conn.execute(
            update(fix_sessions)
            .where(fix_sessions.c.sender_comp_id == sender_comp_id)
            .values(allowed_networks=json.dumps(new), updated_ns=_now_ns())
        )
    return list(json.loads(row.allowed_networks))


async def add_session_key(
    db: AsyncEngine | AsyncConnection, sender_comp_id: str, key_id: str, public_key_b64: str
) -> None:
    """Add an active key; at most two may be active at once (the overlap of a rotation)."""
    async with connect(db) as conn:
        await _get_session_row(conn, sender_comp_id)
        if await conn.scalar(select(session_keys.c.key_id).where(session_keys.c.key_id == key_id)):
            raise RegistryError(f"key id {key_id} is already registered")
        active = (
            await conn.execute(
                select(session_keys.c.key_id).where(
                    session_keys.c.sender_comp_id == sender_comp_id, session_keys.c.state == "active"
                )
            )
        ).all()
        if len(active) >= MAX_ACTIVE_KEYS:
            raise RegistryError(
                f"session {sender_comp_id} already has {len(active)} active keys "
                f"({', '.join(r.key_id for r in active)}); retire one first"
            )
        await conn.execute(
            insert(session_keys).values(
                key_id=key_id,
                sender_comp_id=sender_comp_id,
                public_key=public_key_b64,
                state="active",
                created_ns=_now_ns(),
                retired_ns=None,
            )
        )


async def retire_session_key(db: AsyncEngine | AsyncConnection, sender_comp_id: str, key_id: str) -> None:
    async with connect(db) as conn:
        row = (
            await conn.execute(
                select(session_keys).where(
                    session_keys.c.key_id == key_id, session_keys.c.sender_comp_id == sender_comp_id
                )
            )
        ).first()
        if row is None:
            await _get_session_row(conn, sender_comp_id)  # an unknown session says so
            raise RegistryError(f"session {sender_comp_id} has no key {key_id}")
        if row.state == "retired":
            raise RegistryError(f"key {key_id} is already retired")
        await conn.execute(
            update(session_keys)
            .where(session_keys.c.key_id == key_id)
            .values(state="retired", retired_ns=_now_ns())
        )


# ---- operators --------------------------------------------------------------------------------


async def create_operator(
    db: AsyncEngine | AsyncConnection, name: str, role: str, public_key_b64: str
) -> None:
    if role not in OPERATOR_ROLES:
        raise RegistryError(f"operator role must be one of {', '.join(OPERATOR_ROLES)}, got {role!r}")
    async with connect(db) as conn:
        if await conn.scalar(select(operators.c.name).where(operators.c.name == name)):
            raise RegistryError(f"operator {name} already exists")
        await conn.execute(
            insert(operators).values(name=name, role=role, public_key=public_key_b64, created_ns=_now_ns())
        )


# ---- loaders ----------------------------------------------------------------------------------


async def load_firms(db: AsyncEngine | AsyncConnection) -> list[FirmRecord]:
    async with connect(db) as conn:
        rows = (await conn.execute(select(firms).order_by(firms.c.firm_id))).all()
    return [FirmRecord(r.firm_id, r.name) for r in rows]


async def load_accounts(db: AsyncEngine | AsyncConnection) -> list[AccountRecord]:
    async with connect(db) as conn:
        rows = (await conn.execute(select(accounts).order_by(accounts.c.account_id))).all()
    return [_account(r) for r in rows]


async def load_kyc_tiers(db: AsyncEngine | AsyncConnection) -> list[KycTier]:
    async with connect(db) as conn:
        rows = (await conn.execute(select(kyc_tiers).order_by(kyc_tiers.c.tier))).all()
    return [
        KycTier(r.tier, _dec_or_none(r.max_order_notional), _dec_or_none(r.max_daily_notional)) for r in rows
    ]


async def load_sessions(db: AsyncEngine | AsyncConnection) -> list[SessionRecord]:
    """Every registered session with its entitled accounts and all its keys (active and retired)."""
    async with connect(db) as conn:
        rows = (await conn.execute(select(fix_sessions).order_by(fix_sessions.c.sender_comp_id))).all()
        ents = (await conn.execute(select(session_accounts).order_by(session_accounts.c.account_id))).all()
        keys = (await conn.execute(select(session_keys).order_by(session_keys.c.created_ns))).all()
    by_sess: dict[str, list[str]] = {}
    for e in ents:
        by_sess.setdefault(e.sender_comp_id, []).append(e.account_id)
    keys_by: dict[str, list[SessionKey]] = {}
    for k in keys:
        keys_by.setdefault(k.sender_comp_id, []).append(
            SessionKey(k.key_id, k.sender_comp_id, k.public_key, k.state, k.created_ns, k.retired_ns)
        )
    return [
        SessionRecord(
            sender_comp_id=r.sender_comp_id,
            target_comp_id=r.target_comp_id,
            kind=r.kind,
            firm_id=r.firm_id,
            accounts=tuple(by_sess.get(r.sender_comp_id, ())),
            allowed_networks=tuple(json.loads(r.allowed_networks)),
            heartbeat_min=r.heartbeat_min,
            heartbeat_max=r.heartbeat_max,
            throttle_rate=r.throttle_rate,
            throttle_burst=r.throttle_burst,
            cancel_on_disconnect=bool(r.cancel_on_disconnect),
            spare_gtc=bool(r.spare_gtc),
            enabled=bool(r.enabled),
            require_signature=bool(r.require_signature),
            keys=tuple(keys_by.get(r.sender_comp_id, ())),
        )
        for r in rows
    ]


async def load_session(db: AsyncEngine | AsyncConnection, sender_comp_id: str) -> SessionRecord:
    for s in await load_sessions(db):
        if s.sender_comp_id == sender_comp_id:
            return s
    raise RegistryError(f"unknown session {sender_comp_id}")


async def load_operators(db: AsyncEngine | AsyncConnection) -> list[OperatorRecord]:
    async with connect(db) as conn:
        rows = (await conn.execute(select(operators).order_by(operators.c.name))).all()
    return [OperatorRecord(r.name, r.role, r.public_key) for r in rows]
