"""Operator commands for access control: keys, FIX sessions, KYC, operators and the audit log.

Every change is written to the audit log in the same transaction as the change itself.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue import audit, registry
from venue.access import signing
from venue.db import make_engine, sqlite_url
from venue.registry import RegistryError

T = TypeVar("T")


# ---- plumbing -----------------------------------------------------------------------------------


class Ctx:
    """Where the venue's data lives, and who is acting."""

    def __init__(self, data_dir: str, db_url: str | None, actor: str | None) -> None:
        self.data_dir = Path(data_dir)
        self.db_url = db_url or sqlite_url(self.data_dir)
        self.actor = actor or _whoami()

    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def engine(self, *, create: bool) -> AsyncEngine:
        if self.is_sqlite():
            db_file = self.db_url.split("///", 1)[-1]
            if not create and not Path(db_file).exists():
                raise click.ClickException(
                    f"no venue database at {db_file} (wrong --data-dir? start the venue once, or pass --db-url)"
                )
            Path(db_file).parent.mkdir(parents=True, exist_ok=True)
        return make_engine(self.db_url)


# ---- amounts and names the CLI takes -------------------------------------------------------------

#: The largest amount, in an asset's smallest units, the CLI hands to the ledger: the core's bound
#: on a quantity (2**62 fits a C 64-bit integer and a BIGINT column with room for sums).
MAX_AMOUNT_UNITS = 2**62
#: Longest amount as typed, and the largest exponent a typed amount may carry (1e400 is refused).
MAX_AMOUNT_CHARS = 40
MAX_AMOUNT_EXPONENT = 30
# ASCII digits only ("١٢٣" is not 123), no '+' and no spaces; '-' parses so that the command can
# say "must be positive" instead of "no such option".
_AMOUNT_RE = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
AMOUNT_HELP = ("AMOUNT is a decimal of ASCII digits 0-9 (e.g. 12.5): no sign, spaces, NaN or Infinity; "
               "exponent notation is read (1e2 is 100) and amounts are always printed in plain notation.")


def plain(amount: Decimal) -> str:
    """An amount in plain notation, as the CLI prints every amount (never ``1E+2``)."""
    return format(amount, "f")


class AmountType(click.ParamType):
    """A decimal amount as typed (``0.25``, ``1e2``; see AMOUNT_HELP): refuses other characters than
    ASCII digits, '.', an exponent and a leading '-', NaN, Infinity, an exponent beyond
    MAX_AMOUNT_EXPONENT and more than MAX_AMOUNT_CHARS characters. The sign is the command's to
    judge (with ``context_settings=AMOUNT_ARGS`` a negative amount parses instead of looking like
    an option); ``amount_units`` then checks it against the asset."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        text = str(value)
        if len(text) > MAX_AMOUNT_CHARS:
            self.fail(f"{text[:20]}... has {len(text)} characters: an amount has at most {MAX_AMOUNT_CHARS}",
                      param, ctx)
        if not _AMOUNT_RE.fullmatch(text):
            self.fail(f"{text!r} is not an amount (a decimal number of ASCII digits such as 0.25: no sign, "
                      "spaces, NaN or Infinity)", param, ctx)
        d = Decimal(text)
        if d and not -MAX_AMOUNT_EXPONENT <= d.adjusted() <= MAX_AMOUNT_EXPONENT:
            self.fail(f"{text!r} is out of range: an amount is between 10**-{MAX_AMOUNT_EXPONENT} and "
                      f"10**{MAX_AMOUNT_EXPONENT}",
                      param, ctx)
        return Decimal(plain(d))  # 1e2 is 100, and prints so


AMOUNT = AmountType()
#: context_settings for a command with an AMOUNT argument: ``-5`` is an amount, not an unknown option.
AMOUNT_ARGS = {"ignore_unknown_options": True}


def amount_units(asset: str, amount: Decimal, what: str = "the amount", hint: str = "AMOUNT") -> int:
    """``amount`` of ``asset`` in the ledger's units: positive, within the asset's decimals and at
    most MAX_AMOUNT_UNITS; anything else is a clear refusal (exit status 2)."""
    from venue.core.assets import AssetError, Assets

    try:
        a = Assets()[asset.upper()]
    except AssetError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if amount <= 0:
        raise click.BadParameter(f"{what} must be positive, got {plain(amount)}", param_hint=hint)
    if amount.adjusted() > MAX_AMOUNT_EXPONENT:
        raise click.BadParameter(f"{amount} {a.code} is beyond the ledger's maximum of "
                                 f"{plain(a.to_decimal(MAX_AMOUNT_UNITS))} {a.code}", param_hint=hint)
    try:
        units = a.to_units(amount)
    except AssetError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if units > MAX_AMOUNT_UNITS:
        raise click.BadParameter(f"{plain(amount)} {a.code} is beyond the ledger's maximum of "
                                 f"{plain(a.to_decimal(MAX_AMOUNT_UNITS))} {a.code}", param_hint=hint)
    return units


def check_known(ctx: Ctx, *, accounts: tuple[str | None, ...] = (), instruments: tuple[str | None, ...] = (),
                assets: tuple[str | None, ...] = ()) -> None:
    """Refuse (exit status 1) an account the registry does not have, an instrument the venue does
    not trade or an asset it does not know: the CLI never acts on what does not exist."""
    from venue import refdata
    from venue.core.assets import Assets

    for code in filter(None, assets):
        if code.upper() not in Assets():
            raise click.ClickException(f"unknown asset {code} (known: {', '.join(Assets())})")
    accounts = tuple(filter(None, accounts))
    instruments = tuple(filter(None, instruments))
    if not accounts and not instruments:
        return

    async def body(engine: AsyncEngine) -> tuple[set[str], set[str]]:
        await refdata.create_schema(engine)
        return ({a.account_id for a in await registry.load_accounts(engine)} if accounts else set(),
                {i.symbol for i in await refdata.load_instruments(engine)} if instruments else set())

    known_accounts, known_instruments = run_db(ctx, body)
    for a in accounts:
        if a not in known_accounts:
            raise click.ClickException(f"unknown account {a} (see `venue account list`)")
    for i in instruments:
        if i not in known_instruments:
            raise click.ClickException(f"unknown instrument {i} (see `venue instrument list`)")


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "operator"


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir``, ``--db-url`` and ``--actor`` on every command; passes ``ctx: Ctx``."""

    @click.option(
        "--data-dir",
        default="var",
        show_default=True,
        envvar="VENUE_DATA_DIR",
        help="The venue's data directory (database, keys).",
    )
    @click.option(
        "--db-url",
        default=None,
        envvar="VENUE_DATABASE_URL",
        help="Database URL (default: SQLite in the data directory).",
    )
    @click.option("--actor", default=None, help="Operator name recorded in the audit log (default: $USER).")
    @wraps(f)
    def wrapper(data_dir: str, db_url: str | None, actor: str | None, **kwargs: Any) -> Any:
        return f(Ctx(data_dir, db_url, actor), **kwargs)

    return wrapper


def run_db(ctx: Ctx, body: Callable[[AsyncEngine], Awaitable[T]], *, create: bool = False) -> T:
    """Run ``body(engine)``; registry errors become a clear message and exit status 1."""

    async def main() -> T:
        engine = ctx.engine(create=create)
        try:
            if create:
                await registry.create_schema(engine)
            return await body(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (RegistryError, signing.KeyFormatError) as exc:
        raise click.ClickException(str(exc)) from None


def change(
    ctx: Ctx,
    kind: str,
    subject: str,
    details: dict[str, Any],
    op: Callable[[AsyncConnection], Awaitable[Any]],
    *,
    create: bool = False,
) -> Any:
    """Apply ``op`` and write its audit entry in one transaction (``create``: make the database
    and its tables if they do not exist yet)."""

    async def body(engine: AsyncEngine) -> Any:
        async with engine.begin() as conn:
            result = await op(conn)
            await audit.append(conn, kind, actor=ctx.actor, subject=subject, source="cli", details=details)
        return result

    return run_db(ctx, body, create=create)


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def _fmt_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def _public_key_arg(value: str) -> str:
    """A public key given as a PEM file, a private-key PEM file (its public half) or base64."""
    path = Path(value)
    if path.exists():
        data = path.read_bytes()
        if b"PRIVATE KEY" in data:
            return signing.public_key_b64(signing.load_private_key(data).public_key())
        return signing.public_key_b64(signing.load_public_key(data))
    return signing.public_key_b64(signing.load_public_key(value))


def _write_private_key(path: Path, key: Any, force: bool) -> None:
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_pem(key))


def _new_or_given_key(public_key: str | None, key_out: str | None, force: bool) -> tuple[str, str] | None:
    """(key id, public key b64) from ``--public-key`` or a new key written to ``--key-out``."""
    if public_key and key_out:
        raise click.UsageError("give either --public-key or --key-out, not both")
    if public_key:
        try:
            pub = _public_key_arg(public_key)
        except signing.KeyFormatError as exc:
            raise click.ClickException(str(exc)) from None
        return signing.key_id_for(signing.load_public_key(pub)), pub
    if key_out:
        key = signing.generate_key()
        _write_private_key(Path(key_out), key, force)
        return signing.key_id_for(key.public_key()), signing.public_key_b64(key.public_key())
    return None


# ---- venue keygen -------------------------------------------------------------------------------


@click.command()
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the private key here (PKCS#8 PEM, mode 0600); default: print it.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def keygen(out: str | None, force: bool) -> None:
    """Generate an Ed25519 key pair; print its key id and public key."""
    key = signing.generate_key()
    if out:
        _write_private_key(Path(out), key, force)
    else:
        click.echo(signing.private_key_pem(key).decode(), nl=False)
    click.echo(f"key id:     {signing.key_id_for(key.public_key())}")
    click.echo(f"public key: {signing.public_key_b64(key.public_key())}")
    if out:
        click.echo(f"private key written to {out}")


# ---- venue firm ---------------------------------------------------------------------------------


@click.group()
def firm() -> None:
    """Client firms."""


@firm.command("create")
@click.argument("firm_id")
@click.option("--name", default=None)
@common
def firm_create(ctx: Ctx, firm_id: str, name: str | None) -> None:
    """Register a client firm."""
    change(
        ctx,
        "config.firm.create",
        firm_id,
        {"name": name or firm_id},
        lambda conn: registry.create_firm(conn, firm_id, name),
        create=True,
    )
    click.echo(f"firm {firm_id} created")


@firm.command("list")
@common
def firm_list(ctx: Ctx) -> None:
    """List firms."""
    rows = run_db(ctx, registry.load_firms)
    t = Table("firm", "name")
    for f in rows:
        t.add_row(f.firm_id, f.name)
    console().print(t)


# ---- venue account ------------------------------------------------------------------------------


@click.group()
def account() -> None:
    """Trading accounts and their KYC."""


@account.command("create")
@click.argument("account_id")
@click.option("--firm", "firm_id", required=True)
@click.option("--status", type=click.Choice(registry.KYC_STATUSES), default="pending", show_default=True)
@click.option("--tier", type=int, default=1, show_default=True, help=f"0 to {registry.MAX_TIER}.")
@click.option("--expires", default=None, help="KYC expiry date, YYYY-MM-DD.")
@click.option("--max-order-qty", default=None,
              help=f"A plain positive decimal (ASCII digits, at most {registry.MAX_LIMIT_DECIMALS} decimals), "
                   f"at most {registry.MAX_LIMIT}.")
@click.option("--max-order-notional", default=None, help="As --max-order-qty.")
@common
def account_create(
    ctx: Ctx,
    account_id: str,
    firm_id: str,
    status: str,
    tier: int,
    expires: str | None,
    max_order_qty: str | None,
    max_order_notional: str | None,
) -> None:
    """Register a trading account of a firm."""
    exp = _parse_date(expires)
    details = {
        "firm": firm_id,
        "status": status,
        "tier": tier,
        "expires": expires,
        "max_order_qty": max_order_qty,
        "max_order_notional": max_order_notional,
    }
    change(
        ctx,
        "config.account.create",
        account_id,
        details,
        lambda conn: registry.create_account(
            conn,
            account_id,
            firm_id,
            kyc_status=status,
            tier=tier,
            kyc_expires=exp,
            max_order_qty=max_order_qty,
            max_order_notional=max_order_notional,
        ),
        create=True,
    )
    click.echo(f"account {account_id} created (KYC {status})")


@account.command("kyc")
@click.argument("account_id")
@click.option("--status", type=click.Choice(registry.KYC_STATUSES), required=True)
@click.option("--tier", type=int, default=None, help=f"0 to {registry.MAX_TIER}.")
@click.option("--expires", default=None, help="KYC expiry date, YYYY-MM-DD (not in the past, unless --force).")
@click.option("--force", is_flag=True, help="Accept an expiry date in the past.")
@common
def account_kyc(ctx: Ctx, account_id: str, status: str, tier: int | None, expires: str | None, force: bool) -> None:
    """Set an account's KYC status (and tier, expiry). A running venue logs out affected sessions."""
    exp = _parse_date(expires)
    if exp is not None and exp < datetime.now(UTC).date() and not force:
        raise click.BadParameter(f"{expires} is in the past: the KYC would be expired at once "
                                 "(use --force if that is meant)", param_hint="--expires")

    async def op(conn: AsyncConnection) -> registry.AccountRecord:
        return await registry.set_kyc(conn, account_id, status, tier=tier, expires=exp)

    details = {"status": status, "tier": tier, "expires": expires}
    old = change(ctx, "config.account.kyc", account_id, details, op)
    click.echo(
        f"account {account_id}: KYC {old.kyc_status} -> {status}"
        + (f", tier {tier}" if tier is not None else "")
        + (f", expires {expires}" if expires else "")
    )


@account.command("list")
@common
def account_list(ctx: Ctx) -> None:
    """List accounts with their KYC."""
    rows = run_db(ctx, registry.load_accounts)
    t = Table("account", "firm", "KYC", "tier", "expires", "max qty", "max notional")
    for a in rows:
        t.add_row(
            a.account_id,
            a.firm_id,
            a.kyc_status,
            str(a.tier),
            a.kyc_expires.isoformat() if a.kyc_expires else "-",
            str(a.max_order_qty or "-"),
            str(a.max_order_notional or "-"),
        )
    console().print(t)


# ---- venue session ------------------------------------------------------------------------------


@click.group()
def session() -> None:
    """FIX sessions: create, inspect, disable, keys and allow-lists."""


@session.command("create")
@click.argument("sender_comp_id")
@click.option("--firm", "firm_id", required=True)
@click.option("--kind", type=click.Choice(registry.SESSION_KINDS), default="order_entry", show_default=True)
@click.option("--target", "target_comp_id", default="VENUE", show_default=True, help="The venue's CompID.")
@click.option("--account", "accounts", multiple=True, help="Entitled account (repeatable).")
@click.option("--allow", "networks", multiple=True, help="Allowed network, CIDR (repeatable).")
@click.option("--heartbeat-min", type=int, default=5, show_default=True,
              help=f"Seconds, 1 to {registry.MAX_HEARTBEAT}.")
@click.option("--heartbeat-max", type=int, default=120, show_default=True,
              help=f"Seconds, 1 to {registry.MAX_HEARTBEAT}.")
@click.option("--throttle-rate", type=float, default=50.0, show_default=True,
              help=f"Messages per second, finite, {registry.MIN_THROTTLE_RATE:g} to {registry.MAX_THROTTLE_RATE:g}.")
@click.option("--throttle-burst", type=int, default=100, show_default=True,
              help=f"Messages, 1 to {registry.MAX_THROTTLE_BURST}.")
@click.option("--cancel-on-disconnect/--no-cancel-on-disconnect", default=True, show_default=True)
@click.option("--spare-gtc", is_flag=True, help="Cancel-on-disconnect spares GTC orders.")
@click.option("--unsigned", is_flag=True, help="Logons need no signature (certification sessions only).")
@click.option("--disabled", is_flag=True)
@click.option("--public-key", default=None, help="Its first key: PEM file or base64 raw public key.")
@click.option(
    "--key-out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Generate its first key and write the private key here.",
)
@click.option("--force", is_flag=True, help="Overwrite --key-out if it exists.")
@common
def session_create(
    ctx: Ctx,
    sender_comp_id: str,
    firm_id: str,
    kind: str,
    target_comp_id: str,
    accounts: tuple[str, ...],
    networks: tuple[str, ...],
    heartbeat_min: int,
    heartbeat_max: int,
    throttle_rate: float,
    throttle_burst: int,
    cancel_on_disconnect: bool,
    spare_gtc: bool,
    unsigned: bool,
    disabled: bool,
    public_key: str | None,
    key_out: str | None,
    force: bool,
) -> None:
    """Register a FIX session (allow-list default: loopback only)."""
    nets = list(networks) or ["127.0.0.0/8", "::1/128"]
    try:
        nets = registry.parse_networks(nets)
    except RegistryError as exc:
        raise click.BadParameter(str(exc), param_hint="--allow") from None
    if public_key and key_out:
        raise click.UsageError("give either --public-key or --key-out, not both")
    if key_out and Path(key_out).exists() and not force:
        raise click.ClickException(f"{key_out} exists (use --force to overwrite)")
    key = _new_or_given_key(public_key, None, force) if public_key else None
    new_key = signing.generate_key() if key_out else None
    if new_key is not None:
        key = (signing.key_id_for(new_key.public_key()), signing.public_key_b64(new_key.public_key()))

    async def op(conn: AsyncConnection) -> None:
        await registry.create_session(
            conn,
            sender_comp_id,
            firm_id=firm_id,
            kind=kind,
            target_comp_id=target_comp_id,
            entitled_accounts=accounts,
            allowed_networks=nets,
            heartbeat_min=heartbeat_min,
            heartbeat_max=heartbeat_max,
            throttle_rate=throttle_rate,
            throttle_burst=throttle_burst,
            cancel_on_disconnect=cancel_on_disconnect,
            spare_gtc=spare_gtc,
            enabled=not disabled,
            require_signature=not unsigned,
        )
        if key is not None:
            await registry.add_session_key(conn, sender_comp_id, key[0], key[1])

    details = {
        "firm": firm_id,
        "kind": kind,
        "target": target_comp_id,
        "accounts": list(accounts),
        "allowed_networks": nets,
        "heartbeat": [heartbeat_min, heartbeat_max],
        "throttle": [throttle_rate, throttle_burst],
        "cancel_on_disconnect": cancel_on_disconnect,
        "spare_gtc": spare_gtc,
        "require_signature": not unsigned,
        "enabled": not disabled,
        "key_id": key[0] if key else None,
    }
    change(ctx, "config.session.create", sender_comp_id, details, op, create=True)
    if new_key is not None and key_out:
        _write_private_key(Path(key_out), new_key, True)
    click.echo(f"session {sender_comp_id} created ({kind}, firm {firm_id})")
    if key is not None:
        click.echo(f"key id: {key[0]}" + (f" (private key in {key_out})" if key_out else ""))
    elif not unsigned:
        click.echo("no key yet: add one with `venue session rotate-key` before it can log on")


@session.command("list")
@common
def session_list(ctx: Ctx) -> None:
    """List FIX sessions."""
    rows = run_db(ctx, registry.load_sessions)
    t = Table(
        "SenderCompID", "target", "kind", "firm", "accounts", "allowed networks", "keys", "signed", "enabled"
    )
    for s in rows:
        t.add_row(
            s.sender_comp_id,
            s.target_comp_id,
            s.kind,
            s.firm_id,
            ", ".join(s.accounts) or "-",
            ", ".join(s.allowed_networks),
            ", ".join(k.key_id for k in s.active_keys) or "-",
            "yes" if s.require_signature else "no",
            "yes" if s.enabled else "NO",
        )
    console().print(t)


@session.command("show")
@click.argument("sender_comp_id")
@common
def session_show(ctx: Ctx, sender_comp_id: str) -> None:
    """Show one session's settings and keys."""
    s = run_db(ctx, lambda engine: registry.load_session(engine, sender_comp_id))
    t = Table("setting", "value", title=f"session {s.sender_comp_id}")
    for name, value in (
        ("TargetCompID", s.target_comp_id),
        ("kind", s.kind),
        ("firm", s.firm_id),
        ("accounts", ", ".join(s.accounts) or "-"),
        ("allowed networks", ", ".join(s.allowed_networks) or "-"),
        ("heartbeat", f"{s.heartbeat_min}..{s.heartbeat_max} s"),
        ("throttle", f"{s.throttle_rate:g}/s, burst {s.throttle_burst}"),
        (
            "cancel on disconnect",
            ("yes" + (" (spares GTC)" if s.spare_gtc else "")) if s.cancel_on_disconnect else "no",
        ),
        ("signed logons", "required" if s.require_signature else "not required"),
        ("enabled", "yes" if s.enabled else "no"),
    ):
        t.add_row(name, value)
    k = Table("key id", "state", "public key", "created", "retired", title="keys")
    for key in s.keys:
        k.add_row(key.key_id, key.state, key.public_key, _fmt_ns(key.created_ns), _fmt_ns(key.retired_ns))
    c = console()
    c.print(t)
    c.print(k)


def _set_enabled(ctx: Ctx, sender_comp_id: str, enabled: bool) -> None:
    word = "enable" if enabled else "disable"
    change(
        ctx,
        f"config.session.{word}",
        sender_comp_id,
        {"enabled": enabled},
        lambda conn: registry.set_session_enabled(conn, sender_comp_id, enabled),
    )
    click.echo(f"session {sender_comp_id} {word}d")


@session.command("disable")
@click.argument("sender_comp_id")
@common
def session_disable(ctx: Ctx, sender_comp_id: str) -> None:
    """Refuse this session's logons (a running venue picks it up on its next registry reload)."""
    _set_enabled(ctx, sender_comp_id, False)


@session.command("enable")
@click.argument("sender_comp_id")
@common
def session_enable(ctx: Ctx, sender_comp_id: str) -> None:
    """Accept this session's logons again."""
    _set_enabled(ctx, sender_comp_id, True)


@session.command("rotate-key")
@click.argument("sender_comp_id")
@click.option("--public-key", default=None, help="The new key: PEM file or base64 raw public key.")
@click.option(
    "--key-out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Generate the new key and write its private key here.",
)
@click.option("--force", is_flag=True, help="Overwrite --key-out if it exists.")
@common
def session_rotate_key(
    ctx: Ctx, sender_comp_id: str, public_key: str | None, key_out: str | None, force: bool
) -> None:
    """Add a new active key; both keys work until the old one is retired with retire-key."""
    if bool(public_key) == bool(key_out):
        raise click.UsageError("give the new key with --public-key, or --key-out to generate one (not both)")
    if key_out and Path(key_out).exists() and not force:
        raise click.ClickException(f"{key_out} exists (use --force to overwrite)")
    new_key = signing.generate_key() if key_out else None
    if new_key is not None:
        key_id, pub = signing.key_id_for(new_key.public_key()), signing.public_key_b64(new_key.public_key())
    else:
        key_id, pub = _new_or_given_key(public_key, None, force)  # type: ignore[misc]
    change(
        ctx,
        "config.session.key_add",
        sender_comp_id,
        {"key_id": key_id, "public_key": pub},
        lambda conn: registry.add_session_key(conn, sender_comp_id, key_id, pub),
    )
    if new_key is not None and key_out:
        _write_private_key(Path(key_out), new_key, True)
    click.echo(
        f"session {sender_comp_id}: key {key_id} added (active)"
        + (f", private key in {key_out}" if key_out else "")
    )


@session.command("retire-key")
@click.argument("sender_comp_id")
@click.argument("key_id")
@common
def session_retire_key(ctx: Ctx, sender_comp_id: str, key_id: str) -> None:
    """Retire a key: logons signed with it are refused from then on."""
    change(
        ctx,
        "config.session.key_retire",
        sender_comp_id,
        {"key_id": key_id},
        lambda conn: registry.retire_session_key(conn, sender_comp_id, key_id),
    )
    click.echo(f"session {sender_comp_id}: key {key_id} retired")


@session.command("allow")
@click.argument("sender_comp_id")
@click.argument("networks", nargs=-1)
@click.option("--remove", is_flag=True, help="Remove these networks instead of adding them.")
@click.option("--replace", is_flag=True, help="Replace the whole allow-list with these networks.")
@common
def session_allow(
    ctx: Ctx, sender_comp_id: str, networks: tuple[str, ...], remove: bool, replace: bool
) -> None:
    """Add (or --remove, --replace) allowed networks (CIDR, IPv4 or IPv6); no networks: show the list."""
    if remove and replace:
        raise click.UsageError("--remove and --replace exclude each other")
    try:
        given = registry.parse_networks(networks)
    except RegistryError as exc:
        raise click.BadParameter(str(exc), param_hint="NETWORKS") from None
    if not given:
        s = run_db(ctx, lambda engine: registry.load_session(engine, sender_comp_id))
        click.echo("\n".join(s.allowed_networks) or "(none: no address may connect)")
        return

    async def op(conn: AsyncConnection) -> list[str]:
        current = list((await registry.load_session(conn, sender_comp_id)).allowed_networks)
        if replace:
            new = given
        elif remove:
            missing = [n for n in given if n not in current]
            if missing:
                raise RegistryError(f"not in the allow-list of {sender_comp_id}: {', '.join(missing)}")
            new = [n for n in current if n not in given]
        else:
            new = current + [n for n in given if n not in current]
        await registry.set_allowed_networks(conn, sender_comp_id, new)
        return new

    action = "replace" if replace else "remove" if remove else "add"
    new = change(ctx, "config.session.allow", sender_comp_id, {"action": action, "networks": given}, op)
    click.echo(f"session {sender_comp_id} allows: {', '.join(new) or '(nothing)'}")


# ---- venue operator -----------------------------------------------------------------------------


@click.group()
def operator() -> None:
    """Venue operators and their signing keys."""


@operator.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(registry.OPERATOR_ROLES), required=True)
@click.option("--public-key", required=True, help="PEM file or base64 raw Ed25519 public key.")
@common
def operator_add(ctx: Ctx, name: str, role: str, public_key: str) -> None:
    """Register an operator with a role and an Ed25519 public key."""
    key_id, pub = _new_or_given_key(public_key, None, False)  # type: ignore[misc]
    change(
        ctx,
        "config.operator.add",
        name,
        {"role": role, "key_id": key_id},
        lambda conn: registry.create_operator(conn, name, role, pub),
        create=True,
    )
    click.echo(f"operator {name} ({role}) added, key id {key_id}")


@operator.command("list")
@common
def operator_list(ctx: Ctx) -> None:
    """List operators."""
    rows = run_db(ctx, registry.load_operators)
    t = Table("name", "role", "key id")
    for o in rows:
        t.add_row(o.name, o.role, signing.key_id_for(signing.load_public_key(o.public_key)))
    console().print(t)


# ---- venue audit --------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log."""


@audit_group.command("verify")
@click.option("--max-problems", type=int, default=50, show_default=True)
@common
def audit_verify(ctx: Ctx, max_problems: int) -> None:
    """Recompute the hash chain and check the signed checkpoints; exit 1 on any problem."""
    pub = audit.load_audit_public_key(ctx.data_dir)

    async def body(engine: AsyncEngine) -> tuple[list[audit.Problem], int, int]:
        problems = await audit.verify(engine, pub)
        n = len(await audit.tail(engine, 1))
        last = (await audit.tail(engine, 1))[0].seq if n else 0
        return problems, last, len(await audit.checkpoints(engine))

    problems, last, n_cp = run_db(ctx, body)
    if pub is None:
        click.echo(
            f"warning: no audit key at {audit.audit_key_path(ctx.data_dir)}: checkpoint signatures "
            "not checked",
            err=True,
        )
    if not problems:
        click.echo(f"audit log intact: {last} entries, {n_cp} signed checkpoints")
        return
    for p in problems[:max_problems]:
        click.echo(str(p))
    if len(problems) > max_problems:
        click.echo(f"... and {len(problems) - max_problems} more")
    raise click.ClickException(
        f"audit log tampered with: {len(problems)} problem(s), first at seq {problems[0].seq}"
    )


@audit_group.command("tail")
@click.option("-n", "count", type=int, default=20, show_default=True)
@click.option("--kind", default=None, help="Only entries of this kind (e.g. logon.refused).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@common
def audit_tail(ctx: Ctx, count: int, kind: str | None, as_json: bool) -> None:
    """Show the last entries of the audit log."""

    async def body(engine: AsyncEngine) -> list[audit.AuditEntry]:
        if kind is None:
            return await audit.tail(engine, count)
        return (await audit.entries(engine, kind=kind))[-count:]

    rows = run_db(ctx, body)
    if as_json:
        for e in rows:
            click.echo(
                json.dumps(
                    {
                        "seq": e.seq,
                        "time": _fmt_ns(e.time_ns),
                        "kind": e.kind,
                        "actor": e.actor,
                        "subject": e.subject,
                        "source": e.source,
                        "details": e.data,
                        "hash": e.hash,
                    }
                )
            )
        return
    t = Table("seq", "time (UTC)", "kind", "actor", "subject", "source", "details")
    for e in rows:
        t.add_row(str(e.seq), _fmt_ns(e.time_ns), e.kind, e.actor, e.subject, e.source or "-", e.details)
    console().print(t)


@audit_group.command("checkpoint")
@common
def audit_checkpoint(ctx: Ctx) -> None:
    """Sign a checkpoint of the log's head now with the venue's audit key."""
    key = audit.load_or_create_audit_key(ctx.data_dir)
    cp = run_db(ctx, lambda engine: audit.checkpoint(engine, key))
    click.echo("nothing new to checkpoint" if cp is None else f"checkpoint signed at seq {cp.seq}")


commands = [keygen, firm, account, session, operator, audit_group]
