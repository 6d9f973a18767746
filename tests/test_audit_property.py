"""Property: any single tampering of a checkpointed audit chain is found, at the seq where it happened."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from venue import audit
from venue.access import signing

KEY = signing.generate_key()


def chain(n: int) -> list[audit.AuditEntry]:
    out: list[audit.AuditEntry] = []
    prev = audit.GENESIS
    for seq in range(1, n + 1):
        det = audit.canonical_details({"i": seq})
        h = audit.entry_hash(seq, 1000 + seq, "k", "a", f"s{seq}", "127.0.0.1", det, prev)
        out.append(audit.AuditEntry(seq, 1000 + seq, "k", "a", f"s{seq}", "127.0.0.1", det, prev, h))
        prev = h
    return out


def signed_head(rows: list[audit.AuditEntry]) -> audit.Checkpoint:
    import base64

    last = rows[-1]
    sig = KEY.sign(audit.checkpoint_payload(last.seq, last.hash, 1))
    return audit.Checkpoint(last.seq, last.hash, 1, signing.key_id_for(KEY.public_key()),
                            base64.b64encode(sig).decode())


def rehashed(e: audit.AuditEntry) -> audit.AuditEntry:
    return replace(e, hash=audit.entry_hash(e.seq, e.time_ns, e.kind, e.actor, e.subject, e.source, e.details,
                                            e.prev_hash))


def problems(rows, cp):
    return audit.verify_entries(rows) + audit.verify_checkpoints(rows, [cp], KEY.public_key())


@st.composite
def tampering(draw):
    n = draw(st.integers(2, 30))
    i = draw(st.integers(1, n))
    how = draw(st.sampled_from(["edit", "edit_rehash", "delete", "delete_renumber", "insert", "swap"]))
    j = draw(st.integers(1, n).filter(lambda x: x != i)) if how == "swap" else None
    return n, i, how, j


@settings(max_examples=300, deadline=None)
@given(tampering())
def test_single_tampering_is_found_where_it_happened(t):
    n, i, how, j = t
    rows = chain(n)
    cp = signed_head(rows)
    assert problems(rows, cp) == []
    k = i - 1
    if how == "edit":
        rows[k] = replace(rows[k], subject="mallory")
        where = i
    elif how == "edit_rehash":
        rows[k] = rehashed(replace(rows[k], subject="mallory"))
        where = i
    elif how == "delete":
        del rows[k]
        where = i
    elif how == "delete_renumber":
        del rows[k]
        rows = rows[:k] + [replace(r, seq=r.seq - 1) for r in rows[k:]]
        where = i
    elif how == "insert":
        prev_hash = rows[k - 1].hash if k else audit.GENESIS
        forged = rehashed(audit.AuditEntry(i, 1, "logon.accepted", "x", "x", None, "{}", prev_hash, ""))
        rows = rows[:k] + [forged] + [replace(r, seq=r.seq + 1) for r in rows[k:]]
        where = i
    else:
        a, b = sorted((i, j))
        rows[a - 1], rows[b - 1] = replace(rows[b - 1], seq=a), replace(rows[a - 1], seq=b)
        where = a
    found = problems(rows, cp)
    assert found, f"{how} at {i} went unnoticed"
    assert min(p.seq for p in found) == where, f"{how} at {i}: {[str(p) for p in found]}"
