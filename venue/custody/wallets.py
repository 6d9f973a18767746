"""Wallets per asset (hot, warm, cold): the venue's holdings, apart from what it owes customers.

The ``custody_wallets`` table is the venue's book of what each wallet holds; the chain is the truth
it is reconciled with, and the customer ledger says what is owed. Per asset the invariant is
``hot + warm + cold + in_flight >= owed`` (in flight: sent from a wallet, not yet confirmed), and
once nothing is in flight the wallets hold exactly the ledger's net deposits (owed + the venue's
fees) and exactly what the chain shows at their addresses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.custody import keys, store
from venue.custody.chain import ChainAdapter
from venue.custody.ports import CustomerLedger

TIERS = ("hot", "warm", "cold")


class WalletError(Exception):
    """A wallet that is missing, locked or cannot sign."""


@dataclass(slots=True, frozen=True)
class Wallet:
    asset: str
    tier: str
    address: str
    key_id: str
    balance: int


async def setup_wallets(engine: AsyncEngine, chain: ChainAdapter, assets: Iterable[str],
                        passphrases: Mapping[str, str], now: int) -> list[Wallet]:
    """Create the missing wallets: one custody key per (asset, tier), sealed under that tier's
    passphrase, and its address on the chain. Existing wallets are left alone."""
    for asset in assets:
        for tier in TIERS:
            async with engine.connect() as conn:
                if (await load_wallets(conn, asset)).get(tier) is not None:
                    continue
            sealed, _ = keys.generate(keys.KeyPurpose.CUSTODY, passphrases[tier])
            await add_wallet(engine, chain, asset, tier, sealed, now)
    async with engine.connect() as conn:
        return [w for a in assets for w in (await load_wallets(conn, a)).values()]


async def add_wallet(engine: AsyncEngine, chain: ChainAdapter, asset: str, tier: str, sealed: keys.SealedKey,
                     now: int) -> Wallet:
    """Store a sealed custody key and make it the (asset, tier) wallet."""
    if tier not in TIERS or sealed.purpose != keys.KeyPurpose.CUSTODY:
        raise WalletError(f"a {tier} wallet needs a custody key (got a {sealed.purpose} key)")
    address = await chain.address_for(sealed.public_key, asset)
    async with engine.begin() as conn:
        await conn.execute(insert(store.sealed_keys).values(
            key_id=sealed.key_id, purpose=str(sealed.purpose), owner=f"wallet:{asset}:{tier}",
            sealed=sealed.to_json(), created_at=now))
        await conn.execute(insert(store.wallets).values(asset=asset, tier=tier, address=address,
                                                        key_id=sealed.key_id, balance=0))
    return Wallet(asset, tier, address, sealed.key_id, 0)


async def load_wallets(conn: AsyncConnection, asset: str | None = None) -> dict[str, Wallet]:
    """tier -> Wallet for one asset (or ``"ASSET:tier"`` -> Wallet for all when asset is None)."""
    w = store.wallets
    q = select(w) if asset is None else select(w).where(w.c.asset == asset)
    rows = (await conn.execute(q.order_by(w.c.asset, w.c.tier))).all()
    out = {}
    for r in rows:
        out[r.tier if asset is not None else f"{r.asset}:{r.tier}"] = Wallet(r.asset, r.tier, r.address, r.key_id,
                                                                           int(r.balance))
    return out


async def adjust(conn: AsyncConnection, asset: str, tier: str, delta: int) -> int:
    """Add ``delta`` to the book of a wallet; refuses to go negative. Returns the new balance."""
    w = store.wallets
    row = (await conn.execute(select(w.c.balance).where(w.c.asset == asset, w.c.tier == tier))).first()
    if row is None:
        raise WalletError(f"no {tier} wallet for {asset}")
    new = int(row.balance) + delta
    if new < 0:
        raise WalletError(f"{asset} {tier} wallet would go negative ({row.balance} + {delta})")
    await conn.execute(update(w).where(w.c.asset == asset, w.c.tier == tier).values(balance=new))
    return new


async def in_flight(conn: AsyncConnection, asset: str) -> int:
    """Value sent from a wallet and not yet confirmed (requests in state ``broadcast``)."""
    r = store.requests
    return int((await conn.execute(select(func.coalesce(func.sum(r.c.amount), 0)).where(
        r.c.asset == asset, r.c.state == "broadcast"))).scalar())


class WalletSigner:
    """Unlocks wallet custody keys (scrypt, once per key per process) to sign transfers."""

    def __init__(self, engine: AsyncEngine, passphrases: Mapping[str, str] | Callable[[str], str]) -> None:
        """``passphrases``: tier -> passphrase, or a function asked once per tier when first needed."""
        self.engine = engine
        self._passphrases = passphrases
        self._cache: dict[str, Ed25519PrivateKey] = {}

    def __repr__(self) -> str:  # never show passphrases or keys
        return f"WalletSigner(unlocked={len(self._cache)})"

    def _passphrase(self, tier: str) -> str:
        if callable(self._passphrases):
            return self._passphrases(tier)
        if tier not in self._passphrases:
            raise WalletError(f"no passphrase to unlock the {tier} wallet")
        return self._passphrases[tier]

    async def key(self, wallet: Wallet) -> Ed25519PrivateKey:
        k = self._cache.get(wallet.key_id)
        if k is None:
            async with self.engine.connect() as conn:
                text = (await conn.execute(select(store.sealed_keys.c.sealed).where(
                    store.sealed_keys.c.key_id == wallet.key_id))).scalar()
            if text is None:
                raise WalletError(f"no stored key {wallet.key_id} for the {wallet.asset} {wallet.tier} wallet")
            k = keys.unseal(keys.SealedKey.from_json(text), self._passphrase(wallet.tier), keys.KeyPurpose.CUSTODY)
            self._cache[wallet.key_id] = k
        return k


@dataclass(slots=True)
class AssetStatus:
    asset: str
    book: dict[str, int]  # tier -> the venue's book
    chain: dict[str, int]  # tier -> what the chain shows at the wallet's address
    in_flight: int
    owed: int  # customer liabilities (ledger)
    net_deposits: int  # owed + the venue's own balances (fees)
    pending_topups: int = 0
    breaches: list[str] = field(default_factory=list)

    @property
    def holdings(self) -> int:
        return sum(self.book.values())

    @property
    def hot_ratio(self) -> float:
        total = self.holdings + self.in_flight
        return self.book.get("hot", 0) / total if total else 0.0


async def asset_status(engine: AsyncEngine, chain: ChainAdapter, ledger: CustomerLedger, asset: str) -> AssetStatus:
    async with engine.connect() as conn:
        ws = await load_wallets(conn, asset)
        flight = await in_flight(conn, asset)
        r = store.requests
        topups = int((await conn.execute(select(func.coalesce(func.sum(r.c.amount), 0)).where(
            r.c.asset == asset, r.c.kind == "topup",
            r.c.state.in_(("requested", "screened", "pending_approval", "approved", "signing"))))).scalar())
    st = AssetStatus(asset, {t: w.balance for t, w in ws.items()},
                     {t: await chain.balance(w.address, asset) for t, w in ws.items()}, flight,
                     await ledger.owed(asset), await ledger.net_deposits(asset), topups)
    if st.holdings + st.in_flight < st.owed:
        st.breaches.append(f"holdings + in flight ({st.holdings + st.in_flight}) below what customers are "
                           f"owed ({st.owed})")
    for tier, book in st.book.items():
        if st.chain.get(tier, 0) < book:
            st.breaches.append(f"{tier} wallet: chain shows {st.chain.get(tier, 0)}, book says {book}")
    return st
