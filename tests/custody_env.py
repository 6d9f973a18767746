"""A complete custody set-up for tests: real registry, real core with the ledger stage, the
simulated chain, wallets with sealed keys, a stored policy, customers and approver operators."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from venue import registry
from venue.access.signing import public_key_b64, raw_public_bytes
from venue.core.assets import Assets
from venue.core.engine import Core
from venue.core.fees import FeeSchedule
from venue.core.instruments import Instrument
from venue.core.risk import AccountRisk
from venue.core.stage import RiskLedgerStage
from venue.custody import keys
from venue.custody.chain import SimulatedChain
from venue.custody.policy import HOUR, NS, AssetPolicy, Policy, TierLimit
from venue.custody.ports import CoreLedger, RegistryDirectory
from venue.custody.requests import (
    Approval,
    SignedApproval,
    SignedRequest,
    WithdrawalRequest,
    format_amount,
    sign_approval,
    sign_request,
)
from venue.custody.wallets import TIERS, WalletSigner, add_wallet
from venue.custody.workflow import Custody

T0 = 1_790_000_000 * NS  # a fixed "now" (2026-09-21)
BTC = 10**8
PASSPHRASES = {"hot": "hot-pass", "warm": "warm-pass", "cold": "cold-pass"}
OPERATORS = ("op1", "op2", "op3", "op4")
CUSTOMERS = ("A1", "A2", "A3")
EXTERNAL = "ext-dest-1"


def default_policy() -> Policy:
    btc = AssetPolicy(auto_threshold=1 * BTC, hot_tx_cap=5 * BTC, hot_daily_cap=20 * BTC, approvals=2,
                      topup_quorum=3, low_water=2 * BTC, target=10 * BTC, high_water=30 * BTC,
                      tiers={1: TierLimit(2 * BTC, 3 * BTC), 2: TierLimit(10 * BTC, 50 * BTC)})
    usdt = AssetPolicy(auto_threshold=10_000 * 10**6, hot_tx_cap=100_000 * 10**6, hot_daily_cap=500_000 * 10**6,
                       approvals=2, topup_quorum=3, low_water=1_000 * 10**6, target=50_000 * 10**6,
                       high_water=200_000 * 10**6,
                       tiers={1: TierLimit(10_000 * 10**6, 20_000 * 10**6), 2: TierLimit(100_000 * 10**6,
                                                                                         1_000_000 * 10**6)})
    return Policy(assets={"BTC": btc, "USDT": usdt}, confirmations=2, max_broadcast_attempts=3)


_SEALED: dict[tuple[str, str], keys.SealedKey] = {}


def _sealed_wallet_keys() -> dict[tuple[str, str], keys.SealedKey]:
    if not _SEALED:
        for asset in ("BTC", "USDT"):
            for tier in TIERS:
                _SEALED[(asset, tier)] = keys.generate(keys.KeyPurpose.CUSTODY, PASSPHRASES[tier])[0]
    return _SEALED


@dataclass
class Env:
    engine: AsyncEngine
    custody: Custody
    chain: SimulatedChain
    core: Core
    stage: RiskLedgerStage
    customer_keys: dict[str, tuple[str, Ed25519PrivateKey]] = field(default_factory=dict)
    operator_keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    nonces: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def ledger(self):  # type: ignore[no-untyped-def]
        return self.stage.ledger

    def request(self, account: str, amount: int, asset: str = "BTC", destination: str = EXTERNAL,
                now: int = T0, ttl: int = 3600, nonce: str | None = None) -> SignedRequest:
        key_id, key = self.customer_keys[account]
        dec = self.custody.assets[asset].decimals
        req = WithdrawalRequest(account, asset, format_amount(amount, dec), destination,
                                nonce or f"n{next(self.nonces)}", now // NS + ttl)
        return sign_request(key, key_id, req)

    async def approval(self, operator: str, request_id: str, decision: str = "approve", now: int = T0,
                       ttl: int = 600, key: Ed25519PrivateKey | None = None) -> SignedApproval:
        view = await self.custody.get(request_id)
        a = Approval(request_id, view.digest, decision, operator, f"a{next(self.nonces)}", now // NS + ttl)
        return sign_approval(key or self.operator_keys[operator], a)

    async def deposit(self, account: str, amount: int, asset: str = "BTC", now: int = T0) -> None:
        """A customer deposit arriving on the chain, confirmed and credited."""
        await self.chain.send_external("outside-wallet", await self.custody.deposit_address(asset), asset, amount,
                                       account)
        await self.chain.mine(3)
        await self.custody.process(now)

    def balance(self, account: str, asset: str = "BTC") -> tuple[int, int]:
        return self.stage.ledger.balance(account, asset)

    async def settle(self, now: int, rounds: int = 8) -> None:
        """Let the chain and the pump run until nothing moves and nothing is on its way."""
        for _ in range(rounds):
            await self.chain.mine(1)
            report = await self.custody.process(now)
            if report.moved or report.deposits or report.proposed:
                continue
            busy = [v for v in await self.custody.list(open_only=True) if v.state in ("signing", "broadcast")]
            if not busy:
                return


async def make_env(engine: AsyncEngine, policy: Policy | None = None, *, tiers: dict[str, int] | None = None,
                   whitelist_age: int = 48 * HOUR) -> Env:
    await registry.create_schema(engine)
    await registry.create_firm(engine, "F1")
    tiers = tiers or {"A1": 1, "A2": 2, "A3": 2}
    for acc in CUSTOMERS:
        await registry.create_account(engine, acc, "F1", kyc_status="verified", tier=tiers.get(acc, 1))
    env_ops: dict[str, Ed25519PrivateKey] = {}
    for name in OPERATORS:
        k = Ed25519PrivateKey.generate()
        await registry.create_operator(engine, name, "operator", public_key_b64(k.public_key()))
        env_ops[name] = k
    await registry.create_operator(engine, "viewer1", "viewer",
                                   public_key_b64(Ed25519PrivateKey.generate().public_key()))
    assets = Assets()
    stage = RiskLedgerStage({a: AccountRisk(a) for a in CUSTOMERS}, assets, FeeSchedule(),
                            default_account=AccountRisk("default"))
    inst = Instrument("BTC-USDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.0001"))
    core = Core([inst], hooks=stage)
    stage.validate_instrument(inst)
    chain = SimulatedChain(engine)
    signer = WalletSigner(engine, PASSPHRASES)
    custody = Custody(engine, chain, CoreLedger(core.process, stage.ledger), RegistryDirectory(engine), signer,
                      assets)
    await custody.setup()
    for (asset, tier), sealed in _sealed_wallet_keys().items():  # scrypt is slow: seal once per test run
        await add_wallet(engine, chain, asset, tier, sealed, T0)
    await custody.set_policy(policy or default_policy(), "admin", T0)
    env = Env(engine, custody, chain, core, stage, operator_keys=env_ops)
    for acc in CUSTOMERS:
        k = Ed25519PrivateKey.generate()
        key_id = await custody.register_withdrawal_key(acc, raw_public_bytes(k.public_key()), T0)
        env.customer_keys[acc] = (key_id, k)
        for asset in ("BTC", "USDT"):
            await custody.add_address(acc, asset, EXTERNAL, T0 - whitelist_age)
    return env
