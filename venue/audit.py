"""The tamper-evident audit log: an append-only hash chain with signed checkpoints.

Each entry carries the SHA-256 of the previous entry (``prev_hash``) and its own ``hash`` over a
canonical serialisation of (seq, time, kind, actor, subject, source, details, prev_hash). Every so
often the venue signs a checkpoint (seq, hash of that entry) with its audit Ed25519 key, kept under
the data directory. ``verify`` recomputes the chain, checks the checkpoints and says at which seq an
entry was edited, deleted, inserted or reordered behind the venue's back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.access import signing

metadata = MetaData()
GENESIS = "0" * 64
AUDIT_KEY_FILE = Path("keys") / "audit.pem"
_PG_LOCK_ID = 0x5EA0D17  # advisory lock that serialises appends on PostgreSQL

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("source", String(128), nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
)


@dataclass(slots=True, frozen=True)
class AuditEntry:
    seq: int
    time_ns: int
    kind: str
    actor: str
    subject: str
    source: str | None
    details: str  # canonical JSON text
    prev_hash: str
    hash: str

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.details)


@dataclass(slots=True, frozen=True)
class Checkpoint:
    seq: int
    entry_hash: str
    time_ns: int
    key_id: str
    signature: str


@dataclass(slots=True, frozen=True)
class Problem:
    """One finding of ``verify``: where (seq), what kind, and a sentence for the operator."""

    seq: int
    kind: str  # edited | deleted | inserted | reordered | renumbered | checkpoint
    message: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.kind}: {self.message}"


@dataclass(slots=True)
class _Signer:
    key: Ed25519PrivateKey
    every: int
    interval_ns: int
    last_ns: int = 0


# engine -> the venue's audit signer: every append on that engine (through ``append`` with an engine
# or a connection) signs a checkpoint every N entries or when the last one is older than the interval
_signers: weakref.WeakKeyDictionary[Any, _Signer] = weakref.WeakKeyDictionary()


def canonical_details(details: dict[str, Any] | None) -> str:
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def recordable(kind: str, fields: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``kind`` and ``append``'s keyword arguments made storable as they are queued, so that one
    entry can never fail the transaction it joins: strings cut to their column's length with NUL
    written as ``\\x00`` (PostgreSQL refuses NUL in text; a CompID in a Logon can carry one), and
    details that cannot be serialised (e.g. an integer of thousands of digits) replaced by a note
    saying why, with the keys they had."""
    out = dict(fields)
    for name, size in (("actor", 128), ("subject", 128), ("source", 128)):
        v = out.get(name)
        if v is not None:
            out[name] = str(v).replace("\x00", "\\x00")[:size]
    try:
        canonical_details(out.get("details"))
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        out["details"] = {"unrecordable": f"{type(exc).__name__}: {str(exc)[:200]}",
                          "keys": sorted(str(k)[:64] for k in (out.get("details") or {}))[:50]}
    return str(kind).replace("\x00", "\\x00")[:64], out


def entry_hash(
    seq: int,
    time_ns: int,
    kind: str,
    actor: str,
    subject: str,
    source: str | None,
    details: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of the canonical serialisation of an entry, prev_hash included."""
    blob = json.dumps(
        [seq, time_ns, kind, actor, subject, source, details, prev_hash],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def _rehash(e: AuditEntry, seq: int | None = None) -> str:
    return entry_hash(
        e.seq if seq is None else seq, e.time_ns, e.kind, e.actor, e.subject, e.source, e.details, e.prev_hash
    )


def checkpoint_payload(seq: int, entry_hash_: str, time_ns: int) -> bytes:
    return f"venue-audit-checkpoint\x01{seq}\x01{entry_hash_}\x01{time_ns}".encode("ascii")


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


# ---- the audit key ------------------------------------------------------------------------------


def audit_key_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / AUDIT_KEY_FILE


def load_or_create_audit_key(data_dir: str | Path) -> Ed25519PrivateKey:
    """The venue's audit signing key (``<data-dir>/keys/audit.pem``), created on first use."""
    path = audit_key_path(data_dir)
    if path.exists():
        return signing.load_private_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = signing.generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_key_pem(key))
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # atomic, and never replaces a key another process made first
    except FileExistsError:
        key = signing.load_private_key_file(path)
    finally:
        tmp.unlink()
    return key


def load_audit_public_key(data_dir: str | Path) -> Ed25519PublicKey | None:
    path = audit_key_path(data_dir)
    return signing.load_private_key_file(path).public_key() if path.exists() else None


# ---- appending ----------------------------------------------------------------------------------


def _row_entry(row) -> AuditEntry:
    return AuditEntry(
        row.seq,
        row.time_ns,
        row.kind,
        row.actor,
        row.subject,
        row.source,
        row.details,
        row.prev_hash,
        row.hash,
    )


async def _append_in(
    conn: AsyncConnection,
    kind: str,
    actor: str,
    subject: str,
    source: str | None,
    details: dict[str, Any] | None,
    time_ns: int | None,
) -> AuditEntry:
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
    last = (
        await conn.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        )
    ).first()
    seq, prev = (1, GENESIS) if last is None else (last.seq + 1, last.hash)
    t = time.time_ns() if time_ns is None else time_ns
    det = canonical_details(details)
    src = None if source is None else str(source)
    h = entry_hash(seq, t, kind, actor, subject, src, det, prev)
    await conn.execute(
        insert(audit_log).values(
            seq=seq,
            time_ns=t,
            kind=kind,
            actor=actor,
            subject=subject,
            source=src,
            details=det,
            prev_hash=prev,
            hash=h,
        )
    )
    signer = _signers.get(conn.sync_engine.engine) if _signers else None
    if signer is not None:
        now = time.time_ns()
        if (signer.every and seq % signer.every == 0) or now - signer.last_ns >= signer.interval_ns:
            await _insert_checkpoint(conn, signer.key, seq, h, now)
            signer.last_ns = now
    return AuditEntry(seq, t, kind, actor, subject, src, det, prev, h)


async def append(
    db: AsyncEngine | AsyncConnection,
    kind: str,
    *,
    actor: str = "venue",
    subject: str = "",
    source: str | None = None,
    details: dict[str, Any] | None = None,
    time_ns: int | None = None,
) -> AuditEntry:
    """Append one entry. With a connection it joins the caller's transaction (commit is theirs);
    with an engine it commits on its own, retrying if another writer took the same seq."""
    if isinstance(db, AsyncConnection):
        return await _append_in(db, kind, actor, subject, source, details, time_ns)
    for attempt in range(20):
        try:
            async with db.begin() as conn:
                return await _append_in(conn, kind, actor, subject, source, details, time_ns)
        except (IntegrityError, OperationalError):
            if attempt == 19:
                raise
    raise AssertionError("unreachable")


async def append_many(conn: AsyncConnection, entries: list[tuple[str, dict[str, Any]]]) -> list[AuditEntry]:
    """Append a batch's entries (``(kind, append's keyword arguments)``, in order) in the caller's
    transaction: one read of the chain's head, one multi-row INSERT (executemany), the hashes
    chained in between. The same entries, seqs and hashes as calling :func:`append` once each,
    checkpoints included (at every multiple of the signer's ``every``, and at the last entry when
    the interval has passed)."""
    if not entries:
        return []
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_ID})
    last = (await conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1))
            ).first()
    seq, prev = (0, GENESIS) if last is None else (last.seq, last.hash)
    out: list[AuditEntry] = []
    for kind, kw in entries:
        seq += 1
        t = kw.get("time_ns")
        t = time.time_ns() if t is None else t
        source = kw.get("source")
        src = None if source is None else str(source)
        det = canonical_details(kw.get("details"))
        actor, subject = kw.get("actor", "venue"), kw.get("subject", "")
        h = entry_hash(seq, t, kind, actor, subject, src, det, prev)
        out.append(AuditEntry(seq, t, kind, actor, subject, src, det, prev, h))
        prev = h
    await conn.execute(insert(audit_log), [
        {"seq": e.seq, "time_ns": e.time_ns, "kind": e.kind, "actor": e.actor, "subject": e.subject,
         "source": e.source, "details": e.details, "prev_hash": e.prev_hash, "hash": e.hash} for e in out])
    signer = _signers.get(conn.sync_engine.engine) if _signers else None
    if signer is not None:
        now = time.time_ns()
        due = [e for e in out if signer.every and e.seq % signer.every == 0]
        if (not due or due[-1] is not out[-1]) and now - signer.last_ns >= signer.interval_ns:
            due.append(out[-1])
        for e in due:
            await _insert_checkpoint(conn, signer.key, e.seq, e.hash, now)
            signer.last_ns = now
    return out


async def checkpoint(
    db: AsyncEngine | AsyncConnection, key: Ed25519PrivateKey, time_ns: int | None = None
) -> Checkpoint | None:
    """Sign the latest entry; None when the log is empty or already checkpointed at its head."""
    from venue.db import connect

    async with connect(db) as conn:
        last = (await conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(1))).first()
        if last is None:
            return None
        done = await conn.scalar(
            select(audit_checkpoints.c.id).where(
                audit_checkpoints.c.seq == last.seq, audit_checkpoints.c.entry_hash == last.hash
            )
        )
        if done is not None:
            return None
        t = time.time_ns() if time_ns is None else time_ns
        return await _insert_checkpoint(conn, key, last.seq, last.hash, t)


async def _insert_checkpoint(
    conn: AsyncConnection, key: Ed25519PrivateKey, seq: int, entry_hash_: str, t: int
) -> Checkpoint:
    sig = key.sign(checkpoint_payload(seq, entry_hash_, t))
    cp = Checkpoint(seq, entry_hash_, t, signing.key_id_for(key.public_key()), base64.b64encode(sig).decode())
    await conn.execute(
        insert(audit_checkpoints).values(
            seq=cp.seq, entry_hash=cp.entry_hash, time_ns=cp.time_ns, key_id=cp.key_id, signature=cp.signature
        )
    )
    return cp


class AuditLog:
    """The venue's handle on its audit log.

    Made with the venue's key, it makes every append on ``engine`` (also a plain ``append(conn, ...)``
    inside the venue's batch transactions) sign a checkpoint every ``checkpoint_every`` entries, or
    when the last checkpoint is older than ``checkpoint_interval_s``; call ``checkpoint()`` at shutdown."""

    def __init__(
        self,
        engine: AsyncEngine,
        key: Ed25519PrivateKey | None = None,
        checkpoint_every: int = 100,
        checkpoint_interval_s: float = 60.0,
    ):
        self.engine = engine
        self.key = key
        self.checkpoint_every = checkpoint_every
        if key is not None:
            _signers[engine.sync_engine] = _Signer(key, checkpoint_every, int(checkpoint_interval_s * 1e9))

    async def append(self, kind: str, **kwargs: Any) -> AuditEntry:
        return await append(self.engine, kind, **kwargs)

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the head now (at shutdown, or from a timer)."""
        if self.key is None:
            return None
        return await checkpoint(self.engine, self.key)


# ---- reading ------------------------------------------------------------------------------------


async def entries(
    db: AsyncEngine | AsyncConnection,
    *,
    kind: str | None = None,
    subject: str | None = None,
    since_seq: int = 0,
) -> list[AuditEntry]:
    from venue.db import connect

    q = select(audit_log).where(audit_log.c.seq > since_seq)
    if kind is not None:
        q = q.where(audit_log.c.kind == kind)
    if subject is not None:
        q = q.where(audit_log.c.subject == subject)
    async with connect(db) as conn:
        rows = (await conn.execute(q.order_by(audit_log.c.seq))).all()
    return [_row_entry(r) for r in rows]


async def tail(db: AsyncEngine | AsyncConnection, n: int = 20) -> list[AuditEntry]:
    from venue.db import connect

    async with connect(db) as conn:
        rows = (await conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(n))).all()
    return [_row_entry(r) for r in reversed(rows)]


async def checkpoints(db: AsyncEngine | AsyncConnection) -> list[Checkpoint]:
    from venue.db import connect

    async with connect(db) as conn:
        rows = (await conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.id))).all()
    return [Checkpoint(r.seq, r.entry_hash, r.time_ns, r.key_id, r.signature) for r in rows]


# ---- verification -------------------------------------------------------------------------------

_SEARCH = 8  # how far from its stored seq an entry's written seq is looked for


def verify_entries(rows: list[AuditEntry]) -> list[Problem]:
    """Check a chain of entries (sorted by seq) and diagnose where it was tampered with."""
    problems: list[Problem] = []
    by_hash = {r.hash: r.seq for r in rows}
    reordered: set[int] = set()
    moved: list[tuple[int, int]] = []  # (stored seq, written seq) of entries not otherwise flagged
    prev: AuditEntry | None = None
    for r in rows:
        exp_seq = 1 if prev is None else prev.seq + 1
        exp_prev = GENESIS if prev is None else prev.hash
        gap = r.seq != exp_seq
        if gap:
            span = f"entry {exp_seq} is" if r.seq == exp_seq + 1 else f"entries {exp_seq}..{r.seq - 1} are"
            problems.append(Problem(exp_seq, "deleted", f"{span} missing from the log"))
        written: int | None = r.seq
        if _rehash(r) != r.hash:
            written = next(
                (
                    s
                    for d in range(1, _SEARCH + 1)
                    for s in (r.seq - d, r.seq + d)
                    if s > 0 and _rehash(r, s) == r.hash
                ),
                None,
            )
            if written is None:
                problems.append(
                    Problem(
                        r.seq, "edited", f"entry {r.seq} was edited: its content no longer matches its hash"
                    )
                )
        link_flagged = False
        if r.prev_hash != exp_prev:
            k = 0 if r.prev_hash == GENESIS else by_hash.get(r.prev_hash)
            if k is None:
                if not gap and prev is not None and written == r.seq and _rehash(prev) == prev.hash:
                    problems.append(
                        Problem(
                            prev.seq,
                            "edited",
                            f"entry {prev.seq} was rewritten and re-hashed: entry {r.seq} "
                            f"links to a hash no entry has",
                        )
                    )
                    link_flagged = True
            elif k >= r.seq:
                reordered.update(range(r.seq, k + 1))
                problems.append(
                    Problem(
                        r.seq,
                        "reordered",
                        f"entry {r.seq} follows entry {k} in the chain, which is stored after it: "
                        f"entries {r.seq}..{k} are out of order",
                    )
                )
                link_flagged = True
            elif k < exp_seq - 1:
                if any(s in reordered for s in range(k + 1, exp_seq)):
                    link_flagged = True  # the same reordering, already reported
                else:
                    span = (
                        f"entry {k + 1} was"
                        if k + 1 == exp_seq - 1
                        else f"entries {k + 1}..{exp_seq - 1} were"
                    )
                    problems.append(
                        Problem(k + 1, "inserted", f"{span} inserted: entry {r.seq} links to entry {k}")
                    )
        if written is not None and written != r.seq and not link_flagged:
            moved.append((r.seq, written))
        prev = r
    problems.extend(_collapse_moved(moved))
    problems.sort(key=lambda p: p.seq)
    return problems


def _collapse_moved(moved: list[tuple[int, int]]) -> list[Problem]:
    """Runs of consecutive entries renumbered by the same offset become one problem."""
    out: list[Problem] = []
    i = 0
    while i < len(moved):
        j = i
        start, w0 = moved[i]
        off = start - w0
        while (
            j + 1 < len(moved)
            and moved[j + 1][0] == moved[j][0] + 1
            and moved[j + 1][0] - moved[j + 1][1] == off
        ):
            j += 1
        end = moved[j][0]
        how = "inserted before them" if off > 0 else "deleted before them"
        out.append(
            Problem(
                start,
                "renumbered",
                f"entries {start}..{end} were written as seqs {w0}..{moved[j][1]} "
                f"(renumbered by {off:+d}: entries {how})",
            )
        )
        i = j + 1
    return out


def verify_checkpoints(
    rows: list[AuditEntry], cps: list[Checkpoint], public_key: Ed25519PublicKey | None
) -> list[Problem]:
    problems: list[Problem] = []
    by_seq = {r.seq: r for r in rows}
    last_seq = rows[-1].seq if rows else 0
    kid = None if public_key is None else signing.key_id_for(public_key)
    for cp in cps:
        if public_key is not None:
            ok = cp.key_id == kid
            if ok:
                try:
                    public_key.verify(
                        base64.b64decode(cp.signature), checkpoint_payload(cp.seq, cp.entry_hash, cp.time_ns)
                    )
                except Exception:
                    ok = False
            if not ok:
                problems.append(
                    Problem(
                        cp.seq,
                        "checkpoint",
                        f"checkpoint at seq {cp.seq} is not signed by the venue's audit key",
                    )
                )
                continue
        entry = by_seq.get(cp.seq)
        if entry is None:
            where = (
                "the log ends before it (entries deleted from the end)"
                if cp.seq > last_seq
                else "it is missing"
            )
            problems.append(
                Problem(cp.seq, "checkpoint", f"entry {cp.seq} is covered by a signed checkpoint but {where}")
            )
        elif entry.hash != cp.entry_hash:
            problems.append(
                Problem(
                    cp.seq,
                    "checkpoint",
                    f"entry {cp.seq} differs from the signed checkpoint: history up to it was rewritten",
                )
            )
    return problems


async def verify(
    db: AsyncEngine | AsyncConnection, public_key: Ed25519PublicKey | None = None
) -> list[Problem]:
    """Every problem found in the log and its checkpoints, in seq order; [] when intact.

    Without ``public_key`` checkpoint signatures are not checked (only their hashes)."""
    from venue.db import connect

    async with connect(db) as conn:
        rows = [
            _row_entry(r) for r in (await conn.execute(select(audit_log).order_by(audit_log.c.seq))).all()
        ]
    cps = await checkpoints(db)
    problems = verify_entries(rows) + verify_checkpoints(rows, cps, public_key)
    problems.sort(key=lambda p: p.seq)
    return problems
