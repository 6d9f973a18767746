"""The chain adapter: build, broadcast and confirm transfers; see deposits arrive.

``ChainAdapter`` is all the custody workflow knows of a blockchain. ``SimulatedChain`` is the one
implementation shipped (no node can run here): a ledger of addresses and transactions kept in the
database, deterministic (transaction ids are hashes of their contents; blocks are made only by
``mine``), with confirmations, signature and balance checks, and a fault switch for tests
(``inject_faults``: the next k broadcasts are refused by the node, or accepted then dropped).

Semantics shared by any adapter: a broadcast transfer leaves the source at once; it credits the
destination when included in a block; a dropped transfer returns to the source. Broadcasting the
same signed transfer twice is idempotent (same txid, no second debit).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.access.signing import raw_public_bytes
from venue.custody import store

TRANSFER_DOMAIN = "venue/custody/chain-transfer/v1"


class BroadcastError(Exception):
    """The network refused a transfer (nothing left the source)."""


@dataclass(slots=True, frozen=True)
class Transfer:
    """An unsigned transfer; ``ref`` makes distinct attempts distinct transactions."""

    asset: str
    source: str
    destination: str
    amount: int
    memo: str
    ref: str

    def payload(self) -> bytes:
        return json.dumps({"domain": TRANSFER_DOMAIN, **asdict(self)}, sort_keys=True,
                          separators=(",", ":")).encode("ascii")

    @property
    def txid(self) -> str:
        return hashlib.sha256(self.payload()).hexdigest()


@dataclass(slots=True, frozen=True)
class SignedTransfer:
    transfer: Transfer
    signature: bytes

    @classmethod
    def sign(cls, transfer: Transfer, key: Ed25519PrivateKey) -> SignedTransfer:
        return cls(transfer, key.sign(transfer.payload()))


@dataclass(slots=True, frozen=True)
class TxStatus:
    txid: str
    state: str  # pending | confirmed | dropped | unknown
    confirmations: int


@dataclass(slots=True, frozen=True)
class Incoming:
    txid: str
    destination: str
    asset: str
    amount: int
    memo: str
    confirmations: int


class ChainAdapter(Protocol):
    async def address_for(self, public_key: bytes, asset: str) -> str:
        """The address controlled by ``public_key`` for ``asset`` (registered with the network)."""

    async def build(self, source: str, destination: str, asset: str, amount: int, memo: str, ref: str) -> Transfer:
        """An unsigned transfer, ready for the custody signer."""

    async def broadcast(self, signed: SignedTransfer) -> str:
        """Submit; returns the txid or raises BroadcastError."""

    async def status(self, txid: str) -> TxStatus: ...

    async def balance(self, address: str, asset: str) -> int: ...

    async def incoming(self, addresses: set[str], min_confirmations: int) -> list[Incoming]:
        """Confirmed transfers into ``addresses`` whose source is outside them (deposits)."""


def _address(public_key: bytes, asset: str) -> str:
    return "sim1" + hashlib.sha256(asset.encode("ascii") + b"|" + public_key).hexdigest()[:38]


class SimulatedChain:
    """A deterministic chain kept in the database (tables ``chain_*``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._lock = asyncio.Lock()  # one node: its writes happen one at a time

    # ---- adapter interface --------------------------------------------------------------------

    async def _address_for(self, public_key: bytes, asset: str) -> str:
        addr = _address(public_key, asset)
        async with self.engine.begin() as conn:
            row = await self._account(conn, addr, asset)
            if row is None:
                await conn.execute(insert(store.chain_addresses).values(
                    address=addr, asset=asset, balance=0, public_key=base64.b64encode(public_key).decode()))
        return addr

    async def build(self, source: str, destination: str, asset: str, amount: int, memo: str, ref: str) -> Transfer:
        if amount <= 0:
            raise BroadcastError("amount must be positive")
        return Transfer(asset, source, destination, amount, memo, ref)

    async def _broadcast(self, signed: SignedTransfer) -> str:
        t = signed.transfer
        txid = t.txid
        async with self.engine.begin() as conn:
            existing = (await conn.execute(select(store.chain_txs.c.status).where(
                store.chain_txs.c.txid == txid))).first()
            if existing is not None:
                return txid  # already known: idempotent
            src = await self._account(conn, t.source, t.asset)
            if src is None or src.public_key is None:
                raise BroadcastError(f"unknown source address {t.source}")
            try:
                Ed25519PublicKey.from_public_bytes(base64.b64decode(src.public_key)).verify(signed.signature,
                                                                                            t.payload())
            except InvalidSignature:
                raise BroadcastError("bad signature for the source address") from None
            if t.amount <= 0 or src.balance < t.amount:
                raise BroadcastError(f"insufficient funds at {t.source}: {src.balance} < {t.amount}")
            faults = await self._faults(conn)
            refused = faults["reject"] > 0
            if refused:  # the fault is used up even though nothing else happens
                faults["reject"] -= 1
                await self._set_meta(conn, "faults", json.dumps(faults))
        if refused:
            raise BroadcastError("node refused the transaction (network error)")
        async with self.engine.begin() as conn:
            if (await conn.execute(select(store.chain_txs.c.status).where(
                    store.chain_txs.c.txid == txid))).first() is not None:
                return txid
            src = await self._account(conn, t.source, t.asset)
            if src.balance < t.amount:
                raise BroadcastError(f"insufficient funds at {t.source}: {src.balance} < {t.amount}")
            faults = await self._faults(conn)
            status = "pending"
            if faults["drop"] > 0:
                faults["drop"] -= 1
                await self._set_meta(conn, "faults", json.dumps(faults))
                status = "doomed"  # accepted now, dropped at the next block
            await conn.execute(update(store.chain_addresses).where(
                store.chain_addresses.c.address == t.source, store.chain_addresses.c.asset == t.asset
            ).values(balance=store.chain_addresses.c.balance - t.amount))
            await self._insert_tx(conn, t, status)
        return txid

    async def status(self, txid: str) -> TxStatus:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(store.chain_txs).where(store.chain_txs.c.txid == txid))).first()
            if row is None:
                return TxStatus(txid, "unknown", 0)
            height = await self._height(conn)
        return TxStatus(txid, self._public_state(row.status), self._confs(row, height))

    async def balance(self, address: str, asset: str) -> int:
        async with self.engine.connect() as conn:
            row = await self._account(conn, address, asset)
        return 0 if row is None else int(row.balance)

    async def incoming(self, addresses: set[str], min_confirmations: int) -> list[Incoming]:
        if not addresses:
            return []
        tx = store.chain_txs
        async with self.engine.connect() as conn:
            height = await self._height(conn)
            rows = (await conn.execute(select(tx).where(
                tx.c.destination.in_(addresses), tx.c.status == "confirmed").order_by(tx.c.seq))).all()
        out = []
        for r in rows:
            confs = self._confs(r, height)
            if r.source not in addresses and confs >= min_confirmations:
                out.append(Incoming(r.txid, r.destination, r.asset, int(r.amount), r.memo, confs))
        return out

    # ---- what only a simulation can do --------------------------------------------------------

    async def _send_external(self, source: str, destination: str, asset: str, amount: int, memo: str = "") -> str:
        """A transfer from an address outside the venue (the rest of the world is not checked)."""
        if amount <= 0:
            raise BroadcastError("amount must be positive")
        async with self.engine.begin() as conn:
            seq = (await conn.execute(select(func.count()).select_from(store.chain_txs))).scalar() or 0
            t = Transfer(asset, source, destination, amount, memo, f"external-{seq}")
            await self._insert_tx(conn, t, "pending")
        return t.txid

    async def _mine(self, blocks: int = 1) -> int:
        """Make ``blocks`` blocks; the first includes every pending transfer. Returns the new height."""
        tx = store.chain_txs
        async with self.engine.begin() as conn:
            height = await self._height(conn)
            for _ in range(blocks):
                height += 1
                rows = (await conn.execute(select(tx).where(tx.c.status.in_(("pending", "doomed")))
                                           .order_by(tx.c.seq))).all()
                for r in rows:
                    if r.status == "doomed":
                        await self._credit(conn, r.source, r.asset, r.amount)
                        await conn.execute(update(tx).where(tx.c.txid == r.txid).values(status="dropped"))
                    else:
                        await self._credit(conn, r.destination, r.asset, r.amount)
                        await conn.execute(update(tx).where(tx.c.txid == r.txid).values(status="confirmed",
                                                                                         height=height))
            await self._set_meta(conn, "height", str(height))
        return height

    async def _inject_faults(self, reject: int = 0, drop: int = 0) -> None:
        """The next ``reject`` broadcasts are refused; the next ``drop`` accepted ones are dropped."""
        async with self.engine.begin() as conn:
            await self._set_meta(conn, "faults", json.dumps({"reject": reject, "drop": drop}))

    async def height(self) -> int:
        async with self.engine.connect() as conn:
            return await self._height(conn)

    async def total(self, asset: str) -> int:
        """Sum of all address balances plus value in flight (pending) for ``asset``."""
        async with self.engine.connect() as conn:
            bal = (await conn.execute(select(func.coalesce(func.sum(store.chain_addresses.c.balance), 0)).where(
                store.chain_addresses.c.asset == asset))).scalar()
            pend = (await conn.execute(select(func.coalesce(func.sum(store.chain_txs.c.amount), 0)).where(
                store.chain_txs.c.asset == asset, store.chain_txs.c.status.in_(("pending", "doomed"))))).scalar()
        return int(bal) + int(pend)


    # ---- serialised entry points (one writer at a time, like one node) ---------------------------

    async def address_for(self, public_key: bytes, asset: str) -> str:
        async with self._lock:
            return await self._address_for(public_key, asset)

    async def broadcast(self, signed: SignedTransfer) -> str:
        async with self._lock:
            return await self._broadcast(signed)

    async def send_external(self, source: str, destination: str, asset: str, amount: int, memo: str = "") -> str:
        """A transfer from an address outside the venue (the rest of the world is not checked)."""
        async with self._lock:
            for attempt in range(20):  # another process (a CLI, the venue) took the same seq: again
                try:
                    return await self._send_external(source, destination, asset, amount, memo)
                except IntegrityError:
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.01 * (attempt + 1))
            raise AssertionError("unreachable")

    async def mine(self, blocks: int = 1) -> int:
        """Make ``blocks`` blocks; the first includes every pending transfer. Returns the new height."""
        async with self._lock:
            return await self._mine(blocks)

    async def inject_faults(self, reject: int = 0, drop: int = 0) -> None:
        """The next ``reject`` broadcasts are refused; the next ``drop`` accepted ones are dropped."""
        async with self._lock:
            await self._inject_faults(reject, drop)

    # ---- internals ----------------------------------------------------------------------------

    @staticmethod
    def _public_state(status: str) -> str:
        return "pending" if status == "doomed" else status

    @staticmethod
    def _confs(row, height: int) -> int:  # type: ignore[no-untyped-def]
        return height - row.height + 1 if row.status == "confirmed" and row.height is not None else 0

    async def _insert_tx(self, conn: AsyncConnection, t: Transfer, status: str) -> None:
        seq = (await conn.execute(select(func.coalesce(func.max(store.chain_txs.c.seq), 0)))).scalar() + 1
        await conn.execute(insert(store.chain_txs).values(
            txid=t.txid, seq=seq, asset=t.asset, source=t.source, destination=t.destination, amount=t.amount,
            memo=t.memo, status=status, height=None, broadcast_height=await self._height(conn)))

    async def _credit(self, conn: AsyncConnection, address: str, asset: str, amount: int) -> None:
        a = store.chain_addresses
        row = await self._account(conn, address, asset)
        if row is None:
            await conn.execute(insert(a).values(address=address, asset=asset, balance=amount, public_key=None))
        else:
            await conn.execute(update(a).where(a.c.address == address, a.c.asset == asset)
                               .values(balance=a.c.balance + amount))

    @staticmethod
    async def _account(conn: AsyncConnection, address: str, asset: str):  # type: ignore[no-untyped-def]
        a = store.chain_addresses
        return (await conn.execute(select(a).where(a.c.address == address, a.c.asset == asset))).first()

    @staticmethod
    async def _meta(conn: AsyncConnection, key: str) -> str | None:
        return (await conn.execute(select(store.chain_meta.c.value).where(store.chain_meta.c.key == key))).scalar()

    async def _set_meta(self, conn: AsyncConnection, key: str, value: str) -> None:
        m = store.chain_meta
        if await self._meta(conn, key) is None:
            await conn.execute(insert(m).values(key=key, value=value))
        else:
            await conn.execute(update(m).where(m.c.key == key).values(value=value))

    async def _height(self, conn: AsyncConnection) -> int:
        return int(await self._meta(conn, "height") or 0)

    async def _faults(self, conn: AsyncConnection) -> dict[str, int]:
        raw = await self._meta(conn, "faults")
        return json.loads(raw) if raw else {"reject": 0, "drop": 0}


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return raw_public_bytes(key.public_key())
