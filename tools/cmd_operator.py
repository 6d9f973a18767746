"""Operator actions on a running venue: trading status, kill switch, deposits, cancels, balances.

Each command writes an operator request (venue/operator.py) that the running venue turns into
journaled core commands, and prints the venue's answer.
"""

from __future__ import annotations

import zlib
from decimal import Decimal
from typing import Any

import click
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tools.cmd_access import (
    AMOUNT,
    AMOUNT_ARGS,
    AMOUNT_HELP,
    Ctx,
    account,
    amount_units,
    check_known,
    common,
    console,
    plain,
    run_db,
)
from venue import operator, refdata
from venue.core.assets import Assets
from venue.core.events import TradingStatusChanged
from venue.core.types import TradingStatus


def _ask(ctx: Ctx, kind: str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    async def body(engine):
        await operator.create_schema(engine)
        await operator.require_running(engine)
        rid = await operator.submit(engine, kind, payload, ctx.actor)
        return await operator.wait(engine, rid, timeout)

    try:
        return run_db(ctx, body)
    except operator.OperatorError as exc:
        raise click.ClickException(str(exc)) from None


def _amount(asset: str, amount: Decimal) -> str:
    """The amount as the venue takes it (a plain decimal), once bounded for ``asset``."""
    units = amount_units(asset, amount)
    return plain(Assets()[asset.upper()].to_decimal(units))


async def core_statuses(engine: AsyncEngine) -> dict[str, TradingStatus]:
    """Each instrument's trading status as the core has it: the latest snapshot's (else the
    definition's), then every TradingStatusChanged journaled after it. The instruments table keeps
    the definition the venue starts from; a halt is a journaled core command, so the journal is
    where it lives (writing it into the definition would change what recovery replays against)."""
    from venue.journal import CODEC, create_tables, decode_snapshot, journal_table, snapshot_table

    await create_tables(engine)
    statuses = {i.symbol: i.status for i in await refdata.load_instruments(engine)}
    async with engine.connect() as conn:
        snap = (await conn.execute(select(snapshot_table.c.cmd_count, snapshot_table.c.data)
                                   .order_by(snapshot_table.c.cmd_count.desc()).limit(1))).first()
        start = 0
        if snap is not None:
            start = snap[0]
            for d in decode_snapshot(snap[1])["instruments"]:
                statuses[d["symbol"]] = TradingStatus(d["status"])
        result = await conn.stream(select(journal_table.c.seq_from, journal_table.c.events)
                                   .where(journal_table.c.cmd_from >= start).order_by(journal_table.c.cmd_from))
        async for seq_from, blob in result:
            if b"TradingStatusChanged" not in zlib.decompress(blob):  # the tag, in JSON and binary rows
                continue  # most batches: no status change, no decoding
            for e in CODEC.decode(blob, seq_from):
                if isinstance(e, TradingStatusChanged):
                    statuses[e.instrument] = e.status
    return statuses


@click.group()
def instrument() -> None:
    """Instruments: list them, halt, resume or close trading."""


@instrument.command("list")
@common
def instrument_list(ctx: Ctx) -> None:
    """The instruments defined in the venue's database, with the trading status the core has."""

    async def body(engine: AsyncEngine) -> tuple[list[Any], dict[str, TradingStatus]]:
        await refdata.create_schema(engine)
        return await refdata.load_instruments(engine), await core_statuses(engine)

    insts, statuses = run_db(ctx, body)
    table = Table("symbol", "base", "quote", "tick", "lot", "min qty (lots)", "band (bps)", "status")
    for i in insts:
        table.add_row(i.symbol, i.base, i.quote, str(i.tick_size), str(i.lot_size), str(i.min_qty),
                      str(i.band_bps), statuses.get(i.symbol, i.status).value)
    console().print(table)


@instrument.command("status")
@click.argument("symbol")
@click.argument("status", type=click.Choice(["open", "halted", "closed"]))
@common
def instrument_status(ctx: Ctx, symbol: str, status: str) -> None:
    """Set SYMBOL's trading status (halted: no matching, cancels allowed)."""
    check_known(ctx, instruments=(symbol,))
    _ask(ctx, "trading_status", {"instrument": symbol, "status": status})
    click.echo(f"{symbol} is now {status}")


@account.command("kill-switch")
@click.argument("account_id")
@click.argument("state", type=click.Choice(["on", "off"]))
@common
def kill_switch(ctx: Ctx, account_id: str, state: str) -> None:
    """On: cancel every open order of ACCOUNT_ID and refuse new ones until switched off."""
    check_known(ctx, accounts=(account_id,))
    res = _ask(ctx, "kill_switch", {"account": account_id, "on": state == "on"})
    click.echo(f"kill switch {state} for {account_id}; {res.get('cancelled', 0)} orders cancelled")


@account.command("deposit", context_settings=AMOUNT_ARGS, epilog=AMOUNT_HELP)
@click.argument("account_id")
@click.argument("asset")
@click.argument("amount", type=AMOUNT)
@click.option("--ref", default="", help="External reference recorded in the ledger.")
@common
def deposit(ctx: Ctx, account_id: str, asset: str, amount: Decimal, ref: str) -> None:
    """Credit AMOUNT of ASSET to ACCOUNT_ID (a ledger entry against @external)."""
    check_known(ctx, assets=(asset,))
    value = _amount(asset, amount)
    check_known(ctx, accounts=(account_id,))
    _ask(ctx, "deposit", {"account": account_id, "asset": asset.upper(), "amount": value, "ref": ref})
    click.echo(f"deposited {plain(amount)} {asset.upper()} to {account_id}")


@account.command("withdraw", context_settings=AMOUNT_ARGS, epilog=AMOUNT_HELP)
@click.argument("account_id")
@click.argument("asset")
@click.argument("amount", type=AMOUNT)
@click.option("--ref", default="", help="External reference recorded in the ledger.")
@common
def withdraw(ctx: Ctx, account_id: str, asset: str, amount: Decimal, ref: str) -> None:
    """Debit AMOUNT of ASSET from ACCOUNT_ID's available balance."""
    check_known(ctx, assets=(asset,))
    value = _amount(asset, amount)
    check_known(ctx, accounts=(account_id,))
    _ask(ctx, "withdraw", {"account": account_id, "asset": asset.upper(), "amount": value, "ref": ref})
    click.echo(f"withdrew {plain(amount)} {asset.upper()} from {account_id}")


@account.command("balances")
@click.argument("account_id")
@common
def balances(ctx: Ctx, account_id: str) -> None:
    """ACCOUNT_ID's balances: total, reserved for open orders, available."""
    check_known(ctx, accounts=(account_id,))
    res = _ask(ctx, "balances", {"account": account_id})
    table = Table("asset", "total", "reserved", "available", title=f"balances of {account_id}")
    for asset, b in res["balances"].items():
        table.add_row(asset, b["total"], b["reserved"], b["available"])
    console().print(table)


@click.group()
def orders() -> None:
    """Open orders."""


@orders.command("cancel")
@click.option("--account", "account_id", help="Only this account's orders.")
@click.option("--instrument", "symbol", help="Only this instrument's orders.")
@click.option("--side", type=click.Choice(["buy", "sell"]), help="Only this side.")
@click.option("--all", "everything", is_flag=True, help="Needed when no filter is given.")
@common
def orders_cancel(ctx: Ctx, account_id: str | None, symbol: str | None, side: str | None, everything: bool) -> None:
    """Cancel open orders (reported to their owners and drop copies)."""
    if not (account_id or symbol or side or everything):
        raise click.UsageError("give --account, --instrument or --side, or --all to cancel every open order")
    check_known(ctx, accounts=(account_id,), instruments=(symbol,))
    res = _ask(ctx, "mass_cancel", {"account": account_id, "instrument": symbol,
                                    "side": {"buy": "1", "sell": "2"}.get(side or "")})
    click.echo(f"{res.get('cancelled', 0)} orders cancelled")


@click.command("end-of-session")
@click.option("--instrument", "symbol", help="Only this instrument (default: all).")
@common
def end_of_session(ctx: Ctx, symbol: str | None) -> None:
    """Expire DAY orders."""
    check_known(ctx, instruments=(symbol,))
    res = _ask(ctx, "end_of_session", {"instrument": symbol})
    click.echo(f"end of session: {res['events'].count('OrderExpired')} DAY orders expired")


commands = [instrument, orders, end_of_session]
