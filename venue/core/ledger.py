"""The double-entry spot ledger: balances per (account, asset), order reservations, settlement.

Every balance is ``total`` and ``reserved`` (available = total - reserved), integers of the asset's
smallest unit.  Every change is a ``LedgerEntry`` whose postings on totals sum to zero per asset:
deposits and withdrawals post against ``EXTERNAL`` ("@external"), fees go to the fee account
("@fees"), so for every asset the sum over the venue's accounts changes only by deposits and
withdrawals.  Reservations move no value; they are carried in the entry's ``reservations``.

What an open order reserves (``order_need``), with u = quote units per tick*lot and b = base units
per lot of its instrument, leaves L lots and reservation price P ticks (the limit price, or the top
of the price band for a market / stop buy):

* sell: ``L * b`` of the base asset;
* buy:  ``L * (P*u + ceil(P*u * taker_bps / 10_000))`` of the quote asset — the notional plus the
  taker fee rounded up *per lot*.  Per-lot rounding makes the need additive in lots, so a fill of
  q lots always frees at least what it costs (``ceil`` of a sum <= sum of ``ceil``), whatever its
  price (<= P) and fee rate (maker <= taker); the difference is released at once.

The ledger never reads a clock: every entry takes the ``ts`` of the command that caused it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from venue.core.assets import InstrumentUnits
from venue.core.events import LedgerEntry
from venue.core.fees import fee_units
from venue.core.types import Side

EXTERNAL = "@external"
FEES = "@fees"
SELL = Side.SELL
_SIDES = {m: m for m in Side}  # "1"/"2" or members -> members, one dict lookup


class LedgerError(Exception):
    """A posting that would break the ledger (unbalanced, or more than is available)."""


class InsufficientBalance(LedgerError):
    """The available balance does not cover the request."""


class LedgerInvariantError(AssertionError):
    """``check_invariants`` found the ledger inconsistent (message lists every problem)."""


def order_need(units: InstrumentUnits, side: Side, price: int, leaves: int, fee_bps: int) -> int:
    """What an open order with ``leaves`` lots at reservation price ``price`` must have reserved."""
    if side is SELL:
        return leaves * units.base_per_lot
    per_lot = price * units.quote_per_tick_lot
    return leaves * (per_lot + fee_units(per_lot, fee_bps))


@dataclass(slots=True)
class Reservation:
    """The ledger's view of one open order."""

    order_id: int
    account: str
    symbol: str
    side: Side
    price: int  # reservation price in ticks (limit price, or band top for a market / stop buy)
    leaves: int
    fee_bps: int  # taker rate the buy reservation was sized with
    asset: str  # the reserved asset (quote for a buy, base for a sell)
    amount: int  # currently reserved, in units of ``asset``
    filled: int = 0  # lots filled so far

    def to_list(self) -> list[Any]:
        return [self.order_id, self.account, self.symbol, self.side.value, self.price, self.leaves,
                self.fee_bps, self.asset, self.amount, self.filled]

    @classmethod
    def from_list(cls, v: list[Any]) -> Reservation:
        return cls(int(v[0]), v[1], v[2], Side(v[3]), int(v[4]), int(v[5]), int(v[6]), v[7], int(v[8]), int(v[9]))


class Ledger:
    """Balances, reservations and the entries that change them (no I/O, deterministic)."""

    def __init__(self, fee_account: str = FEES) -> None:
        self.fee_account = fee_account
        self._bal: dict[tuple[str, str], list[int]] = {}  # (account, asset) -> [total, reserved]
        self.orders: dict[int, Reservation] = {}
        self.units: dict[str, InstrumentUnits] = {}
        self.holds: dict[str, tuple[str, str, int]] = {}  # custody hold ref -> (account, asset, amount)
        self.next_entry_id = 1

    # --- queries --------------------------------------------------------------------------------

    def balance(self, account: str, asset: str) -> tuple[int, int]:
        """(total, reserved) of an account in an asset (zeros when never touched)."""
        b = self._bal.get((account, asset))
        return (b[0], b[1]) if b else (0, 0)

    def available(self, account: str, asset: str) -> int:
        total, reserved = self.balance(account, asset)
        return total - reserved

    def balances(self, account: str) -> dict[str, tuple[int, int]]:
        """asset -> (total, reserved) for every asset the account ever held."""
        return {asset: (b[0], b[1]) for (acc, asset), b in sorted(self._bal.items()) if acc == account}

    def accounts(self) -> list[str]:
        return sorted({acc for acc, _ in self._bal})

    def asset_total(self, asset: str, *, include_external: bool = False) -> int:
        """Sum of totals of ``asset`` over all accounts (the venue's holdings, fee account included)."""
        return sum(b[0] for (acc, a), b in self._bal.items()
                   if a == asset and (include_external or acc != EXTERNAL))

    def net_deposits(self, asset: str) -> int:
        """Deposits minus withdrawals of ``asset`` ever (= minus the external account's balance)."""
        return -self.balance(EXTERNAL, asset)[0]

    def need(self, units: InstrumentUnits, side: Side, price: int, leaves: int, fee_bps: int) -> int:
        return order_need(units, side, price, leaves, fee_bps)

    # --- postings -------------------------------------------------------------------------------

    def _slot(self, account: str, asset: str) -> list[int]:
        b = self._bal.get((account, asset))
        if b is None:
            b = self._bal[(account, asset)] = [0, 0]
        return b

    def _entry(self, ts: int, kind: str, ref: str, postings: Iterable[tuple[str, str, int]],
               reservations: Iterable[tuple[str, str, int]] = ()) -> LedgerEntry:
        """Merge, check balance per asset, apply and return one entry (postings already validated)."""
        merged: dict[tuple[str, str], int] = {}
        for acc, asset, delta in postings:
            merged[(acc, asset)] = merged.get((acc, asset), 0) + delta
        per_asset: dict[str, int] = {}
        for (_, asset), delta in merged.items():
            per_asset[asset] = per_asset.get(asset, 0) + delta
        if any(per_asset.values()):
            raise LedgerError(f"unbalanced {kind} entry {ref}: {per_asset}")
        rmerged: dict[tuple[str, str], int] = {}
        for acc, asset, delta in reservations:
            rmerged[(acc, asset)] = rmerged.get((acc, asset), 0) + delta
        for (acc, asset), delta in merged.items():
            if delta:
                self._slot(acc, asset)[0] += delta
        for (acc, asset), delta in rmerged.items():
            if delta:
                self._slot(acc, asset)[1] += delta
        entry = LedgerEntry(
            0, ts, self.next_entry_id, kind, ref,
            tuple((a, s, d) for (a, s), d in merged.items() if d),
            tuple((a, s, d) for (a, s), d in rmerged.items() if d),
        )
        self.next_entry_id += 1
        return entry

    def _fast(self, ts: int, kind: str, ref: str, postings: tuple[tuple[str, str, int], ...],
              reservations: tuple[tuple[str, str, int], ...]) -> LedgerEntry:
        """Apply an entry whose (account, asset) keys are distinct and whose postings balance by
        construction (settlement, reservation changes); zero deltas are dropped."""
        bal = self._bal
        if postings:
            postings = tuple(p for p in postings if p[2])
            for acc, asset, delta in postings:
                b = bal.get((acc, asset))
                if b is None:
                    b = bal[(acc, asset)] = [0, 0]
                b[0] += delta
        if reservations:
            reservations = tuple(r for r in reservations if r[2])
            for acc, asset, delta in reservations:
                b = bal.get((acc, asset))
                if b is None:
                    b = bal[(acc, asset)] = [0, 0]
                b[1] += delta
        entry = LedgerEntry(0, ts, self.next_entry_id, kind, ref, postings, reservations)
        self.next_entry_id += 1
        return entry

    def deposit(self, ts: int, account: str, asset: str, amount: int, ref: str = "") -> LedgerEntry:
        if amount <= 0:
            raise LedgerError(f"deposit amount must be positive: {amount}")
        if account.startswith("@"):
            raise LedgerError(f"cannot deposit to venue account {account}")
        return self._entry(ts, "deposit", ref, ((account, asset, amount), (EXTERNAL, asset, -amount)))

    def withdraw(self, ts: int, account: str, asset: str, amount: int, ref: str = "") -> LedgerEntry:
        """Debit ``amount`` of the account's *available* balance to the outside world."""
        if amount <= 0:
            raise LedgerError(f"withdrawal amount must be positive: {amount}")
        if account == EXTERNAL:
            raise LedgerError("cannot withdraw from the external account")
        available = self.available(account, asset)
        if amount > available:
            raise InsufficientBalance(f"withdraw {amount} {asset}: available {available}")
        return self._entry(ts, "withdraw", ref, ((account, asset, -amount), (EXTERNAL, asset, amount)))

    # --- order reservations ---------------------------------------------------------------------

    def reserve(self, order_id: int, account: str, units: InstrumentUnits, side: Side, price: int,
                qty: int, fee_bps: int) -> int | None:
        """Reserve what a new order needs; returns the amount, or None (nothing changed) when the
        account's available balance is short.  No entry yet: ``reserve_entry`` makes it once the
        core has accepted the order, ``unreserve`` undoes it if the core rejected it."""
        if order_id in self.orders:
            raise LedgerError(f"order {order_id} already has a reservation")
        side = _SIDES[side]
        asset = units.base if side is SELL else units.quote
        amount = order_need(units, side, price, qty, fee_bps)
        b = self._bal.get((account, asset))
        if b is None or amount > b[0] - b[1]:
            return None
        if units.symbol not in self.units:
            self.units[units.symbol] = units
        self.orders[order_id] = Reservation(order_id, account, units.symbol, side, price, qty, fee_bps, asset, amount)
        b[1] += amount
        return amount

    def reserve_entry(self, ts: int, order_id: int, amount: int) -> LedgerEntry:
        """The entry recording a reservation made by ``reserve`` (the balance already holds it)."""
        r = self.orders[order_id]
        entry = LedgerEntry(0, ts, self.next_entry_id, "reserve", f"order:{order_id}", (),
                            ((r.account, r.asset, amount),) if amount else ())
        self.next_entry_id += 1
        return entry

    def unreserve(self, order_id: int) -> None:
        """Undo a ``reserve`` that was never confirmed (the core rejected the order): no entry."""
        r = self.orders.pop(order_id)
        self._slot(r.account, r.asset)[1] -= r.amount

    def resize(self, ts: int, order_id: int, leaves: int, price: int | None = None,
               kind: str = "replace") -> LedgerEntry | None:
        """Re-size an order's reservation to ``leaves`` lots (and a new price); None if unchanged."""
        r = self.orders.get(order_id)
        if r is None:
            return None
        if price is not None:
            r.price = price
        r.leaves = leaves
        new = order_need(self.units[r.symbol], r.side, r.price, leaves, r.fee_bps)
        delta, r.amount = new - r.amount, new
        if leaves <= 0:
            del self.orders[order_id]
        if not delta:
            return None
        return self._fast(ts, kind, f"order:{order_id}", (), ((r.account, r.asset, delta),))

    def reprice(self, order_id: int, price: int) -> int | None:
        """Raise a buy's reservation price to ``price`` (a market stop worked under a band that moved
        since it was reserved); returns the extra amount reserved (0: nothing to do), or None when
        the available balance is short (nothing changed).  No entry yet: see ``reprice_entry``."""
        r = self.orders.get(order_id)
        if r is None or r.side is SELL or price <= r.price:
            return 0
        new = order_need(self.units[r.symbol], r.side, price, r.leaves, r.fee_bps)
        delta = new - r.amount
        b = self._slot(r.account, r.asset)
        if delta > b[0] - b[1]:
            return None
        r.price, r.amount = price, new
        b[1] += delta
        return delta

    def reprice_entry(self, ts: int, order_id: int, account: str, asset: str, delta: int) -> LedgerEntry:
        """The entry recording a ``reprice`` (the balance already holds it)."""
        entry = LedgerEntry(0, ts, self.next_entry_id, "reprice", f"order:{order_id}", (), ((account, asset, delta),))
        self.next_entry_id += 1
        return entry

    def release(self, ts: int, order_id: int, kind: str = "release") -> LedgerEntry | None:
        """The order is done (cancelled, expired): release all it still reserves."""
        return self.resize(ts, order_id, 0, kind=kind)

    def settle_trade(self, ts: int, trade_id: int, symbol: str, price: int, qty: int,
                     buyer: str, buy_order_id: int, buyer_fee_bps: int,
                     seller: str, sell_order_id: int, seller_fee_bps: int) -> LedgerEntry:
        """Settle one trade: base seller -> buyer, quote buyer -> seller, both fees -> fee account;
        the two orders' reservations shrink to what their remaining lots need."""
        units = self.units[symbol]
        base = units.base_units(qty)
        quote = units.quote_units(price, qty)
        buyer_fee = fee_units(quote, buyer_fee_bps)
        seller_fee = fee_units(quote, seller_fee_bps)
        postings = (
            (buyer, units.base, base), (seller, units.base, -base),
            (buyer, units.quote, -(quote + buyer_fee)), (seller, units.quote, quote - seller_fee),
            (self.fee_account, units.quote, buyer_fee + seller_fee),
        )
        reservations = []
        orders = self.orders
        for oid in (buy_order_id, sell_order_id):
            r = orders.get(oid)
            if r is None:
                continue
            r.filled += qty
            leaves = r.leaves - qty
            new = order_need(units, r.side, r.price, leaves if leaves > 0 else 0, r.fee_bps)
            reservations.append((r.account, r.asset, new - r.amount))
            r.amount, r.leaves = new, leaves
            if leaves <= 0:
                del orders[oid]
        ref = f"trade:{trade_id}"
        if buyer != seller and self.fee_account != buyer and self.fee_account != seller:
            return self._fast(ts, "trade", ref, postings, tuple(reservations))
        return self._entry(ts, "trade", ref, postings, reservations)

    # --- custody holds (withdrawals, venue/custody) --------------------------------------------------

    def hold(self, ts: int, account: str, asset: str, amount: int, ref: str) -> LedgerEntry:
        """Reserve ``amount`` of the available balance under ``ref`` (a withdrawal in progress)."""
        if amount <= 0:
            raise LedgerError(f"hold amount must be positive: {amount}")
        if account.startswith("@"):
            raise LedgerError(f"cannot hold funds of venue account {account}")
        if not ref or ref in self.holds:
            raise LedgerError(f"hold {ref!r} already exists" if ref else "a hold needs a ref")
        available = self.available(account, asset)
        if amount > available:
            raise InsufficientBalance(f"hold {amount} {asset}: available {available}")
        self.holds[ref] = (account, asset, amount)
        return self._entry(ts, "hold", f"hold:{ref}", (), ((account, asset, amount),))

    def release_hold(self, ts: int, ref: str) -> LedgerEntry:
        """Give a hold back (once); LedgerError if it is not open."""
        h = self.holds.pop(ref, None)
        if h is None:
            raise LedgerError(f"no open hold {ref!r}")
        account, asset, amount = h
        return self._entry(ts, "hold_release", f"hold:{ref}", (), ((account, asset, -amount),))

    def consume_hold(self, ts: int, ref: str) -> LedgerEntry:
        """The held amount left the venue (once): debit the account to "@external"."""
        h = self.holds.pop(ref, None)
        if h is None:
            raise LedgerError(f"no open hold {ref!r}")
        account, asset, amount = h
        return self._entry(ts, "withdraw", f"hold:{ref}", ((account, asset, -amount), (EXTERNAL, asset, amount)),
                           ((account, asset, -amount),))

    # --- invariants -----------------------------------------------------------------------------

    def check_invariants(self, open_orders: Iterable[Any] = ()) -> None:
        """Raise LedgerInvariantError unless:

        * every asset's totals sum to zero over all accounts including "@external" (so the venue's
          holdings equal net deposits), no venue account is negative, 0 <= reserved <= total;
        * the reservations are exactly the open orders (``open_orders``: objects with ``order_id``,
          ``account``, ``side``, ``price`` and ``leaves_qty``/``leaves``, e.g. the core's book
          orders) with the same remaining lots and, for limit orders, the same price; each
          reserves ``order_need`` of it; each (account, asset) reserves the sum of its orders.
        """
        problems: list[str] = []
        per_asset: dict[str, int] = {}
        for (acc, asset), (total, reserved) in self._bal.items():
            per_asset[asset] = per_asset.get(asset, 0) + total
            if acc == EXTERNAL:
                if reserved:
                    problems.append(f"{acc} {asset} reserved {reserved}")
                continue
            if not 0 <= reserved <= total:
                problems.append(f"{acc} {asset}: total {total} reserved {reserved}")
        problems += [f"{asset} sums to {s}, not 0" for asset, s in per_asset.items() if s]
        expected: dict[tuple[str, str], int] = {}
        seen: set[int] = set()
        for o in open_orders:
            oid = o.order_id
            seen.add(oid)
            r = self.orders.get(oid)
            if r is None:
                problems.append(f"open order {oid} has no reservation")
                continue
            leaves = getattr(o, "leaves_qty", None)
            if leaves is None:
                leaves = o.leaves
            if leaves != r.leaves:
                problems.append(f"order {oid}: book leaves {leaves}, ledger {r.leaves}")
            if o.account != r.account or Side(o.side) != r.side:
                problems.append(f"order {oid}: account/side differ")
            if o.price is not None and o.price != r.price:
                problems.append(f"order {oid}: book price {o.price}, reserved at {r.price}")
            need = order_need(self.units[r.symbol], r.side, r.price, leaves, r.fee_bps)
            if r.amount != need:
                problems.append(f"order {oid}: reserves {r.amount}, needs {need}")
            key = (r.account, r.asset)
            expected[key] = expected.get(key, 0) + need
        problems += [f"reservation of order {oid} without open order" for oid in self.orders if oid not in seen]
        for acc, asset, amount in self.holds.values():
            expected[(acc, asset)] = expected.get((acc, asset), 0) + amount
        for (acc, asset), (_, reserved) in self._bal.items():
            if reserved != expected.get((acc, asset), 0):
                problems.append(f"{acc} {asset}: reserved {reserved}, open orders need "
                                f"{expected.get((acc, asset), 0)}")
        problems += [f"{k} needs {v} but has no balance" for k, v in expected.items() if v and k not in self._bal]
        if problems:
            raise LedgerInvariantError("; ".join(problems))

    # --- snapshot -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "fee_account": self.fee_account,
            "next_entry_id": self.next_entry_id,
            "balances": [[acc, asset, b[0], b[1]] for (acc, asset), b in sorted(self._bal.items())],
            "orders": [r.to_list() for _, r in sorted(self.orders.items())],
            "units": [u.to_dict() for _, u in sorted(self.units.items())],
            "holds": [[ref, *h] for ref, h in sorted(self.holds.items())],
        }

    def restore(self, d: Mapping[str, Any]) -> None:
        self.fee_account = d["fee_account"]
        self.next_entry_id = int(d["next_entry_id"])
        self._bal = {(acc, asset): [int(t), int(r)] for acc, asset, t, r in d["balances"]}
        self.orders = {int(v[0]): Reservation.from_list(v) for v in d["orders"]}
        self.units = {u["symbol"]: InstrumentUnits.from_dict(u) for u in d["units"]}
        self.holds = {ref: (acc, asset, int(amount)) for ref, acc, asset, amount in d.get("holds", [])}
