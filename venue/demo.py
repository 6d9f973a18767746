"""The demo set-up's firm, accounts, FIX sessions and signing keys (instruments and balances are
seeded by the integrator).

Each demo session gets an Ed25519 key; its private key is written to
``<data-dir>/demo-keys/<SenderCompID>.pem`` (PKCS#8 PEM, unencrypted: demo only) and its key id to
``<SenderCompID>.keyid`` beside it, so a newcomer's FIX client can sign its logon.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from venue import audit, registry
from venue.access import signing

DEMO_FIRM = "DEMO"
DEMO_ACCOUNTS = ("DEMO1-ACC", "DEMO2-ACC")
DEMO_KYC_EXPIRES = date(2099, 12, 31)
DEMO_NETWORKS = ("127.0.0.0/8", "::1/128")
# SenderCompID -> (kind, entitled accounts)
DEMO_SESSIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "DEMO1": ("order_entry", ("DEMO1-ACC",)),
    "DEMO2": ("order_entry", ("DEMO2-ACC",)),
    "DEMODC": ("drop_copy", DEMO_ACCOUNTS),
    "DEMOMD": ("market_data", ()),
}
DEMO_TIERS = {1: ("1000000", "10000000"), 2: ("10000000", "100000000"), 3: (None, None)}


def demo_keys_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "demo-keys"


def demo_key_paths(data_dir: str | Path, sender_comp_id: str) -> tuple[Path, Path]:
    """(private key PEM, key id file) of a demo session."""
    d = demo_keys_dir(data_dir)
    return d / f"{sender_comp_id}.pem", d / f"{sender_comp_id}.keyid"


def load_demo_key(data_dir: str | Path, sender_comp_id: str):
    """(private key, key id) of a demo session, as a client would read them."""
    pem, kid = demo_key_paths(data_dir, sender_comp_id)
    return signing.load_private_key_file(pem), kid.read_text().strip()


def _write_key(data_dir: str | Path, sender: str, key) -> str:
    pem, kid_path = demo_key_paths(data_dir, sender)
    pem.parent.mkdir(parents=True, exist_ok=True)
    tmp = pem.with_suffix(".pem.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_pem(key))
    os.replace(tmp, pem)
    key_id = signing.key_id_for(key.public_key())
    kid_path.write_text(key_id + "\n")
    return key_id


async def seed_demo(engine: AsyncEngine, data_dir: str | Path) -> None:
    """Create the demo firm, accounts, sessions and keys; a second call changes nothing.

    A demo session whose key file is missing, or no longer matches an active key, gets a new key
    (its old keys are retired), so the files under demo-keys always work."""
    await registry.create_schema(engine)
    async with engine.begin() as conn:
        created: list[str] = []
        if DEMO_FIRM not in {f.firm_id for f in await registry.load_firms(conn)}:
            await registry.create_firm(conn, DEMO_FIRM, "Demo firm")
            created.append(f"firm {DEMO_FIRM}")
        tiers = {t.tier for t in await registry.load_kyc_tiers(conn)}
        for tier, (per_order, per_day) in DEMO_TIERS.items():
            if tier not in tiers:
                await registry.set_tier_limits(conn, tier, per_order, per_day)
        have_accounts = {a.account_id for a in await registry.load_accounts(conn)}
        for account_id in DEMO_ACCOUNTS:
            if account_id not in have_accounts:
                await registry.create_account(
                    conn, account_id, DEMO_FIRM, kyc_status="verified", tier=1, kyc_expires=DEMO_KYC_EXPIRES
                )
                created.append(f"account {account_id}")
        sessions = {s.sender_comp_id: s for s in await registry.load_sessions(conn)}
        for sender, (kind, accs) in DEMO_SESSIONS.items():
            if sender not in sessions:
                await registry.create_session(
                    conn,
                    sender,
                    firm_id=DEMO_FIRM,
                    kind=kind,
                    target_comp_id="VENUE",
                    entitled_accounts=accs,
                    allowed_networks=DEMO_NETWORKS,
                    cancel_on_disconnect=True,
                    spare_gtc=True,  # cancel-on-disconnect spares GTC orders in the demo
                )
                created.append(f"session {sender}")
        sessions = {s.sender_comp_id: s for s in await registry.load_sessions(conn)}
        for sender in DEMO_SESSIONS:
            if _key_file_valid(data_dir, sessions[sender]):
                continue
            for k in sessions[sender].active_keys:
                await registry.retire_session_key(conn, sender, k.key_id)
            key = signing.generate_key()
            key_id = _write_key(data_dir, sender, key)
            await registry.add_session_key(conn, sender, key_id, signing.public_key_b64(key.public_key()))
            created.append(f"key {key_id} for {sender}")
        if created:
            await audit.append(
                conn,
                "demo.seeded",
                actor="venue",
                subject=DEMO_FIRM,
                source="local",
                details={"created": created},
            )


def _key_file_valid(data_dir: str | Path, session: registry.SessionRecord) -> bool:
    pem, kid_path = demo_key_paths(data_dir, session.sender_comp_id)
    if not pem.exists() or not kid_path.exists():
        return False
    try:
        key = signing.load_private_key_file(pem)
    except ValueError:
        return False
    key_id = kid_path.read_text().strip()
    pub = signing.public_key_b64(key.public_key())
    return any(k.key_id == key_id and k.public_key == pub for k in session.active_keys)
