"""Custody commands: customers' withdrawals and whitelist, operators' approvals, wallets, deposits.

Customers: ``venue withdraw keygen|request|sign|status``, ``venue address add``.
Operators: ``venue withdrawals list|show|approve|reject``, ``venue custody init|status|sweep|topup|
process|policy``, ``venue deposit``.

Signed instructions (withdrawal requests, operator decisions, whitelist additions, top-ups, sweeps)
go through the custody inbox (venue/custody/inbox.py): a running venue's custody pump carries them
out and answers; when the venue is stopped the command carries them out itself, with the ledger of
the core recovered from the journal and its commands journaled. ``venue custody process`` (the pump
itself) refuses to run while the venue is up (the journal has one writer). Wallet passphrases come
from ``VENUE_CUSTODY_<TIER>_PASSPHRASE`` or a prompt; key-file passphrases from
``VENUE_KEY_PASSPHRASE`` or a prompt.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tools.cmd_access import AMOUNT, Ctx, amount_units, check_known, common, console
from venue import lock as writer_lock
from venue import registry
from venue.access import signing
from venue.core.assets import AssetError, Assets
from venue.custody import inbox, keys, store
from venue.custody.chain import SimulatedChain
from venue.custody.policy import NS, Policy, PolicyError, load_policy, starter_policy
from venue.custody.ports import JournalLedger, LedgerRefused, RegistryDirectory
from venue.custody.requests import (
    AddressAddition,
    Approval,
    RequestFormatError,
    SignedRequest,
    WithdrawalRequest,
    format_amount,
    sign_address,
    sign_approval,
    sign_request,
)
from venue.custody.submission import sign_submission
from venue.custody.wallets import WalletError, WalletSigner, load_wallets, setup_wallets
from venue.custody.workflow import Custody, Refused, RequestView

T = TypeVar("T")
ASSETS = Assets()


# ---- plumbing -----------------------------------------------------------------------------------


def _wallet_passphrase(tier: str) -> str:
    value = os.environ.get(f"VENUE_CUSTODY_{tier.upper()}_PASSPHRASE")
    if value:
        return value
    return click.prompt(f"passphrase of the {tier} wallet keys", hide_input=True)


def _key_passphrase(confirm: bool = False) -> str:
    value = os.environ.get("VENUE_KEY_PASSPHRASE")
    if value:
        return value
    return click.prompt("key passphrase", hide_input=True, confirmation_prompt=confirm)


def _run(ctx: Ctx, body: Callable[[Custody, AsyncEngine], Awaitable[T]], *, moves_funds: bool = False,
         create: bool = False) -> T:
    """Open the database and a Custody service on it, run ``body``; refusals exit with status 1."""

    async def main() -> T:
        engine = ctx.engine(create=create)
        try:
            await registry.create_schema(engine)
            if not moves_funds:
                return await body(await _custody(engine), engine)
            try:  # held while it runs: a venue starting meanwhile is refused, naming this pid
                held = await writer_lock.acquire(engine, "venue custody")
            except writer_lock.VenueLocked as exc:
                raise click.ClickException(
                    f"the venue is running ({exc.holder}): commands that move customer funds must be run by "
                    "the venue itself (stop it first; the journal has one writer)") from None
            async with held:
                return await body(await _custody(engine), engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except Refused as exc:
        where = f" (request {exc.request_id})" if exc.request_id else ""
        raise click.ClickException(f"refused{where}: {exc.reason}") from None
    except (PolicyError, WalletError, LedgerRefused, keys.SealError, RequestFormatError,
            registry.RegistryError) as exc:
        raise click.ClickException(str(exc)) from None


async def _custody(engine: AsyncEngine) -> Custody:
    ledger = await JournalLedger.open(engine)
    custody = Custody(engine, SimulatedChain(engine), ledger, RegistryDirectory(engine),
                      WalletSigner(engine, _wallet_passphrase), ASSETS)
    await custody.setup()
    return custody


def _instruct(ctx: Ctx, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Hand a signed instruction to the venue through the custody inbox and return its answer. A running
    venue carries it out itself; when the venue is stopped this command does, through the journal."""

    async def main() -> dict[str, Any]:
        engine = ctx.engine(create=False)
        try:
            await registry.create_schema(engine)
            await store.create_all(engine)
            item = await inbox.submit(engine, kind, payload, ctx.actor)
            held = await _writer_lock_if_stopped(engine)
            if held is not None:  # the venue is stopped: carry it out here, holding its lock
                async with held:
                    await (await _custody(engine)).drain_inbox(time.time_ns())
            return await inbox.wait(engine, item)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except inbox.InboxError as exc:
        raise click.ClickException(f"refused: {exc}") from None
    except (PolicyError, WalletError, LedgerRefused, keys.SealError, registry.RegistryError) as exc:
        raise click.ClickException(str(exc)) from None


async def _writer_lock_if_stopped(engine: AsyncEngine) -> writer_lock.WriterLock | None:
    """The database's writer lock when no venue holds it (the caller then writes the journal);
    None while a venue runs (it carries out what the inbox holds)."""
    try:
        return await writer_lock.acquire(engine, "venue custody")
    except writer_lock.VenueLocked:
        return None


def _asset(code: str) -> str:
    try:
        return ASSETS[code.upper()].code
    except AssetError as exc:
        raise click.BadParameter(str(exc)) from None


def _units(asset: str, amount: Decimal) -> int:
    """A typed amount (AMOUNT) of ``asset`` in its smallest units: positive, within its decimals and
    the ledger's maximum."""
    return amount_units(asset, amount, hint="--amount")


def _fmt(asset: str, units: int) -> str:
    if asset not in ASSETS:
        return str(units)
    return format_amount(units, ASSETS[asset].decimals) if units > 0 else ("0" if units == 0 else
                                                                            "-" + _fmt(asset, -units))


def _when(ns: int | None) -> str:
    if not ns:
        return ""
    return datetime.fromtimestamp(ns / NS, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _load_signing_key(path: str, purpose: keys.KeyPurpose) -> Ed25519PrivateKey:
    """A private key from a sealed key file (JSON, passphrase) or an unencrypted PKCS#8 PEM."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise click.BadParameter(f"cannot read key file {path}: {exc}") from None
    if text.lstrip().startswith("{"):
        try:
            return keys.unseal(keys.SealedKey.from_json(text), _key_passphrase(), purpose)
        except (keys.SealError, ValueError, KeyError) as exc:
            raise click.ClickException(f"{path}: {exc}") from None
    try:
        return signing.load_private_key(text)
    except signing.KeyFormatError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def _show(view: RequestView) -> None:
    t = Table(title=f"{view.kind} {view.id}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    rows = [("state", view.state), ("reason", view.reason), ("account", view.account or ""),
            ("asset", view.asset), ("amount", _fmt(view.asset, view.amount)), ("from", view.source),
            ("to", view.destination), ("route", view.route),
            ("approvals", f"{sum(a.decision == 'approve' for a in view.approvals)} of {view.approvals_required}"),
            ("initiator", view.initiator), ("submitted by", view.submitted_by or ""), ("funds", view.funds), ("txid", view.txid or ""),
            ("attempts", str(view.attempts)), ("created", _when(view.created_at)),
            ("expires", _when(view.expiry)), ("time-lock ends", _when(view.release_at)),
            ("policy", f"v{view.policy_version}"), ("digest", view.digest)]
    for k, v in rows:
        t.add_row(k, v)
    console().print(t)
    if view.approvals:
        a = Table("operator", "decision", "at", "valid until", title="decisions")
        for ap in view.approvals:
            a.add_row(ap.operator, ap.decision, _when(ap.ts), _when(ap.expiry))
        console().print(a)
    h = Table("at", "from", "to", "reason", title="history")
    for ts, frm, to, reason in view.history:
        h.add_row(_when(ts), frm, to, reason)
    console().print(h)


def _list(views: list[RequestView]) -> None:
    t = Table("id", "kind", "account", "asset", "amount", "to", "state", "approvals", "updated")
    for v in views:
        t.add_row(v.id, v.kind, v.account or "", v.asset, _fmt(v.asset, v.amount), v.destination, v.state,
                  f"{sum(a.decision == 'approve' for a in v.approvals)}/{v.approvals_required}",
                  _when(v.updated_at))
    console().print(t)


# ---- customers: venue withdraw ------------------------------------------------------------------


@click.group()
def withdraw() -> None:
    """Customer withdrawals: make a key, prepare a request, sign and submit it, follow it."""


@withdraw.command("keygen")
@click.option("--account", required=True)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Sealed key file to write.")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the public key as the account's withdrawal key.")
@common
def withdraw_keygen(ctx: Ctx, account: str, out: str, register: bool) -> None:
    """Create a withdrawal key (sealed with scrypt under a passphrase) and register it."""
    if Path(out).exists():
        raise click.BadParameter(f"{out} exists; refusing to overwrite a key")
    sealed, _ = keys.generate(keys.KeyPurpose.WITHDRAWAL, _key_passphrase(confirm=True))
    if register:
        async def body(custody: Custody, engine: AsyncEngine) -> None:
            if not any(a.account_id == account for a in await registry.load_accounts(engine)):
                raise click.ClickException(f"unknown account {account}")
            await custody.register_withdrawal_key(account, sealed.public_key, time.time_ns())

        _run(ctx, body)
    Path(out).write_text(sealed.to_json())
    os.chmod(out, 0o600)
    click.echo(f"withdrawal key {sealed.key_id} written to {out}" + (f", registered for {account}" if register else ""))


@withdraw.command("request")
@click.option("--account", required=True)
@click.option("--asset", required=True, callback=lambda c, p, v: _asset(v))
@click.option("--amount", required=True, type=AMOUNT, help="Decimal amount, e.g. 0.25")
@click.option("--destination", required=True, help="A whitelisted address.")
@click.option("--expires-in", default=3600, show_default=True, type=click.IntRange(1, 7 * 86400),
              help="Seconds the request stays valid.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Request file to write.")
def withdraw_request(account: str, asset: str, amount: Decimal, destination: str, expires_in: int, out: str) -> None:
    """Prepare an unsigned withdrawal request (canonical amount, fresh nonce, expiry)."""
    units = _units(asset, amount)
    req = WithdrawalRequest(account, asset, format_amount(units, ASSETS[asset].decimals), destination,
                            secrets.token_hex(12), int(time.time()) + expires_in)
    try:
        req.validate()
    except RequestFormatError as exc:
        raise click.BadParameter(str(exc)) from None
    Path(out).write_text(SignedRequest(req, "", "").to_json())
    click.echo(f"request written to {out}: {req.amount} {asset} to {destination}; sign it with "
               f"`venue withdraw sign {out} --key KEYFILE --no-submit`; an operator submits it with "
               f"`venue withdraw submit {out} --operator NAME --operator-key KEY`")


def _submitter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--operator-key", "operator_key", type=click.Path(exists=True, dir_okay=False),
                     help="The submitting operator's key (their approval key: PEM or sealed key file).")(f)
    return click.option("--operator", default=None,
                        help="The registered operator submitting the request (four eyes: they never approve it).")(f)


def _submit(ctx: Ctx, signed: SignedRequest, operator: str | None, operator_key: str | None) -> None:
    """Hand a customer-signed request to the venue, the submission signed by a registered operator:
    the venue stores that operator (verified against their registered key) as the submitter, never
    the free-text ``--actor``."""
    if not operator or not operator_key:
        raise click.UsageError("submitting needs --operator NAME and --operator-key FILE: the submitter is an "
                               "authenticated operator (four eyes: the submitter never approves the request)")
    key = _load_signing_key(operator_key, keys.KeyPurpose.APPROVAL)
    try:
        sub = sign_submission(key, signed, operator, int(time.time()) + 300)
    except RequestFormatError as exc:
        raise click.BadParameter(str(exc)) from None
    out = _instruct(ctx, "request", {**inbox.encode_request(signed), "submitter": sub.to_dict()})
    click.echo(f"withdrawal {out['id']}: {out['state']}" + (f" ({out['reason']})" if out["reason"] else "")
               + f"; submitted by {operator}")


@withdraw.command("sign")
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--submit/--no-submit", default=True, show_default=True,
              help="Submit to the venue once signed (needs --operator and --operator-key).")
@_submitter_options
@common
def withdraw_sign(ctx: Ctx, request_file: str, key_file: str, submit: bool, operator: str | None,
                  operator_key: str | None) -> None:
    """Sign a request file with the withdrawal key, and submit it (as a registered operator)."""
    if submit and not (operator and operator_key):
        raise click.UsageError("submitting needs --operator NAME and --operator-key FILE (or sign with "
                               "--no-submit and hand the file to an operator: `venue withdraw submit`)")
    try:
        doc = SignedRequest.from_json(Path(request_file).read_text())
    except RequestFormatError as exc:
        raise click.BadParameter(str(exc)) from None
    key = _load_signing_key(key_file, keys.KeyPurpose.WITHDRAWAL)
    signed = sign_request(key, signing.key_id_for(key.public_key()), doc.request)
    Path(request_file).write_text(signed.to_json())
    if not submit:
        click.echo(f"signed {request_file} (key {signed.key_id}); not submitted")
        return
    _submit(ctx, signed, operator, operator_key)


@withdraw.command("submit")
@click.argument("request_file", type=click.Path(exists=True, dir_okay=False))
@_submitter_options
@common
def withdraw_submit(ctx: Ctx, request_file: str, operator: str | None, operator_key: str | None) -> None:
    """Submit a customer-signed request file, as the registered operator OPERATOR (signed with their key)."""
    try:
        signed = SignedRequest.from_json(Path(request_file).read_text())
    except RequestFormatError as exc:
        raise click.BadParameter(str(exc)) from None
    _submit(ctx, signed, operator, operator_key)


@withdraw.command("status")
@click.argument("request_id", required=False)
@click.option("--account", default=None, help="List this account's withdrawals.")
@common
def withdraw_status(ctx: Ctx, request_id: str | None, account: str | None) -> None:
    """Show one withdrawal, or list an account's."""
    if not request_id and not account:
        raise click.UsageError("give a request id or --account")

    if account:
        check_known(ctx, accounts=(account,))

    async def body(custody: Custody, engine: AsyncEngine) -> Any:
        return await custody.get(request_id) if request_id else await custody.list(account=account)

    out = _run(ctx, body)
    _show(out) if isinstance(out, RequestView) else _list(out)


# ---- customers: venue address -------------------------------------------------------------------


@click.group()
def address() -> None:
    """Withdrawal address whitelist."""


@address.command("add")
@click.argument("destination")
@click.option("--account", required=True)
@click.option("--asset", required=True, callback=lambda c, p, v: _asset(v))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The account's withdrawal key: the instruction is signed with it.")
@click.option("--label", default="")
@common
def address_add(ctx: Ctx, destination: str, account: str, asset: str, key_file: str, label: str) -> None:
    """Whitelist a destination (signed instruction); usable once the time-lock has passed (default 24 h)."""
    check_known(ctx, accounts=(account,))
    key = _load_signing_key(key_file, keys.KeyPurpose.WITHDRAWAL)
    try:
        signed = sign_address(key, signing.key_id_for(key.public_key()), AddressAddition(
            account, asset, destination, label, secrets.token_hex(12), int(time.time()) + 300))
    except RequestFormatError as exc:
        raise click.BadParameter(str(exc)) from None

    usable = _instruct(ctx, "address", inbox.encode_address(signed))["usable_from"]
    click.echo(f"{destination} whitelisted for {account} {asset}; usable from {_when(usable)} UTC")


# ---- operators: venue withdrawals ---------------------------------------------------------------


@click.group()
def withdrawals() -> None:
    """Operators: list, inspect, approve or reject withdrawals and transfers."""


@withdrawals.command("list")
@click.option("--state", default=None, help="Only this state.")
@click.option("--all", "all_", is_flag=True, help="Include finished ones.")
@common
def withdrawals_list(ctx: Ctx, state: str | None, all_: bool) -> None:
    """List open requests (withdrawals, top-ups, sweeps)."""
    _list(_run(ctx, lambda c, e: c.list(state=state, open_only=not (all_ or state))))


@withdrawals.command("show")
@click.argument("request_id")
@common
def withdrawals_show(ctx: Ctx, request_id: str) -> None:
    """One request with its decisions and history."""
    _show(_run(ctx, lambda c, e: c.get(request_id)))


def _decide(ctx: Ctx, request_id: str, operator: str, key_file: str, ttl: int, decision: str) -> None:
    key = _load_signing_key(key_file, keys.KeyPurpose.APPROVAL)

    view = _run(ctx, lambda c, e: c.get(request_id))  # what is signed: this request's digest
    approval = Approval(request_id, view.digest, decision, operator, secrets.token_hex(12), int(time.time()) + ttl)
    out = _instruct(ctx, "decision", inbox.encode_decision(sign_approval(key, approval)))
    click.echo(f"{decision} by {operator} recorded; {out['id']} is {out['state']}" +
               (f" ({out['reason']})" if out["reason"] else ""))


@withdrawals.command("approve")
@click.argument("request_id")
@click.option("--operator", required=True, help="Your operator name.")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Your approval key (PEM or sealed key file).")
@click.option("--ttl", default=900, show_default=True, type=click.IntRange(1, 86400),
              help="Seconds the approval stays valid.")
@common
def withdrawals_approve(ctx: Ctx, request_id: str, operator: str, key_file: str, ttl: int) -> None:
    """Sign and record an approval (over the request digest, a nonce and an expiry)."""
    _decide(ctx, request_id, operator, key_file, ttl, "approve")


@withdrawals.command("reject")
@click.argument("request_id")
@click.option("--operator", required=True)
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--ttl", default=900, show_default=True, type=click.IntRange(1, 86400))
@common
def withdrawals_reject(ctx: Ctx, request_id: str, operator: str, key_file: str, ttl: int) -> None:
    """Sign and record a rejection: it ends the request and releases its funds."""
    _decide(ctx, request_id, operator, key_file, ttl, "reject")


# ---- operators: venue custody -------------------------------------------------------------------


@click.group()
def custody() -> None:
    """Wallets: set up, status and reconciliation, sweep, top-up, the pump, the policy."""


@custody.command("init")
@click.option("--assets", "codes", default="BTC,ETH,USDT", show_default=True)
@common
def custody_init(ctx: Ctx, codes: str) -> None:
    """Create the hot, warm and cold wallets of each asset and a first policy (if none)."""
    assets = [_asset(c) for c in codes.split(",") if c.strip()]

    async def body(custody: Custody, engine: AsyncEngine) -> tuple[list, Policy]:
        now = time.time_ns()
        wallets = await setup_wallets(engine, custody.chain, assets, {t: _wallet_passphrase(t) for t in
                                                                      ("hot", "warm", "cold")}, now)
        try:
            policy = await custody.policy()
        except PolicyError:
            policy = await custody.set_policy(starter_policy({a: ASSETS[a].decimals for a in assets}), ctx.actor, now)
        return wallets, policy

    wallets, policy = _run(ctx, body, create=True)
    t = Table("asset", "tier", "address", "key id")
    for w in wallets:
        t.add_row(w.asset, w.tier, w.address, w.key_id)
    console().print(t)
    click.echo(f"policy v{policy.version} in force")


@custody.command("status")
@common
def custody_status(ctx: Ctx) -> None:
    """Holdings per wallet (book and chain), in flight, owed to customers, hot ratio, breaches."""
    statuses = _run(ctx, lambda c, e: c.status())
    t = Table("asset", "hot", "warm", "cold", "in flight", "holdings", "owed", "hot ratio", "top-ups pending",
              "status", title="custody")
    breaches = []
    for s in statuses:
        a = s.asset
        t.add_row(a, _fmt(a, s.book.get("hot", 0)), _fmt(a, s.book.get("warm", 0)), _fmt(a, s.book.get("cold", 0)),
                  _fmt(a, s.in_flight), _fmt(a, s.holdings), _fmt(a, s.owed), f"{s.hot_ratio:.1%}",
                  _fmt(a, s.pending_topups), "[red]BREACH[/red]" if s.breaches else "[green]ok[/green]")
        breaches += [f"{a}: {b}" for b in s.breaches]
    console().print(t)
    for b in breaches:
        console().print(f"[red]breach[/red] {b}")
    if breaches:
        raise SystemExit(3)


@custody.command("sweep")
@click.option("--asset", required=True, callback=lambda c, p, v: _asset(v))
@common
def custody_sweep(ctx: Ctx, asset: str) -> None:
    """Move what the hot wallet holds above its target to cold now."""

    out = _instruct(ctx, "sweep", {"asset": asset})
    click.echo("nothing to sweep: the hot wallet is at or below its target" if out["id"] is None else
               f"sweep {out['id']}: {_fmt(asset, out['amount'])} {asset} hot -> cold, {out['state']}")


@custody.command("topup")
@click.option("--asset", required=True, callback=lambda c, p, v: _asset(v))
@click.option("--amount", required=True, type=AMOUNT)
@common
def custody_topup(ctx: Ctx, asset: str, amount: Decimal) -> None:
    """Propose a cold -> hot transfer; it waits for the top-up quorum (the proposer never counts)."""
    units = _units(asset, amount)
    out = _instruct(ctx, "topup", {"asset": asset, "amount": units})
    click.echo(f"top-up {out['id']}: {_fmt(asset, units)} {asset} cold -> hot, {out['state']}, needs "
               f"{out['approvals_required']} approvals")


@custody.command("process")
@click.option("--blocks", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="Blocks the simulated chain makes first.")
@common
def custody_process(ctx: Ctx, blocks: int) -> None:
    """Run the pump once: expiries, signing, broadcasts, confirmations, deposits, hot-wallet marks."""

    async def body(custody: Custody, engine: AsyncEngine) -> Any:
        if blocks and isinstance(custody.chain, SimulatedChain):
            await custody.chain.mine(blocks)
        return await custody.process(time.time_ns())

    report = _run(ctx, body, moves_funds=True)
    for rid, state in report.moved:
        click.echo(f"{rid} -> {state}")
    for txid in report.deposits:
        click.echo(f"deposit {txid} credited")
    for rid in report.proposed:
        click.echo(f"proposed {rid}")
    for rid, err in report.errors:
        click.echo(f"error {rid}: {err}", err=True)


@custody.command("policy")
@click.option("--set", "policy_file", type=click.Path(exists=True, dir_okay=False),
              help="Store this policy (JSON) as the next version.")
@common
def custody_policy(ctx: Ctx, policy_file: str | None) -> None:
    """Show the policy in force, or store a new version."""

    async def body(custody: Custody, engine: AsyncEngine) -> Policy:
        if policy_file:
            try:
                policy = Policy.from_json(Path(policy_file).read_text())
            except (ValueError, TypeError, KeyError) as exc:
                raise click.ClickException(f"{policy_file}: not a policy: {exc}") from None
            return await custody.set_policy(policy, ctx.actor, time.time_ns())
        return await custody.policy()

    policy = _run(ctx, body)
    click.echo(f"policy v{policy.version}")
    click.echo(json.dumps(json.loads(policy.to_json()), indent=2, sort_keys=True))


# ---- venue deposit ------------------------------------------------------------------------------


@click.command("deposit")
@click.option("--account", required=True)
@click.option("--asset", required=True, callback=lambda c, p, v: _asset(v))
@click.option("--amount", required=True, type=AMOUNT)
@click.option("--from", "source", default="outside-wallet", show_default=True, help="Sending address.")
@common
def deposit(ctx: Ctx, account: str, asset: str, amount: Decimal, source: str) -> None:
    """A customer deposit arriving through the chain adapter: the transfer to the hot wallet (memo:
    the account) is made on the simulated chain and confirmed; custody credits it to the ledger (the
    running venue does, or this command when the venue is stopped)."""
    units = _units(asset, amount)

    async def credited(engine: AsyncEngine, txid: str) -> bool:
        async with engine.connect() as conn:
            return (await conn.execute(select(store.deposits.c.txid).where(
                store.deposits.c.txid == txid))).first() is not None

    async def main() -> int:
        engine = ctx.engine(create=False)
        try:
            await registry.create_schema(engine)
            if not any(a.account_id == account for a in await registry.load_accounts(engine)):
                raise click.ClickException(f"unknown account {account}")
            await store.create_all(engine)
            chain = SimulatedChain(engine)
            async with engine.connect() as conn:
                hot = (await load_wallets(conn, asset)).get("hot")
                policy = await load_policy(conn)
            if hot is None:
                raise click.ClickException(f"no {asset} wallets: run `venue custody init --assets {asset}`")
            txid = await chain.send_external(source, hot.address, asset, units, account)
            await chain.mine(policy.confirmations)
            held = await _writer_lock_if_stopped(engine)
            if held is not None:  # the venue is stopped: credit it here, holding its lock
                async with held:
                    await (await _custody(engine)).process(time.time_ns())
                    if not await credited(engine, txid):
                        raise click.ClickException(f"transfer {txid} confirmed but not credited")
                    return (await JournalLedger.open(engine)).ledger.balance(account, asset)[0]
            deadline = time.monotonic() + 15
            while not await credited(engine, txid):  # the running venue credits it once confirmed
                if time.monotonic() > deadline:
                    raise click.ClickException(f"transfer {txid} confirmed but not credited yet (is the venue "
                                               "running custody?)")
                await asyncio.sleep(0.1)
            return -1  # the running venue credited it: its ledger is the one to ask
        finally:
            await engine.dispose()

    try:
        total = asyncio.run(main())
    except (PolicyError, WalletError, LedgerRefused, keys.SealError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"deposited {_fmt(asset, units)} {asset} to {account}" +
               (f"; balance {_fmt(asset, total)} {asset}" if total >= 0 else ""))


commands = [withdraw, address, withdrawals, custody, deposit]
