"""The withdrawal and internal-transfer state machine, and the service that drives it.

States (explicit table ``TRANSITIONS`` in venue.custody.states; any other move raises
TransitionError in ``Custody._move``, the one place states change)::

    requested -> screened -> pending_approval -> approved -> (time-lock) -> signing -> broadcast -> confirmed
    ends: rejected, expired, cancelled, failed

A customer withdrawal holds its funds in the customer ledger when it is requested; entering an end
state settles the hold exactly once (confirmed: consume; any other end: release), in the same
database transaction as the move. A refused or dropped broadcast goes back to ``signing`` and is
retried (a new transaction id) up to the policy's attempts, then ``failed`` and released: the hot
wallet book is debited only when a broadcast is accepted and credited back when it is dropped, so
nothing is lost or paid twice. Internal transfers (``topup`` cold -> hot, ``sweep`` hot -> cold)
use the same machine without customer funds. Every move is a row in ``custody_transitions`` and an
entry in the audit log, written in the same transaction.

All methods take ``now`` (ns since the epoch) from the caller; ``Custody.process(now)`` is the pump
(expiries, signing, broadcasting, confirmations, deposits, hot-wallet management).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue import audit
from venue.access.signing import key_id_for
from venue.core.assets import Assets
from venue.custody import store
from venue.custody.chain import BroadcastError, ChainAdapter, SignedTransfer
from venue.custody.keys import SealError
from venue.custody.policy import NS, Policy, PolicyError, Refusal, decide, load_policy, save_policy
from venue.custody.ports import CustomerLedger, Directory, LedgerRefused
from venue.custody.requests import (
    RequestFormatError,
    SignedAddressAddition,
    SignedApproval,
    SignedRequest,
    format_amount,
    parse_amount,
)
from venue.custody.states import (  # re-exported: the state machine's public names
    DAY,
    OPEN,
    TERMINAL,
    TRANSITIONS,
    ApprovalView,
    ProcessReport,
    Refused,
    RequestView,
    State,
    TransitionError,
)
from venue.custody.turns import Recorder
from venue.custody.wallets import (
    TIERS,
    AssetStatus,
    WalletError,
    WalletSigner,
    adjust,
    asset_status,
    load_wallets,
)

S = State
INTERNAL_DOMAIN = "venue/custody/internal-transfer/v1"
#: funds of an ended request whose hold the core had not settled yet (the earlier commit-first
#: design; no longer written): ``status`` and the venue's start-up check still read them
SETTLING = {"consuming": "consumed", "releasing": "released"}


class Custody:
    """The custody service: withdrawals, approvals, internal transfers, deposits, status."""

    def __init__(self, engine: AsyncEngine, chain: ChainAdapter, ledger: CustomerLedger, directory: Directory,
                 signer: WalletSigner, assets: Assets | None = None, transaction: Any = None) -> None:
        self.engine = engine
        self.chain = chain
        self.ledger = ledger
        self.directory = directory
        self.signer = signer
        self.assets = assets or Assets()
        self._lock = asyncio.Lock()
        # Every custody transaction that moves customer funds journals its ledger command in the
        # same transaction as its own rows: the caller's (JournalLedger, the venue stopped) or the
        # venue's turn (``transaction``: venue/custody/turns.py, TurnLedger), where the body runs
        # inside the turn and the core answers at once, so no custody transaction waits for the core.
        # (A plain CoreLedger over a bare core, in tests, journals nothing.)
        self._transaction = transaction

    @asynccontextmanager
    async def _txn(self) -> AsyncIterator[AsyncConnection]:
        """A custody transaction: the venue's turn (running venue) or its own (venue stopped)."""
        if self._transaction is not None:
            async with self._transaction() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def _audit(self, conn: Any, kind: str, **kw: Any) -> None:
        """An audit entry in the transaction: handed to the turn's write set if the body completes
        (venue/custody/turns.py), else appended in the caller's transaction."""
        if isinstance(conn, Recorder):
            conn.audit.append(audit.recordable(kind, kw))
        else:
            await audit.append(conn, kind, **kw)

    async def setup(self) -> None:
        """Create the custody and audit tables if missing."""
        await store.create_all(self.engine)
        await audit.create_schema(self.engine)

    async def set_policy(self, policy: Policy, by: str, now: int) -> Policy:
        async with self.engine.begin() as conn:
            saved = await save_policy(conn, policy, by, now)
            await audit.append(conn, "custody.policy", actor=by, subject=f"policy:{saved.version}",
                               details={"body": json.loads(saved.to_json())}, time_ns=now)
        return saved

    async def policy(self) -> Policy:
        async with self.engine.connect() as conn:
            return await load_policy(conn)

    # ---- customer set-up ------------------------------------------------------------------------

    async def register_withdrawal_key(self, account: str, public_key: bytes, now: int) -> str:
        """Register a customer's Ed25519 withdrawal key (separate from logon keys); returns its id."""
        pub = Ed25519PublicKey.from_public_bytes(public_key)
        key_id = key_id_for(pub)
        async with self.engine.begin() as conn:
            await conn.execute(insert(store.account_keys).values(
                account=account, key_id=key_id, public_key=base64.b64encode(public_key).decode(), added_at=now))
            await audit.append(conn, "custody.key_added", actor=account, subject=account,
                               details={"key_id": key_id}, time_ns=now)
        return key_id

    async def add_address(self, account: str, asset: str, address: str, now: int, label: str = "") -> int:
        """Whitelist a destination (back office; customers go through ``add_address_signed``); usable
        once the policy's time-lock has passed. Returns that time."""
        if asset not in self.assets:
            raise Refused(f"unknown asset {asset}")
        if not address or len(address) > 128 or not address.isprintable() or " " in address:
            raise Refused(f"invalid address {address!r}")
        policy = await self.policy()
        async with self.engine.begin() as conn:
            exists = (await conn.execute(select(store.whitelist.c.added_at).where(
                store.whitelist.c.account == account, store.whitelist.c.asset == asset,
                store.whitelist.c.address == address))).first()
            if exists is not None:
                raise Refused(f"{address} is already whitelisted for {account} {asset}")
            await conn.execute(insert(store.whitelist).values(account=account, asset=asset, address=address,
                                                              label=label, added_at=now))
            await audit.append(conn, "custody.address_added", actor=account, subject=account,
                               details={"asset": asset, "address": address, "label": label,
                                        "usable_from": now + policy.whitelist_timelock_ns}, time_ns=now)
        return now + policy.whitelist_timelock_ns

    async def add_address_signed(self, signed: SignedAddressAddition, now: int) -> int:
        """Whitelist a destination on the customer's signed instruction (withdrawal key, fresh nonce,
        not expired); returns when it becomes usable. Refusals are audited."""
        a = signed.addition
        try:
            async with self._lock:
                await self._check_customer_signature(a.account, signed.key_id, signed.verify, a.expiry, now)
                async with self.engine.begin() as conn:
                    if (await conn.execute(select(store.request_nonces.c.nonce).where(
                            store.request_nonces.c.account == a.account,
                            store.request_nonces.c.nonce == a.nonce))).first() is not None:
                        raise Refused(f"replayed instruction: nonce {a.nonce!r} was already used by {a.account}")
                    await conn.execute(insert(store.request_nonces).values(account=a.account, nonce=a.nonce,
                                                                           used_at=now))
        except Refused as exc:
            await audit.append(self.engine, "custody.address_refused", actor=a.account, subject=a.account,
                               details={"reason": exc.reason, "address": a.address, "nonce": a.nonce}, time_ns=now)
            raise
        return await self.add_address(a.account, a.asset, a.address, now, a.label)

    async def _check_customer_signature(self, account: str, key_id: str, verify: Any, expiry: int,
                                        now: int) -> None:
        async with self.engine.connect() as conn:
            k = store.account_keys
            row = (await conn.execute(select(k.c.public_key).where(
                k.c.account == account, k.c.key_id == key_id, k.c.revoked_at.is_(None)))).first()
        if row is None:
            raise Refused(f"unknown withdrawal key {key_id!r} for account {account}")
        if not verify(Ed25519PublicKey.from_public_bytes(base64.b64decode(row.public_key))):
            raise Refused("bad signature: not signed by this key, or altered")
        if expiry * NS <= now:
            raise Refused(f"instruction expired at {expiry} (unix seconds)")

    # ---- withdrawal requests ---------------------------------------------------------------------

    async def request_withdrawal(self, signed: SignedRequest, now: int, submitted_by: str | None = None) -> RequestView:
        """Verify, reserve, screen and route a signed withdrawal request. ``submitted_by``: who
        handed it in (an operator acting for the customer); four eyes: they never approve it.

        Raises Refused (with the reason, audited) for a malformed, forged, altered, expired or
        replayed request, an unknown key, insufficient funds, KYC, whitelist / time-lock, tier
        limits and hot caps. Returns the request (pending_approval or approved)."""
        async with self._lock:
            try:
                return await self._request(signed, now, submitted_by)
            except Refused as exc:
                if exc.request_id is None:  # refused before it became a request: audit here
                    await audit.append(self.engine, "custody.request_refused", actor=signed.request.account,
                                       subject=signed.request.account, time_ns=now,
                                       details={"reason": exc.reason, "nonce": signed.request.nonce,
                                                "key_id": signed.key_id})
                raise

    async def _request(self, signed: SignedRequest, now: int, submitted_by: str | None) -> RequestView:
        req = signed.request
        try:
            req.validate()
            asset = self.assets[req.asset]
        except (RequestFormatError, ValueError) as exc:
            raise Refused(f"malformed request: {exc}") from None
        async with self.engine.connect() as conn:
            k = store.account_keys
            row = (await conn.execute(select(k.c.public_key).where(
                k.c.account == req.account, k.c.key_id == signed.key_id, k.c.revoked_at.is_(None)))).first()
        if row is None:
            raise Refused(f"unknown withdrawal key {signed.key_id!r} for account {req.account}")
        if not signed.verify(Ed25519PublicKey.from_public_bytes(base64.b64decode(row.public_key))):
            raise Refused("bad signature: the request was not signed by this key, or was altered")
        try:
            amount = parse_amount(req.amount, asset.decimals)
        except RequestFormatError as exc:
            raise Refused(str(exc)) from None
        if req.expiry * NS <= now:
            raise Refused(f"request expired at {req.expiry} (unix seconds)")
        policy = await self.policy()
        rid, digest = req.request_id, req.digest()
        async with self._txn() as conn:
            if (await conn.execute(select(store.request_nonces.c.nonce).where(
                    store.request_nonces.c.account == req.account,
                    store.request_nonces.c.nonce == req.nonce))).first() is not None:
                raise Refused(f"replayed request: nonce {req.nonce!r} was already used by {req.account}")
            try:
                await conn.execute(insert(store.request_nonces).values(account=req.account, nonce=req.nonce,
                                                                       used_at=now))
                await conn.execute(insert(store.requests).values(
                    id=rid, kind="withdrawal", account=req.account, asset=req.asset, amount=amount, source="hot",
                    destination=req.destination, nonce=req.nonce, expiry=req.expiry * NS, digest=digest,
                    signature=signed.signature, key_id=signed.key_id, initiator=f"account:{req.account}",
                    submitted_by=submitted_by, state=S.REQUESTED, route="", approvals_required=0,
                    policy_version=policy.version, created_at=now, updated_at=now, funds="none", attempts=0,
                    reason=""))
            except IntegrityError:
                raise Refused(f"replayed request: nonce {req.nonce!r} was already used by {req.account}") from None
            await self._log(conn, rid, "", S.REQUESTED, now, f"account:{req.account}",
                            {"amount": req.amount, "asset": req.asset, "destination": req.destination,
                             "submitted_by": submitted_by})
            # the hold journaled with the request, atomically
            problem = await self._hold(req.account, req.asset, amount, rid, now, conn)
            problem = await self._route(conn, policy, req.account, req.asset, req.destination, amount, rid,
                                        now, problem)
        if problem is not None:
            raise Refused(problem, rid)
        return await self.get(rid)

    async def _hold(self, account: str, asset: str, amount: int, rid: str, now: int,
                    conn: AsyncConnection | None) -> str | None:
        """Hold the request's funds; the refusal's reason, or None once held."""
        try:
            await self.ledger.hold(now, account, asset, amount, rid, conn=conn)
        except LedgerRefused as exc:
            return f"insufficient available balance: {exc.reason}"
        return None

    async def _route(self, conn: AsyncConnection, policy: Policy, account: str, asset: str, destination: str,
                     amount: int, rid: str, now: int, problem: str | None) -> str | None:
        """After the hold: screen and route a requested withdrawal, or reject it; the refusal or None."""
        if problem is None:
            await conn.execute(update(store.requests).where(store.requests.c.id == rid).values(funds="held"))
            problem = await self._screen(conn, policy, rid, account, asset, destination, amount, now)
        if problem is not None:
            await self._move(conn, rid, S.REQUESTED, S.REJECTED, now, problem)
            return problem
        await self._move(conn, rid, S.REQUESTED, S.SCREENED, now, "screened")
        route = decide(policy, asset, amount, await self._tier(account),
                       await self._used_24h(conn, now, asset, account=account, exclude=rid),
                       await self._used_24h(conn, now, asset, exclude=rid))
        await conn.execute(update(store.requests).where(store.requests.c.id == rid).values(
            route=route.kind, approvals_required=route.approvals))
        if route.kind == "auto":
            await self._move(conn, rid, S.SCREENED, S.APPROVED, now, "automatic: below the threshold",
                             release_at=now)
        else:
            await self._move(conn, rid, S.SCREENED, S.PENDING_APPROVAL, now,
                             f"needs {route.approvals} operator approvals")
        return None

    async def _tier(self, account: str) -> int:
        kyc = await self.directory.kyc(account)
        return kyc.tier if kyc is not None else -1

    async def _screen(self, conn: AsyncConnection, policy: Policy, rid: str, account: str, asset: str,
                      destination: str, amount: int, now: int) -> str | None:
        """Why the request may not go on, or None: KYC, whitelist + time-lock, policy limits."""
        kyc = await self.directory.kyc(account)
        if kyc is None:
            return f"unknown account {account}"
        if (p := kyc.problem(now)) is not None:
            return p
        w = store.whitelist
        row = (await conn.execute(select(w.c.added_at).where(w.c.account == account, w.c.asset == asset,
                                                             w.c.address == destination))).first()
        if row is None:
            return f"destination {destination} is not on the whitelist of {account} for {asset}"
        if row.added_at + policy.whitelist_timelock_ns > now:
            return (f"destination {destination} was whitelisted too recently: usable "
                    f"{(row.added_at + policy.whitelist_timelock_ns - now) / 3.6e12:.1f} h from now (time-lock)")
        try:
            decide(policy, asset, amount, kyc.tier,
                   await self._used_24h(conn, now, asset, account=account, exclude=rid),
                   await self._used_24h(conn, now, asset, exclude=rid))
        except Refusal as exc:
            return exc.reason
        return None

    async def _used_24h(self, conn: AsyncConnection, now: int, asset: str, *, account: str | None = None,
                        exclude: str = "") -> int:
        """Customer withdrawals of the last 24 h not refused / returned (of one account, or all: the hot cap)."""
        r = store.requests
        q = select(func.coalesce(func.sum(r.c.amount), 0)).where(
            r.c.kind == "withdrawal", r.c.asset == asset, r.c.created_at > now - DAY, r.c.id != exclude,
            r.c.state.notin_((S.REJECTED, S.EXPIRED, S.CANCELLED, S.FAILED, S.REQUESTED)))
        if account is not None:
            q = q.where(r.c.account == account)
        return int((await conn.execute(q)).scalar())

    async def cancel(self, request_id: str, account: str, now: int) -> RequestView:
        """The customer withdraws its request (before signing); the hold is released."""
        async with self._lock, self._txn() as conn:
            row = await self._row(conn, request_id)
            if row.account != account:
                raise Refused(f"request {request_id} does not belong to {account}", request_id)
            if S.CANCELLED not in TRANSITIONS[State(row.state)]:
                raise Refused(f"request {request_id} is {row.state}: too late to cancel", request_id)
            await self._move(conn, request_id, State(row.state), S.CANCELLED, now, "cancelled by the customer",
                             actor=f"account:{account}")
        return await self.get(request_id)

    # ---- approvals ------------------------------------------------------------------------------

    async def decide(self, signed: SignedApproval, now: int) -> RequestView:
        """Record an operator's signed approval or rejection; refuses forged, replayed, expired,
        self-approvals and second decisions by the same operator."""
        a = signed.approval
        async with self._lock:
            try:
                async with self._txn() as conn:
                    await self._decide(conn, signed, now)
            except Refused as exc:
                await audit.append(self.engine, "custody.approval_refused", actor=a.operator, subject=a.request_id,
                                   details={"reason": exc.reason, "decision": a.decision, "nonce": a.nonce},
                                   time_ns=now)
                raise
        return await self.get(a.request_id)

    async def _decide(self, conn: AsyncConnection, signed: SignedApproval, now: int) -> None:
        a = signed.approval
        row = (await conn.execute(select(store.requests).where(store.requests.c.id == a.request_id))).first()
        if row is None:
            raise Refused(f"unknown request {a.request_id}")
        op = await self.directory.operator(a.operator)
        if op is None or a.operator not in await self.directory.approvers():
            raise Refused(f"{a.operator} is not an operator allowed to approve")
        if not signed.verify(Ed25519PublicKey.from_public_bytes(op.public_key)):
            raise Refused("bad approval signature: not signed by this operator's key, or altered")
        if a.digest != row.digest:
            raise Refused("the approval is for a different request (digest mismatch)")
        if a.expiry * NS <= now:
            raise Refused(f"the approval expired at {a.expiry} (unix seconds)")
        policy = await load_policy(conn, row.policy_version)
        if a.expiry * NS > now + policy.approval_max_ttl_ns:
            raise Refused("the approval is valid for longer than the policy allows")
        if row.initiator == a.operator:
            raise Refused(f"{a.operator} initiated this request and cannot approve it")
        if a.decision == "approve" and row.submitted_by == a.operator:
            raise Refused(f"{a.operator} submitted this request and cannot approve it (four eyes: the submitter "
                          "never counts as an approver)")
        if (await conn.execute(select(store.approval_nonces.c.nonce).where(
                store.approval_nonces.c.operator == a.operator,
                store.approval_nonces.c.nonce == a.nonce))).first() is not None:
            raise Refused(f"replayed approval: nonce {a.nonce!r} of {a.operator} was already used")
        if (await conn.execute(select(store.approvals.c.decision).where(
                store.approvals.c.request_id == a.request_id,
                store.approvals.c.operator == a.operator))).first() is not None:
            raise Refused(f"{a.operator} has already decided on request {a.request_id}")
        if row.state != S.PENDING_APPROVAL:
            raise Refused(f"request {a.request_id} is {row.state}, not pending approval")
        await conn.execute(insert(store.approval_nonces).values(operator=a.operator, nonce=a.nonce, used_at=now))
        await conn.execute(insert(store.approvals).values(
            request_id=a.request_id, operator=a.operator, decision=a.decision, nonce=a.nonce,
            expiry=a.expiry * NS, signature=signed.signature, ts=now))
        await self._audit(conn, f"custody.{a.decision}", actor=a.operator, subject=a.request_id,
                           details={"nonce": a.nonce, "expiry": a.expiry, "digest": a.digest}, time_ns=now)
        if a.decision == "reject":
            await self._move(conn, a.request_id, S.PENDING_APPROVAL, S.REJECTED, now,
                             f"rejected by {a.operator}", actor=a.operator)
            return
        valid = (await conn.execute(select(func.count()).select_from(store.approvals).where(
            store.approvals.c.request_id == a.request_id, store.approvals.c.decision == "approve",
            store.approvals.c.expiry > now, store.approvals.c.operator != row.initiator,
            store.approvals.c.operator != (row.submitted_by or "")))).scalar()
        if valid >= row.approvals_required:
            await self._move(conn, a.request_id, S.PENDING_APPROVAL, S.APPROVED, now,
                             f"{valid} of {row.approvals_required} approvals", actor=a.operator,
                             release_at=now + policy.approval_timelock_ns)

    # ---- internal transfers -----------------------------------------------------------------------

    async def propose_topup(self, asset: str, amount: int, initiator: str, now: int) -> RequestView:
        """Propose moving ``amount`` from cold to hot; it waits for the policy's top-up quorum."""
        async with self._lock, self._txn() as conn:
            return await self._internal(conn, "topup", asset, amount, "cold", "hot", initiator, now)

    async def sweep(self, asset: str, now: int, initiator: str = "venue") -> RequestView | None:
        """Move what the hot wallet holds above its target (less what approved payments need) to cold
        now, without waiting for the high-water mark (no approvals: value only goes to safer storage);
        None when there is nothing above the target or a sweep is already open."""
        async with self._lock, self._txn() as conn:
            return await self._maybe_sweep(conn, asset, now, initiator, force=True)

    async def _maybe_sweep(self, conn: AsyncConnection, asset: str, now: int, initiator: str,
                           force: bool = False) -> RequestView | None:
        policy = await load_policy(conn)
        ap = policy.asset(asset)
        free = (await load_wallets(conn, asset))["hot"].balance - await self._due_from_hot(conn, asset)
        if (free <= ap.high_water and not force) or free <= ap.target or \
                await self._open_internal(conn, asset, "sweep"):
            return None
        return await self._internal(conn, "sweep", asset, free - ap.target, "hot", "cold", initiator, now)

    async def _due_from_hot(self, conn: AsyncConnection, asset: str) -> int:
        """What approved (not yet broadcast) payments will take out of the hot wallet."""
        r = store.requests
        return int((await conn.execute(select(func.coalesce(func.sum(r.c.amount), 0)).where(
            r.c.asset == asset, r.c.source == "hot", r.c.state.in_((S.APPROVED, S.SIGNING))))).scalar())

    async def _open_internal(self, conn: AsyncConnection, asset: str, kind: str) -> bool:
        r = store.requests
        return (await conn.execute(select(r.c.id).where(r.c.asset == asset, r.c.kind == kind,
                                                        r.c.state.in_(tuple(OPEN))).limit(1))).first() is not None

    async def _internal(self, conn: AsyncConnection, kind: str, asset: str, amount: int, source: str,
                        destination: str, initiator: str, now: int) -> RequestView:
        if asset not in self.assets:
            raise Refused(f"unknown asset {asset}")
        if amount <= 0:
            raise Refused("amount must be positive")
        policy = await load_policy(conn)
        ap = policy.asset(asset)
        nonce = secrets.token_hex(8)
        body = {"domain": INTERNAL_DOMAIN, "kind": kind, "asset": asset, "amount": amount, "source": source,
                "destination": destination, "initiator": initiator, "created_at": now, "nonce": nonce}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        rid = ("T" if kind == "topup" else "S") + digest[:23]
        await conn.execute(insert(store.requests).values(
            id=rid, kind=kind, account=None, asset=asset, amount=amount, source=source, destination=destination,
            nonce=nonce, expiry=now + policy.approval_max_ttl_ns, digest=digest, initiator=initiator,
            state=S.REQUESTED, route="", approvals_required=0, policy_version=policy.version, created_at=now,
            updated_at=now, funds="none", attempts=0, reason=""))
        await self._log(conn, rid, "", S.REQUESTED, now, initiator,
                        {"kind": kind, "asset": asset, "amount": amount, "from": source, "to": destination})
        have = (await load_wallets(conn, asset))[source].balance
        if have < amount:
            await self._move(conn, rid, S.REQUESTED, S.REJECTED, now,
                             f"the {source} wallet holds {have}, less than {amount}")
            raise Refused(f"the {source} wallet holds {have}, less than {amount}", rid)
        await self._move(conn, rid, S.REQUESTED, S.SCREENED, now, "screened")
        if kind == "topup":
            await conn.execute(update(store.requests).where(store.requests.c.id == rid).values(
                route="quorum", approvals_required=ap.topup_quorum))
            await self._move(conn, rid, S.SCREENED, S.PENDING_APPROVAL, now,
                             f"cold -> hot needs {ap.topup_quorum} approvals")
        else:
            await conn.execute(update(store.requests).where(store.requests.c.id == rid).values(route="auto"))
            await self._move(conn, rid, S.SCREENED, S.APPROVED, now, "sweep to cold: automatic", release_at=now)
        return await self._view(conn, rid)

    # ---- the pump ----------------------------------------------------------------------------------

    async def process(self, now: int) -> ProcessReport:
        """One pass: answer the inbox, expire, sign and broadcast what is due, follow broadcasts to
        confirmation or retry, credit confirmed deposits, manage the hot wallet (sweep / top-up)."""
        report = ProcessReport()
        report.answered = await self.drain_inbox(now)
        async with self._lock:
            policy = await self.policy()
            r = store.requests
            async with self.engine.connect() as conn:
                due = (r.c.state.in_((S.APPROVED, S.SIGNING, S.BROADCAST))
                       | ((r.c.state == S.PENDING_APPROVAL) & (r.c.expiry <= now)))
                rows = (await conn.execute(select(r.c.id, r.c.state).where(due)
                                           .order_by(r.c.created_at, r.c.id))).all()
            for row in rows:
                try:
                    new = await self._advance(row.id, policy, now)
                except (TransitionError, WalletError, LedgerRefused, SealError) as exc:  # one never stops the rest
                    report.errors.append((row.id, str(exc)))
                    await audit.append(self.engine, "custody.error", subject=row.id, time_ns=now,
                                       details={"error": str(exc), "state": row.state})
                    continue
                if new is not None:
                    report.moved.append((row.id, new))
            report.deposits = await self._scan_deposits(policy, now)
            for asset in policy.assets:
                if asset not in self.assets:
                    continue
                async with self._txn() as conn:
                    ws = await load_wallets(conn, asset)
                    if "hot" not in ws:
                        continue
                    swept = await self._maybe_sweep(conn, asset, now, "venue")
                    if swept is not None:
                        report.proposed.append(swept.id)
                    ap = policy.asset(asset)
                    free = ws["hot"].balance - await self._due_from_hot(conn, asset)
                    if free < ap.low_water and not await self._open_internal(conn, asset, "topup"):
                        want = min(ap.target - free, ws["cold"].balance)
                        if want > 0:
                            t = await self._internal(conn, "topup", asset, want, "cold", "hot", "venue", now)
                            report.proposed.append(t.id)
        return report

    async def drain_inbox(self, now: int) -> int:
        """Carry out the instructions tools left in the inbox; write each answer back. Returns how many."""
        from venue import mailbox
        from venue.custody import inbox

        rows = await inbox.pending(self.engine)
        for row in rows:
            try:
                result, ok = await self._instruction(row.kind, row.payload, row.actor, now), True
            except Refused as exc:
                result, ok = {"error": exc.reason, "request_id": exc.request_id}, False
            except (ValueError, KeyError, TypeError, RequestFormatError, PolicyError) as exc:
                result, ok = {"error": f"bad instruction: {exc}"}, False
            async with self.engine.begin() as conn:
                await mailbox.answer(conn, row.id, ok, result)
        return len(rows)

    async def _instruction(self, kind: str, p: dict[str, Any], actor: str, now: int) -> dict[str, Any]:
        from venue.custody import inbox

        if kind == "request":
            from venue.custody import submission

            signed = inbox.decode_request(p)
            try:  # the submitter is the operator whose key signed the submission, never the tool's actor
                by = await submission.submitter(self.directory, p.get("submitter"), signed, now)
            except submission.SubmissionError as exc:
                await audit.append(self.engine, "custody.request_refused", actor=actor, subject=signed.request.account,
                                   time_ns=now, details={"reason": str(exc), "nonce": signed.request.nonce})
                raise Refused(str(exc)) from None
            v = await self.request_withdrawal(signed, now, submitted_by=by)
        elif kind == "decision":
            v = await self.decide(inbox.decode_decision(p), now)
        elif kind == "address":
            return {"usable_from": await self.add_address_signed(inbox.decode_address(p), now)}
        elif kind == "topup":
            v = await self.propose_topup(str(p["asset"]), int(p["amount"]), actor, now)
        elif kind == "sweep":
            sw = await self.sweep(str(p["asset"]), now, actor)
            if sw is None:
                return {"id": None}
            v = sw
        else:
            raise ValueError(f"unknown instruction {kind!r}")
        return {"id": v.id, "state": v.state, "reason": v.reason, "approvals_required": v.approvals_required,
                "amount": v.amount}

    async def _advance(self, rid: str, policy: Policy, now: int) -> str | None:
        """Move one open request along if it is due; returns its new state or None."""
        async with self._txn() as conn:
            row = await self._row(conn, rid)
            st = State(row.state)
            if st == S.PENDING_APPROVAL and row.expiry is not None and row.expiry <= now:
                await self._move(conn, rid, st, S.EXPIRED, now, "expired before its approvals were complete")
                return S.EXPIRED
            if st == S.APPROVED and (row.release_at or 0) <= now:
                ws = await load_wallets(conn, row.asset)
                if ws[row.source].balance < row.amount:
                    return None  # waits for the wallet to be topped up (or to expire)
                await self._move(conn, rid, st, S.SIGNING, now, "time-lock passed")
                st = S.SIGNING
            if st == S.BROADCAST:
                return await self._follow(conn, row, policy, now)
        if st == S.SIGNING:
            return await self._broadcast(rid, policy, now)
        return None

    async def _broadcast(self, rid: str, policy: Policy, now: int) -> str | None:
        async with self.engine.connect() as conn:
            row = await self._row(conn, rid)
            ws = await load_wallets(conn, row.asset)
        src = ws[row.source]
        dest = ws[row.destination].address if row.kind != "withdrawal" else row.destination
        transfer = await self.chain.build(src.address, dest, row.asset, row.amount, row.id,
                                          f"{row.id}#{row.attempts}")
        signed = SignedTransfer.sign(transfer, await self.signer.key(src))
        try:
            txid = await self.chain.broadcast(signed)
        except BroadcastError as exc:
            async with self._txn() as conn:
                attempts = row.attempts + 1
                await conn.execute(update(store.requests).where(store.requests.c.id == rid).values(attempts=attempts))
                if attempts >= policy.max_broadcast_attempts:
                    await self._move(conn, rid, S.SIGNING, S.FAILED, now,
                                     f"broadcast refused {attempts} times, funds returned: {exc}")
                    return S.FAILED
                await self._move(conn, rid, S.SIGNING, S.SIGNING, now, f"broadcast refused, will retry: {exc}")
            return S.SIGNING
        async with self._txn() as conn:
            await adjust(conn, row.asset, row.source, -row.amount)
            await self._move(conn, rid, S.SIGNING, S.BROADCAST, now, f"txid {txid}", txid=txid)
        return S.BROADCAST

    async def _follow(self, conn: AsyncConnection, row: Any, policy: Policy, now: int) -> str | None:
        status = await self.chain.status(row.txid)
        if status.state == "confirmed" and status.confirmations >= policy.confirmations:
            if row.kind != "withdrawal":
                await adjust(conn, row.asset, row.destination, row.amount)
            await self._move(conn, row.id, S.BROADCAST, S.CONFIRMED, now,
                             f"{status.confirmations} confirmations")
            return S.CONFIRMED
        if status.state in ("dropped", "unknown"):
            await adjust(conn, row.asset, row.source, row.amount)  # the transfer never left
            attempts = row.attempts + 1
            await conn.execute(update(store.requests).where(store.requests.c.id == row.id).values(attempts=attempts))
            if attempts >= policy.max_broadcast_attempts:
                await self._move(conn, row.id, S.BROADCAST, S.FAILED, now,
                                 f"transaction {row.txid} {status.state}, {attempts} attempts: funds returned")
                return S.FAILED
            await self._move(conn, row.id, S.BROADCAST, S.SIGNING, now,
                             f"transaction {row.txid} {status.state}: retrying")
            return S.SIGNING
        return None

    async def _scan_deposits(self, policy: Policy, now: int) -> list[str]:
        async with self.engine.connect() as conn:
            ws = await load_wallets(conn)
            known = set((await conn.execute(select(store.deposits.c.txid))).scalars())
        by_address = {w.address: w for w in ws.values()}
        credited = []
        for inc in await self.chain.incoming(set(by_address), policy.confirmations):
            if inc.txid in known:
                continue
            w = by_address[inc.destination]
            account = inc.memo
            kyc = await self.directory.kyc(account) if account else None
            async with self._txn() as conn:  # the record and the credit, atomically
                await adjust(conn, w.asset, w.tier, inc.amount)
                await conn.execute(insert(store.deposits).values(
                    txid=inc.txid, account=account if kyc is not None else "", asset=inc.asset,
                    amount=inc.amount, credited_at=now))
                if kyc is None:
                    await self._audit(conn, "custody.deposit_unattributed", subject=inc.txid, time_ns=now,
                                       details={"asset": inc.asset, "amount": inc.amount, "memo": inc.memo})
                    continue
                await self._audit(conn, "custody.deposit", actor="chain", subject=account, time_ns=now,
                                   details={"txid": inc.txid, "asset": inc.asset, "amount": inc.amount,
                                            "wallet": w.tier})
                await self.ledger.deposit(now, account, inc.asset, inc.amount, f"deposit:{inc.txid}", conn=conn)
            credited.append(inc.txid)
        return credited

    async def deposit_address(self, asset: str) -> str:
        """Where customers send ``asset`` (the hot wallet, with their account as the memo)."""
        async with self.engine.connect() as conn:
            ws = await load_wallets(conn, asset)
        if "hot" not in ws:
            raise Refused(f"no wallet for {asset}")
        return ws["hot"].address

    # ---- the one place states change ------------------------------------------------------------

    async def _move(self, conn: AsyncConnection, rid: str, frm: State, to: State, now: int, reason: str = "",
                    actor: str = "venue", **values: Any) -> None:
        if to not in TRANSITIONS[frm]:
            raise TransitionError(f"{rid}: {frm} -> {to} is not allowed")
        r = store.requests
        res = await conn.execute(update(r).where(r.c.id == rid, r.c.state == frm).values(
            state=to, updated_at=now, reason=reason, **values))
        if res.rowcount != 1:
            raise TransitionError(f"{rid}: no longer {frm} (moved concurrently)")
        if to in TERMINAL:
            row = await self._row(conn, rid)
            if row.funds == "held":  # settled in this transaction, with the move
                if to == S.CONFIRMED:
                    await self.ledger.consume(now, rid, conn=conn)
                    settled = "consumed"
                else:
                    await self.ledger.release(now, rid, conn=conn)
                    settled = "released"
                await conn.execute(update(r).where(r.c.id == rid, r.c.funds == "held").values(funds=settled))
        await self._log(conn, rid, frm, to, now, actor, {"reason": reason, **{k: v for k, v in values.items()}})

    async def _log(self, conn: AsyncConnection, rid: str, frm: str, to: str, now: int, actor: str,
                   details: dict[str, Any]) -> None:
        await conn.execute(insert(store.transitions).values(request_id=rid, ts=now, from_state=str(frm),
                                                            to_state=str(to), reason=str(details.get("reason", ""))))
        await self._audit(conn, f"custody.{to}", actor=actor, subject=rid, time_ns=now,
                           details={"from": str(frm), **details})

    # ---- queries --------------------------------------------------------------------------------

    @staticmethod
    async def _row(conn: AsyncConnection, rid: str) -> Any:
        row = (await conn.execute(select(store.requests).where(store.requests.c.id == rid))).first()
        if row is None:
            raise Refused(f"unknown request {rid}")
        return row

    async def _view(self, conn: AsyncConnection, rid: str) -> RequestView:
        r = await self._row(conn, rid)
        aps = (await conn.execute(select(store.approvals).where(store.approvals.c.request_id == rid)
                                  .order_by(store.approvals.c.ts))).all()
        hist = (await conn.execute(select(store.transitions).where(store.transitions.c.request_id == rid)
                                   .order_by(store.transitions.c.id))).all()
        return RequestView(
            r.id, r.kind, r.account, r.asset, int(r.amount), r.source, r.destination, r.state, r.route,
            r.approvals_required, r.initiator, r.digest, r.funds, r.txid, r.attempts, r.reason, r.created_at,
            r.updated_at, r.expiry, r.release_at, r.policy_version,
            tuple(ApprovalView(a.operator, a.decision, a.expiry, a.ts) for a in aps),
            tuple((h.ts, h.from_state, h.to_state, h.reason) for h in hist), r.submitted_by)

    async def get(self, rid: str) -> RequestView:
        async with self.engine.connect() as conn:
            return await self._view(conn, rid)

    async def list(self, *, state: str | None = None, account: str | None = None,
                   open_only: bool = False) -> list[RequestView]:
        r = store.requests
        q = select(r.c.id).order_by(r.c.created_at, r.c.id)
        if state:
            q = q.where(r.c.state == state)
        if account:
            q = q.where(r.c.account == account)
        if open_only:
            q = q.where(r.c.state.in_(tuple(OPEN)))
        async with self.engine.connect() as conn:
            return [await self._view(conn, rid) for rid in (await conn.execute(q)).scalars()]

    async def status(self) -> list[AssetStatus]:
        """Holdings, liabilities, hot ratio and breaches per asset with wallets."""
        r = store.requests
        async with self.engine.connect() as conn:
            assets = sorted({w.asset for w in (await load_wallets(conn)).values()})
            held = {row.id: (row.account, row.asset, int(row.amount)) for row in (await conn.execute(
                select(r.c.id, r.c.account, r.c.asset, r.c.amount).where(
                    r.c.funds.in_(("held", *SETTLING))))).all()}
        out = [await asset_status(self.engine, self.chain, self.ledger, a) for a in assets]
        holds = await self.ledger.open_holds()
        for st in out:  # every reservation of the ledger is a request in progress, and vice versa
            for ref in sorted(set(holds) | set(held)):
                h, q = holds.get(ref), held.get(ref)
                if (h or q)[1] != st.asset or h == q:
                    continue
                st.breaches.append(f"hold {ref}: ledger {h}, custody {q}" if h and q else
                                   f"ledger hold {ref} without a custody request" if h else
                                   f"request {ref} holds funds the ledger does not")
        return out

    def format_amount(self, asset: str, units: int) -> str:
        return format_amount(units, self.assets[asset].decimals) if units > 0 else "0"


__all__ = ["TIERS", "TRANSITIONS", "TERMINAL", "Custody", "Refused", "RequestView", "State", "TransitionError"]
