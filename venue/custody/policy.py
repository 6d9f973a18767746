"""The withdrawal policy: versioned, stored, and a pure decision function over it.

Per asset: KYC-tier limits (per withdrawal and rolling 24 h), the automatic threshold, the hot
wallet's per-transaction and rolling-24 h caps, the approvals needed above the threshold (m of
the operators holding the approver role), the larger quorum for cold -> hot top-ups, and the hot
wallet's low / target / high water marks. Every saved policy gets the next version number; a
request records the version it was decided under.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from venue.custody import store

NS = 1_000_000_000
HOUR = 3600 * NS


class PolicyError(ValueError):
    """A policy that is inconsistent (cannot be saved)."""


@dataclass(slots=True, frozen=True)
class TierLimit:
    per_withdrawal: int
    per_24h: int


@dataclass(slots=True, frozen=True)
class AssetPolicy:
    auto_threshold: int  # amounts strictly below go automatically from hot
    hot_tx_cap: int  # largest single payment out of the hot wallet
    hot_daily_cap: int  # rolling 24 h total out of the hot wallet
    approvals: int  # m for withdrawals at or above the threshold
    topup_quorum: int  # m for cold -> hot transfers (must exceed ``approvals``)
    low_water: int
    target: int
    high_water: int
    tiers: dict[int, TierLimit] = field(default_factory=dict)  # KYC tier -> limits


@dataclass(slots=True, frozen=True)
class Policy:
    assets: dict[str, AssetPolicy]
    version: int = 0  # 0: not saved yet
    whitelist_timelock_ns: int = 24 * HOUR
    approval_timelock_ns: int = 0  # wait between approval by quorum and signing
    approval_max_ttl_ns: int = 24 * HOUR  # an approval may not be valid longer than this
    confirmations: int = 3
    max_broadcast_attempts: int = 3

    def asset(self, code: str) -> AssetPolicy:
        try:
            return self.assets[code]
        except KeyError:
            raise PolicyError(f"no custody policy for asset {code}") from None

    def validate(self) -> None:
        for code, a in self.assets.items():
            if not 0 < a.approvals < a.topup_quorum:
                raise PolicyError(f"{code}: need 0 < approvals ({a.approvals}) < topup_quorum ({a.topup_quorum})")
            if not 0 <= a.low_water < a.target < a.high_water:
                raise PolicyError(f"{code}: need low_water < target < high_water")
            if a.auto_threshold > a.hot_tx_cap or a.hot_tx_cap > a.hot_daily_cap:
                raise PolicyError(f"{code}: need auto_threshold <= hot_tx_cap <= hot_daily_cap")
            for tier, lim in a.tiers.items():
                if lim.per_withdrawal <= 0 or lim.per_24h < lim.per_withdrawal:
                    raise PolicyError(f"{code} tier {tier}: need 0 < per_withdrawal <= per_24h")
        if self.confirmations < 1 or self.max_broadcast_attempts < 1:
            raise PolicyError("confirmations and max_broadcast_attempts must be >= 1")

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("version")
        for a in d["assets"].values():
            a["tiers"] = {str(k): v for k, v in a["tiers"].items()}
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, version: int = 0) -> Policy:
        d = json.loads(text)
        assets = {}
        for code, a in d.pop("assets").items():
            tiers = {int(k): TierLimit(**v) for k, v in a.pop("tiers").items()}
            assets[code] = AssetPolicy(**a, tiers=tiers)
        return cls(assets=assets, version=version, **d)


@dataclass(slots=True, frozen=True)
class Route:
    """How a screened withdrawal proceeds: ``auto`` (no approvals) or ``approval`` (m needed)."""

    kind: str
    approvals: int


class Refusal(Exception):
    """A withdrawal the policy refuses; ``reason`` is shown to the customer and audited."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decide(policy: Policy, asset: str, amount: int, kyc_tier: int, account_24h: int, hot_24h: int) -> Route:
    """Route a withdrawal of ``amount`` or raise Refusal.

    ``account_24h``: what the account withdrew (or has in progress) in the last 24 h;
    ``hot_24h``: what left (or is leaving) the hot wallet in the last 24 h.
    """
    try:
        ap = policy.asset(asset)
    except PolicyError as exc:
        raise Refusal(str(exc)) from None
    lim = ap.tiers.get(kyc_tier)
    if lim is None:
        raise Refusal(f"KYC tier {kyc_tier} may not withdraw {asset}")
    if amount > lim.per_withdrawal:
        raise Refusal(f"above the tier {kyc_tier} limit per withdrawal ({lim.per_withdrawal} units of {asset})")
    if account_24h + amount > lim.per_24h:
        raise Refusal(f"above the tier {kyc_tier} 24 h limit ({lim.per_24h} units of {asset}; "
                      f"{account_24h} already used)")
    if amount > ap.hot_tx_cap:
        raise Refusal(f"above the hot wallet per-transaction cap ({ap.hot_tx_cap} units of {asset})")
    if hot_24h + amount > ap.hot_daily_cap:
        raise Refusal(f"above the hot wallet 24 h cap ({ap.hot_daily_cap} units of {asset}; {hot_24h} already used)")
    if amount < ap.auto_threshold:
        return Route("auto", 0)
    return Route("approval", ap.approvals)


async def save_policy(conn: AsyncConnection, policy: Policy, by: str, now: int) -> Policy:
    """Store ``policy`` as the next version and return it with its version number."""
    policy.validate()
    current = (await conn.execute(select(func.max(store.policies.c.version)))).scalar()
    version = (current or 0) + 1
    await conn.execute(insert(store.policies).values(version=version, created_at=now, created_by=by,
                                                     body=policy.to_json()))
    return Policy.from_json(policy.to_json(), version)


async def load_policy(conn: AsyncConnection, version: int | None = None) -> Policy:
    """The given version, or the latest one; PolicyError if none is stored."""
    q = select(store.policies.c.version, store.policies.c.body)
    q = q.where(store.policies.c.version == version) if version is not None else \
        q.order_by(store.policies.c.version.desc()).limit(1)
    row = (await conn.execute(q)).first()
    if row is None:
        raise PolicyError("no custody policy stored" if version is None else f"no custody policy version {version}")
    return Policy.from_json(row.body, row.version)


# whole units: auto threshold, hot per-tx cap, hot 24 h cap, low water, target, high water,
# tier 1 per withdrawal / 24 h, tier 2 per withdrawal / 24 h
_STARTER: dict[str, tuple[int, ...]] = {
    "BTC": (1, 5, 20, 2, 10, 30, 2, 3, 10, 50),
    "ETH": (10, 50, 200, 20, 100, 300, 20, 30, 100, 500),
    "USDT": (10_000, 100_000, 500_000, 1_000, 50_000, 200_000, 10_000, 20_000, 100_000, 1_000_000),
}


def starter_policy(decimals: dict[str, int]) -> Policy:
    """A sensible first policy for the given assets (code -> decimals): 2-of-n approvals above the
    automatic threshold, 3-of-n for cold -> hot, 24 h whitelist time-lock."""
    assets = {}
    for code, dec in decimals.items():
        auto, tx, day, low, target, high, t1, t1d, t2, t2d = (v * 10**dec for v in _STARTER.get(code, _STARTER["ETH"]))
        assets[code] = AssetPolicy(auto, tx, day, 2, 3, low, target, high,
                                   {1: TierLimit(t1, t1d), 2: TierLimit(t2, t2d)})
    return Policy(assets=assets)
