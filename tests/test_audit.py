"""The audit log's hash chain and signed checkpoints catch tampering done with plain SQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from tests.access_db import BACKENDS, database, engine_for
from venue import audit
from venue.access import signing

N = 10


async def _fill(engine, n=N, key=None):
    await audit.create_schema(engine)
    for i in range(1, n + 1):
        await audit.append(engine, "test.event", actor="op", subject=f"S{i}", source="127.0.0.1",
                           details={"i": i, "note": f"entry {i}"})
    if key is not None:
        await audit.checkpoint(engine, key)


def tampered(backend, tmp_path, *statements, key=None, fill_n=N, checkpoint_at=None):
    """Fill a log, run raw SQL behind its back, and return what verify finds."""
    async def main(url):
        engine = engine_for(url)
        try:
            if checkpoint_at is not None:
                await _fill(engine, checkpoint_at, key)
                await _fill_more(engine, checkpoint_at + 1, fill_n)
            else:
                await _fill(engine, fill_n, key)
            assert await audit.verify(engine, key.public_key() if key else None) == []
            async with engine.begin() as conn:
                for op in statements:
                    if isinstance(op, str):
                        await conn.execute(text(op))
                    else:
                        await op(conn)
            return await audit.verify(engine, key.public_key() if key else None)
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        return asyncio.run(main(url))


async def _fill_more(engine, start, end):
    for i in range(start, end + 1):
        await audit.append(engine, "test.event", actor="op", subject=f"S{i}", details={"i": i})


async def _rows(conn):
    rows = (await conn.execute(text(
        "SELECT seq, time_ns, kind, actor, subject, source, details, prev_hash, hash FROM audit_log ORDER BY seq"
    ))).all()
    return [audit.AuditEntry(*r) for r in rows]


async def _rewrite(conn, seq, subject, relink_after=False):
    """Change an entry's subject and give it a correct hash, with plain SQL (an informed attacker);
    with ``relink_after`` every later entry is re-chained too."""
    prev_hash = None
    for r in await _rows(conn):
        if r.seq < seq:
            continue
        if r.seq > seq and not relink_after:
            break
        subj = subject if r.seq == seq else r.subject
        prev = r.prev_hash if prev_hash is None else prev_hash
        h = audit.entry_hash(r.seq, r.time_ns, r.kind, r.actor, subj, r.source, r.details, prev)
        await conn.execute(
            text("UPDATE audit_log SET subject = :s, prev_hash = :p, hash = :h WHERE seq = :q"),
            {"s": subj, "p": prev, "h": h, "q": r.seq},
        )
        prev_hash = h


def rewrite(seq, relink_after=False):
    return lambda conn: _rewrite(conn, seq, "FORGED", relink_after)


def forge(seq):
    """Insert a well-formed entry at ``seq`` that links to entry ``seq - 1``."""
    async def op(conn):
        prev = next(r for r in await _rows(conn) if r.seq == seq - 1)
        details = audit.canonical_details({"forged": True})
        h = audit.entry_hash(seq, prev.time_ns + 1, "logon.accepted", "X", "X", None, details, prev.hash)
        await conn.execute(
            text("INSERT INTO audit_log (seq, time_ns, kind, actor, subject, source, details, prev_hash, hash) "
                 "VALUES (:q, :t, 'logon.accepted', 'X', 'X', NULL, :d, :p, :h)"),
            {"q": seq, "t": prev.time_ns + 1, "d": details, "p": prev.hash, "h": h},
        )

    return op


def kinds_at(problems):
    return {(p.seq, p.kind) for p in problems}


@pytest.mark.parametrize("backend", BACKENDS)
def test_intact_log_verifies_clean_and_chains(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await _fill(engine, 5)
            return await audit.entries(engine), await audit.verify(engine)
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        rows, problems = asyncio.run(main(url))
    assert problems == []
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))


@pytest.mark.parametrize("backend", BACKENDS)
def test_edited_entry_is_found_at_its_seq(backend, tmp_path):
    problems = tampered(backend, tmp_path, "UPDATE audit_log SET source = '10.9.9.9' WHERE seq = 5")
    assert kinds_at(problems) == {(5, "edited")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_edited_and_rehashed_entry_is_found_by_the_next_link(backend, tmp_path):
    problems = tampered(backend, tmp_path, rewrite(5))
    assert kinds_at(problems) == {(5, "edited")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleted_entry_is_found_at_its_seq(backend, tmp_path):
    problems = tampered(backend, tmp_path, "DELETE FROM audit_log WHERE seq = 4")
    assert kinds_at(problems) == {(4, "deleted")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_deleted_entry_with_later_entries_renumbered_is_found(backend, tmp_path):
    problems = tampered(
        backend, tmp_path,
        "DELETE FROM audit_log WHERE seq = 4",
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq > 4",
        "UPDATE audit_log SET seq = seq - 1001 WHERE seq > 1000",
    )
    assert problems and problems[0].seq == 4
    assert problems[0].kind == "renumbered" and "deleted" in problems[0].message


@pytest.mark.parametrize("backend", BACKENDS)
def test_inserted_entry_is_found_at_its_seq(backend, tmp_path):
    problems = tampered(
        backend, tmp_path,
        "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 6",
        "UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000",
        forge(6),
    )
    assert (6, "inserted") in kinds_at(problems)
    assert all(p.seq >= 6 for p in problems)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reordered_entries_are_found(backend, tmp_path):
    problems = tampered(
        backend, tmp_path,
        "UPDATE audit_log SET seq = 1000 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 1000",
    )
    assert (3, "reordered") in kinds_at(problems)
    assert all(p.seq in (3, 4) for p in problems)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_tail_is_caught_by_the_signed_checkpoint(backend, tmp_path):
    key = signing.generate_key()
    problems = tampered(backend, tmp_path, "DELETE FROM audit_log WHERE seq >= 9", key=key)
    assert kinds_at(problems) == {(10, "checkpoint")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rewritten_history_is_caught_by_the_signed_checkpoint(backend, tmp_path):
    key = signing.generate_key()
    problems = tampered(backend, tmp_path, rewrite(5, relink_after=True), key=key)
    assert kinds_at(problems) == {(N, "checkpoint")}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_forged_checkpoint_signature_is_caught(backend, tmp_path):
    key = signing.generate_key()
    problems = tampered(backend, tmp_path, "UPDATE audit_checkpoints SET time_ns = time_ns + 1", key=key)
    assert kinds_at(problems) == {(N, "checkpoint")}
    assert "not signed" in problems[0].message


@pytest.mark.parametrize("backend", ["sqlite"])
def test_audit_log_checkpoints_every_n_entries(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await audit.create_schema(engine)
            log = audit.AuditLog(engine, signing.generate_key(), checkpoint_every=3)
            for i in range(7):
                await log.append("x", details={"i": i})
            assert await log.checkpoint() is not None
            assert await log.checkpoint() is None  # nothing new since
            return [c.seq for c in await audit.checkpoints(engine)]
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        assert asyncio.run(main(url)) == [1, 3, 6, 7]  # the first append, every 3rd, then on demand


@pytest.mark.parametrize("backend", BACKENDS)
def test_appends_in_the_venues_own_transactions_are_checkpointed_too(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await audit.create_schema(engine)
            key = signing.generate_key()
            audit.AuditLog(engine, key, checkpoint_every=1000, checkpoint_interval_s=0)
            async with engine.begin() as conn:
                for i in range(3):
                    await audit.append(conn, "batch", details={"i": i})
            return [c.seq for c in await audit.checkpoints(engine)], await audit.verify(engine, key.public_key())
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        seqs, problems = asyncio.run(main(url))
    assert (seqs, problems) == ([1, 2, 3], [])


def test_audit_key_is_created_once_under_the_data_dir(tmp_path):
    k1 = audit.load_or_create_audit_key(tmp_path)
    k2 = audit.load_or_create_audit_key(tmp_path)
    assert signing.public_key_b64(k1.public_key()) == signing.public_key_b64(k2.public_key())
    assert (tmp_path / "keys" / "audit.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_appends_keep_one_unbroken_chain(backend, tmp_path):
    async def main(url):
        engine = engine_for(url)
        try:
            await audit.create_schema(engine)
            await asyncio.gather(*(audit.append(engine, "c", details={"i": i}) for i in range(20)))
            return await audit.verify(engine), len(await audit.entries(engine))
        finally:
            await engine.dispose()

    with database(backend, tmp_path) as url:
        problems, n = asyncio.run(main(url))
    assert (problems, n) == ([], 20)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_entries_is_one_insert_chained_and_checkpointed_as_appends_one_by_one(backend, tmp_path):
    """``append_many`` (the venue's batch): one INSERT statement for all the entries, and the very
    seqs, hashes and checkpoints that appending them one by one gives."""
    from sqlalchemy import event

    key = signing.generate_key()
    batch = [("test.event", {"actor": "op", "subject": f"S{i}", "source": None if i % 2 else "127.0.0.1",
                             "details": {"i": i}, "time_ns": 1_000 + i}) for i in range(1, 8)]

    async def main(url, many):
        engine = engine_for(url)
        try:
            await audit.create_schema(engine)
            audit.AuditLog(engine, key, checkpoint_every=3, checkpoint_interval_s=3600)
            await audit.append(engine, "test.first", time_ns=999)
            inserts = []
            event.listen(engine.sync_engine, "before_cursor_execute",
                         lambda conn, cur, stmt, params, ctx, executemany: inserts.append(stmt)
                         if stmt.lstrip().upper().startswith("INSERT INTO AUDIT_LOG") else None)
            async with engine.begin() as conn:
                if many:
                    await audit.append_many(conn, batch)
                else:
                    for kind, kw in batch:
                        await audit.append(conn, kind, **kw)
            rows = [(e.seq, e.time_ns, e.kind, e.source, e.details, e.prev_hash, e.hash)
                    for e in await audit.entries(engine)]
            cps = [(c.seq, c.entry_hash) for c in await audit.checkpoints(engine)]
            return rows, cps, len(inserts), await audit.verify(engine, key.public_key())
        finally:
            await engine.dispose()

    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    with database(backend, tmp_path / "one") as url:
        one_by_one = asyncio.run(main(url, False))
    with database(backend, tmp_path / "many") as url:
        batched = asyncio.run(main(url, True))
    assert batched[3] == [] and one_by_one[3] == []
    assert batched[0] == one_by_one[0] and [r[0] for r in batched[0]] == list(range(1, 9))
    assert batched[1] == one_by_one[1] and [seq for seq, _ in batched[1]] == [1, 3, 6]  # 1: none before it
    assert (one_by_one[2], batched[2]) == (7, 1), "one INSERT for the batch"
