"""Custody tables (SQLAlchemy 2 Core) on their own MetaData; ``create_all(engine)`` makes them.

Amounts are integers in the asset's smallest unit (BigInteger); times are ns since the epoch.
The ``chain_*`` tables belong to the simulated chain (venue.custody.chain) and are read only
through its adapter.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()

policies = Table(
    "custody_policies", metadata,
    Column("version", Integer, primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("body", Text, nullable=False),  # canonical JSON of venue.custody.policy.Policy
)

account_keys = Table(
    "custody_account_keys", metadata,
    Column("account", String(64), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("public_key", String(64), nullable=False),  # base64 of 32 raw bytes
    Column("added_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger),
    PrimaryKeyConstraint("account", "key_id"),
)

whitelist = Table(
    "custody_whitelist", metadata,
    Column("account", String(64), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("address", String(128), nullable=False),
    Column("label", String(128), nullable=False, default=""),
    Column("added_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("account", "asset", "address"),
)

request_nonces = Table(
    "custody_request_nonces", metadata,
    Column("account", String(64), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("used_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("account", "nonce"),
)

approval_nonces = Table(
    "custody_approval_nonces", metadata,
    Column("operator", String(64), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("used_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("operator", "nonce"),
)

requests = Table(
    "custody_requests", metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # withdrawal | topup | sweep
    Column("account", String(64)),  # customer account (withdrawals)
    Column("asset", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("source", String(16), nullable=False),  # wallet tier paying out
    Column("destination", String(128), nullable=False),  # address (withdrawal) or tier (internal)
    Column("nonce", String(64)),
    Column("expiry", BigInteger),
    Column("digest", String(64), nullable=False),
    Column("signature", String(128)),
    Column("key_id", String(32)),
    Column("initiator", String(64), nullable=False),
    # who handed a withdrawal in (the inbox's actor: an operator submitting for a customer); four
    # eyes: never one of its approvers
    Column("submitted_by", String(64)),
    Column("state", String(24), nullable=False),
    Column("route", String(16), nullable=False, default=""),  # auto | approval | quorum
    Column("approvals_required", Integer, nullable=False, default=0),
    Column("policy_version", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("release_at", BigInteger),  # time-lock end once approved
    # none | held | consuming | releasing (ended, the core settling its hold) | released | consumed
    Column("funds", String(16), nullable=False, default="none"),
    Column("txid", String(64)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", Text, nullable=False, default=""),
    UniqueConstraint("account", "nonce", name="uq_custody_request_nonce"),
)

approvals = Table(
    "custody_approvals", metadata,
    Column("request_id", String(32), nullable=False),
    Column("operator", String(64), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("expiry", BigInteger, nullable=False),
    Column("signature", String(128), nullable=False),
    Column("ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("request_id", "operator"),
)

transitions = Table(
    "custody_transitions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False, index=True),
    Column("ts", BigInteger, nullable=False),
    Column("from_state", String(24), nullable=False),
    Column("to_state", String(24), nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

wallets = Table(
    "custody_wallets", metadata,
    Column("asset", String(16), nullable=False),
    Column("tier", String(8), nullable=False),  # hot | warm | cold
    Column("address", String(128), nullable=False, unique=True),
    Column("key_id", String(32), nullable=False),
    Column("balance", BigInteger, nullable=False, default=0),  # the venue's book of what it holds there
    PrimaryKeyConstraint("asset", "tier"),
)

deposits = Table(
    "custody_deposits", metadata,
    Column("txid", String(64), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("credited_at", BigInteger, nullable=False),
)

sealed_keys = Table(
    "custody_keys", metadata,
    Column("key_id", String(32), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("sealed", Text, nullable=False),  # venue.custody.keys.SealedKey JSON (encrypted)
    Column("created_at", BigInteger, nullable=False),
)

# ---- the simulated chain's own state -----------------------------------------------------------

chain_meta = Table(
    "chain_meta", metadata,
    Column("key", String(32), primary_key=True),
    Column("value", Text, nullable=False),
)

chain_addresses = Table(
    "chain_addresses", metadata,
    Column("address", String(128), nullable=False),
    Column("asset", String(16), nullable=False),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("public_key", String(64)),  # None: an outside address the chain does not verify for us
    PrimaryKeyConstraint("address", "asset"),
)

chain_txs = Table(
    "chain_txs", metadata,
    Column("txid", String(64), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("asset", String(16), nullable=False),
    Column("source", String(128), nullable=False),
    Column("destination", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("memo", String(128), nullable=False, default=""),
    Column("status", String(12), nullable=False),  # pending | confirmed | dropped
    Column("height", Integer),  # block that included it
    Column("broadcast_height", Integer, nullable=False),
)


async def create_all(engine: AsyncEngine) -> None:
    """Custody's tables, and the venue's mailbox its instructions arrive in."""
    from venue import mailbox

    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(_add_missing_columns)
        await mailbox.create_schema(conn)


def _add_missing_columns(sync_conn) -> None:
    """Columns added since a database was created (create_all never alters an existing table)."""
    have = {c["name"] for c in inspect(sync_conn).get_columns(requests.name)}
    if "submitted_by" not in have:
        sync_conn.execute(text(f"ALTER TABLE {requests.name} ADD COLUMN submitted_by VARCHAR(64)"))
