"""Operator actions on a running venue: trading status, kill switch, deposits, cancels, balances.

Each command writes an operator request (venue/operator.py) that the running venue turns into
journaled core commands, and prints the venue's answer.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import click
from rich.table import Table

from tools.cmd_access import Ctx, account, common, console, run_db
from venue import operator, refdata


def _ask(ctx: Ctx, kind: str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    async def body(engine):
        await operator.create_schema(engine)
        rid = await operator.submit(engine, kind, payload, ctx.actor)
        return await operator.wait(engine, rid, timeout)

    try:
        return run_db(ctx, body)
    except operator.OperatorError as exc:
        raise click.ClickException(str(exc)) from None


def _amount(value: str) -> str:
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number") from None
    if not d.is_finite() or d <= 0:
        raise click.BadParameter("the amount must be positive")
    return str(d)


@click.group()
def instrument() -> None:
    """Instruments: list them, halt, resume or close trading."""


@instrument.command("list")
@common
def instrument_list(ctx: Ctx) -> None:
    """The instruments defined in the venue's database."""
    insts = run_db(ctx, refdata.load_instruments)
    table = Table("symbol", "base", "quote", "tick", "lot", "min qty (lots)", "band (bps)", "status")
    for i in insts:
        table.add_row(i.symbol, i.base, i.quote, str(i.tick_size), str(i.lot_size), str(i.min_qty),
                      str(i.band_bps), i.status.value)
    console().print(table)


@instrument.command("status")
@click.argument("symbol")
@click.argument("status", type=click.Choice(["open", "halted", "closed"]))
@common
def instrument_status(ctx: Ctx, symbol: str, status: str) -> None:
    """Set SYMBOL's trading status (halted: no matching, cancels allowed)."""
    _ask(ctx, "trading_status", {"instrument": symbol, "status": status})
    click.echo(f"{symbol} is now {status}")


@account.command("kill-switch")
@click.argument("account_id")
@click.argument("state", type=click.Choice(["on", "off"]))
@common
def kill_switch(ctx: Ctx, account_id: str, state: str) -> None:
    """On: cancel every open order of ACCOUNT_ID and refuse new ones until switched off."""
    res = _ask(ctx, "kill_switch", {"account": account_id, "on": state == "on"})
    click.echo(f"kill switch {state} for {account_id}; {res.get('cancelled', 0)} orders cancelled")


@account.command("deposit")
@click.argument("account_id")
@click.argument("asset")
@click.argument("amount")
@click.option("--ref", default="", help="External reference recorded in the ledger.")
@common
def deposit(ctx: Ctx, account_id: str, asset: str, amount: str, ref: str) -> None:
    """Credit AMOUNT of ASSET to ACCOUNT_ID (a ledger entry against @external)."""
    _ask(ctx, "deposit", {"account": account_id, "asset": asset.upper(), "amount": _amount(amount), "ref": ref})
    click.echo(f"deposited {amount} {asset.upper()} to {account_id}")


@account.command("withdraw")
@click.argument("account_id")
@click.argument("asset")
@click.argument("amount")
@click.option("--ref", default="", help="External reference recorded in the ledger.")
@common
def withdraw(ctx: Ctx, account_id: str, asset: str, amount: str, ref: str) -> None:
    """Debit AMOUNT of ASSET from ACCOUNT_ID's available balance."""
    _ask(ctx, "withdraw", {"account": account_id, "asset": asset.upper(), "amount": _amount(amount), "ref": ref})
    click.echo(f"withdrew {amount} {asset.upper()} from {account_id}")


@account.command("balances")
@click.argument("account_id")
@common
def balances(ctx: Ctx, account_id: str) -> None:
    """ACCOUNT_ID's balances: total, reserved for open orders, available."""
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
    res = _ask(ctx, "mass_cancel", {"account": account_id, "instrument": symbol,
                                    "side": {"buy": "1", "sell": "2"}.get(side or "")})
    click.echo(f"{res.get('cancelled', 0)} orders cancelled")


@click.command("end-of-session")
@click.option("--instrument", "symbol", help="Only this instrument (default: all).")
@common
def end_of_session(ctx: Ctx, symbol: str | None) -> None:
    """Expire DAY orders."""
    res = _ask(ctx, "end_of_session", {"instrument": symbol})
    click.echo(f"end of session: {res['events'].count('OrderExpired')} DAY orders expired")


commands = [instrument, orders, end_of_session]
