"""``venue bench custody``: cost of the withdrawal path.

- verify: Ed25519 verification of a signed withdrawal request over its canonical bytes (pure CPU);
- request: ``Custody.request_withdrawal`` end to end for automatic withdrawals (signature, nonce,
  ledger hold through the core, screening, routing, transitions and audit entries in one transaction);
- pump: ``Custody.process`` taking those withdrawals through signing, broadcast and confirmation on the
  simulated chain;
- unseal: opening one scrypt-sealed key (n = 2^15), what the signer pays once per wallet key.
On SQLite in a temp dir (WAL, synchronous=FULL), or ``--db-url`` (an empty database).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from venue.custody import keys
from venue.custody.policy import NS
from venue.custody.requests import WithdrawalRequest, format_amount, sign_request
from venue.db import make_engine, sqlite_url


def bench_verify(n: int) -> float:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    signed = [sign_request(key, "k", WithdrawalRequest("A1", "BTC", "0.1", "dest", f"n{i}", 2_000_000_000))
              for i in range(n)]
    t0 = time.perf_counter()
    for s in signed:
        assert s.verify(pub)
    return n / (time.perf_counter() - t0)


def bench_unseal(n: int) -> float:
    sealed, _ = keys.generate(keys.KeyPurpose.CUSTODY, "bench")
    t0 = time.perf_counter()
    for _ in range(n):
        keys.unseal(sealed, "bench", keys.KeyPurpose.CUSTODY)
    return (time.perf_counter() - t0) / n


async def _setup(url: str):  # type: ignore[no-untyped-def]
    """Registry, core with the ledger stage, simulated chain, wallets, policy, one funded customer."""
    from decimal import Decimal

    from venue import registry
    from venue.access.signing import raw_public_bytes
    from venue.core.assets import Assets
    from venue.core.engine import Core
    from venue.core.fees import FeeSchedule
    from venue.core.instruments import Instrument
    from venue.core.risk import AccountRisk
    from venue.core.stage import RiskLedgerStage
    from venue.custody.chain import SimulatedChain
    from venue.custody.policy import HOUR, starter_policy
    from venue.custody.ports import CoreLedger, RegistryDirectory
    from venue.custody.wallets import WalletSigner, setup_wallets
    from venue.custody.workflow import Custody

    engine = make_engine(url)
    now = 1_790_000_000 * NS
    await registry.create_schema(engine)
    await registry.create_firm(engine, "F")
    await registry.create_account(engine, "A", "F", kyc_status="verified", tier=2)
    stage = RiskLedgerStage({"A": AccountRisk("A")}, Assets(), FeeSchedule())
    core = Core([Instrument("BTC-USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.0001"))], hooks=stage)
    chain = SimulatedChain(engine)
    pw = {"hot": "h", "warm": "w", "cold": "c"}
    custody = Custody(engine, chain, CoreLedger(core.process, stage.ledger), RegistryDirectory(engine),
                      WalletSigner(engine, pw))
    await custody.setup()
    await setup_wallets(engine, chain, ["BTC"], pw, now)
    await custody.set_policy(starter_policy({"BTC": 8}), "bench", now)
    key = Ed25519PrivateKey.generate()
    kid = await custody.register_withdrawal_key("A", raw_public_bytes(key.public_key()), now)
    await custody.add_address("A", "BTC", "dest", now - 48 * HOUR)
    await chain.send_external("outside", await custody.deposit_address("BTC"), "BTC", 10**9, "A")
    await chain.mine(3)
    await custody.process(now)
    return engine, custody, chain, key, kid, now


async def bench_pipeline(url: str, n: int) -> tuple[float, float]:
    engine, custody, chain, key, kid, now = await _setup(url)
    try:
        reqs = [sign_request(key, kid, WithdrawalRequest("A", "BTC", format_amount(1000 + i, 8), "dest", f"n{i}",
                                                         now // NS + 3600)) for i in range(n)]
        t0 = time.perf_counter()
        for r in reqs:
            await custody.request_withdrawal(r, now)
        t_req = time.perf_counter() - t0
        t0 = time.perf_counter()
        await custody.process(now)  # sign + broadcast all
        for _ in range(3):
            await chain.mine(1)
            await custody.process(now + NS)  # confirmations
        t_pump = time.perf_counter() - t0
        assert all(v.state == "confirmed" for v in await custody.list(account="A"))
        return n / t_req, n / t_pump
    finally:
        await engine.dispose()


@click.command("custody")
@click.option("-n", "n", default=100, show_default=True, help="Withdrawals per run.")
@click.option("--verifies", default=3000, show_default=True)
@click.option("--runs", default=3, show_default=True)
@click.option("--db-url", default=None, help="An empty database (default: SQLite in a temp dir).")
def command(n: int, verifies: int, runs: int, db_url: str | None) -> None:
    """Withdrawal request throughput, the pump, signature verification, key unsealing."""
    ver, req, pump, uns = [], [], [], []
    for _ in range(runs):
        ver.append(bench_verify(verifies))
        uns.append(bench_unseal(3))
        with tempfile.TemporaryDirectory() as tmp:
            r, p = asyncio.run(bench_pipeline(db_url or sqlite_url(Path(tmp)), n))
        req.append(r)
        pump.append(p)
    med = statistics.median
    click.echo(f"request verify (Ed25519):      {med(ver):10,.0f} /s")
    click.echo(f"withdrawal request end to end: {med(req):10,.1f} /s   (n={n}, median of {runs})")
    click.echo(f"pump to confirmed:             {med(pump):10,.1f} withdrawals/s")
    click.echo(f"unseal one key (scrypt 2^15):  {med(uns) * 1000:10,.0f} ms")
