"""Reference data in the database: the instruments this venue process trades.

The core keeps the live state of each instrument (status, reference price) in its snapshots;
this table is the operator's definition, read at start.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Column, Integer, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.core.instruments import Instrument
from venue.core.types import TradingStatus

metadata = MetaData()

instruments = Table(
    "instruments",
    metadata,
    Column("symbol", String(32), primary_key=True),
    Column("base", String(16), nullable=False),
    Column("quote", String(16), nullable=False),
    Column("tick_size", String(40), nullable=False),
    Column("lot_size", String(40), nullable=False),
    Column("min_qty", Integer, nullable=False),
    Column("max_qty", String(40), nullable=False),
    Column("min_notional", String(40), nullable=False),
    Column("band_bps", Integer),
    Column("ref_price", String(40)),
    Column("status", String(16), nullable=False),
)

# The demo set-up: prices and quantities are exact decimals, limits in lots.
DEMO_INSTRUMENTS = (
    Instrument("BTC-USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.0001"), min_qty=1, max_qty=10_000_000,
               min_notional=Decimal("1"), band_bps=1000, ref_price=6_000_000),
    Instrument("ETH-USDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.001"), min_qty=1, max_qty=10_000_000,
               min_notional=Decimal("1"), band_bps=1000, ref_price=300_000),
)


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def save_instrument(conn: AsyncConnection, inst: Instrument) -> None:
    row = {
        "symbol": inst.symbol, "base": inst.base, "quote": inst.quote, "tick_size": str(inst.tick_size),
        "lot_size": str(inst.lot_size), "min_qty": inst.min_qty, "max_qty": str(inst.max_qty),
        "min_notional": str(inst.min_notional), "band_bps": inst.band_bps,
        "ref_price": None if inst.ref_price is None else str(inst.ref_price), "status": inst.status.value,
    }
    await conn.execute(instruments.delete().where(instruments.c.symbol == inst.symbol))
    await conn.execute(instruments.insert().values(**row))


async def load_instruments(db: AsyncEngine | AsyncConnection) -> list[Instrument]:
    async def _load(conn: AsyncConnection) -> list[Instrument]:
        rows = (await conn.execute(select(instruments).order_by(instruments.c.symbol))).mappings().all()
        return [
            Instrument(r["symbol"], r["base"], r["quote"], Decimal(r["tick_size"]), Decimal(r["lot_size"]),
                       min_qty=r["min_qty"], max_qty=int(r["max_qty"]), min_notional=Decimal(r["min_notional"]),
                       band_bps=r["band_bps"], ref_price=None if r["ref_price"] is None else int(r["ref_price"]),
                       status=TradingStatus(r["status"]))
            for r in rows
        ]

    if isinstance(db, AsyncConnection):
        return await _load(db)
    async with db.connect() as conn:
        return await _load(conn)
