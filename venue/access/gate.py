"""The access gate: who may connect, and whose logon is accepted.

Built from the registry (``await AccessGate.load(engine, config)``, ``await gate.reload(engine)``);
its checks are synchronous and take the time as an argument, so the acceptor can call them inline.
The client only ever learns "refused"; the exact ``reason`` goes to the audit log.

Lockouts exist to stop guessing, and must not let a stranger deny service to a client. An Ed25519
signature cannot be guessed, so a logon whose signature verifies under an active key of its session
is never refused for a lockout. Failures are counted where they can come from (see
:data:`COUNTS_AGAINST_COMP_ID`): every counted failure against its source address, and against a
CompID only a bad signature under one of its key ids from an address its allow-list allows.
SendingTime and KYC refusals count nowhere: they follow a verified signature (no guess).
"""

from __future__ import annotations

import hashlib
import heapq
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue import audit, registry
from venue.access.signing import (
    TAG_RAW_DATA,
    TAG_RAW_DATA_LENGTH,
    TAG_USERNAME,
    load_public_key,
    logon_payload,
    verify_logon,
)
from venue.registry import AccountRecord, SessionRecord, normalize_ip

NS = 1_000_000_000
GENERIC_REFUSAL = "Logon refused"


@dataclass(slots=True, frozen=True)
class GateConfig:
    logon_window_s: float = 5.0  # SendingTime tolerance, both stale and future
    lockout_failures: int = 5  # failures within ``failure_window_s`` that lock an address/CompID
    lockout_seconds: float = 300.0
    failure_window_s: float = 300.0
    max_backlog_s: float = 60.0
    """How much earlier than its check a logon's arrival may count for the SendingTime window (a
    logon the venue got round to later is judged as if it arrived that long before the check); the
    replay memory is kept that much longer, so a replay cannot outlive it while waiting."""

    @classmethod
    def from_config(cls, access: Mapping[str, Any]) -> GateConfig:
        """From the ``[access]`` section of the venue configuration."""
        return cls(
            logon_window_s=float(access.get("logon_window", 5)),
            lockout_failures=int(access.get("lockout_failures", 5)),
            lockout_seconds=float(access.get("lockout_seconds", 300)),
            failure_window_s=float(access.get("failure_window", access.get("lockout_seconds", 300))),
        )


@dataclass(slots=True, frozen=True)
class Decision:
    """The gate's verdict. ``code`` is a stable identifier, ``reason`` the exact sentence for the audit log."""

    ok: bool
    reason: str
    session: SessionRecord | None
    code: str = ""
    key_id: str | None = None

    def audit_details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "result": "accepted" if self.ok else "refused",
            "code": self.code,
            "reason": self.reason,
        }
        if self.key_id:
            out["key_id"] = self.key_id
        return out


NOT_COUNTED = frozenset({"locked_out", "sending_time_stale", "sending_time_future", "kyc"})
"""Refusals that count toward no lockout: a lockout refusal itself, and those that follow a verified
signature (no guess): SendingTime outside the window (a stale one may be the venue's own delay, a
future one the client's clock) and KYC (an auto-reconnecting client whose account became KYC-pending
must not lock out the other sessions behind its address)."""

COUNTS_AGAINST_COMP_ID = frozenset({"bad_signature"})
"""The one refusal that also counts against the CompID: a signature that does not verify under a key
id that exists for that session, from an address the session allows (an attempt at its credentials).
Anything a stranger can send knowing nothing (an unknown or disabled CompID, a wrong TargetCompID, an
address outside the allow-list, no signature, an unknown key id, a replay) counts against the source
address only; and a CompID lockout never refuses a logon signed with one of its active keys."""


def parse_utc_timestamp(value: str) -> int:
    """A FIX UTCTimestamp (YYYYMMDD-HH:MM:SS[.fff[fff[fff]]]) as nanoseconds since the epoch."""
    main, _, frac = value.partition(".")
    dt = datetime.strptime(main, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    if frac and (not frac.isdigit() or len(frac) > 9):
        raise ValueError(f"bad fraction in {value!r}")
    return int(dt.timestamp()) * NS + (int(frac.ljust(9, "0")) if frac else 0)


@dataclass(slots=True)
class _Failures:
    times: deque[int] = field(default_factory=deque)
    locked_until: int = 0


class AccessGate:
    """Connection and logon checks against a snapshot of the registry."""

    def __init__(
        self,
        sessions: Iterable[SessionRecord],
        accounts: Iterable[AccountRecord],
        config: GateConfig | None = None,
    ) -> None:
        self.config = config or GateConfig()
        self._backlog_ns = int(self.config.max_backlog_s * NS)
        self._by_addr: dict[str, _Failures] = {}
        self._by_comp: dict[str, _Failures] = {}
        self._seen: set[bytes] = set()  # digests of (key id, signed payload) used within the window
        self._expiry: list[tuple[int, bytes]] = []  # heap of (forget after ns, digest)
        self._parsed: dict[str, Ed25519PublicKey | None] = {}  # public keys by their registry text
        self._set(sessions, accounts)

    def _set(self, sessions: Iterable[SessionRecord], accounts: Iterable[AccountRecord]) -> None:
        self.sessions: dict[str, SessionRecord] = {s.sender_comp_id: s for s in sessions}
        self.accounts: dict[str, AccountRecord] = {a.account_id: a for a in accounts}
        self._allowed: dict[str, bool] = {}  # allows_address, by address, for this snapshot
        self._keys: dict[tuple[str, str], tuple[str, Ed25519PublicKey | None]] = {}
        # parsed keys by their registry text, kept across reloads (once a second): only new keys are parsed
        old, parsed = self._parsed, {}
        for s in self.sessions.values():
            for k in s.keys:
                pub = parsed[k.public_key] = old[k.public_key] if k.public_key in old else _parse_key(k.public_key)
                self._keys[(s.sender_comp_id, k.key_id)] = (k.state, pub)
        self._parsed = parsed

    @classmethod
    async def load(cls, db: AsyncEngine | AsyncConnection, config: GateConfig | None = None) -> AccessGate:
        return cls(await registry.load_sessions(db), await registry.load_accounts(db), config)

    async def reload(self, db: AsyncEngine | AsyncConnection) -> None:
        """Pick up registry changes (made by ``venue session ...`` / ``venue account kyc``); keeps
        failure counters, lockouts and the replay memory."""
        self._set(await registry.load_sessions(db), await registry.load_accounts(db))

    # ---- connection -------------------------------------------------------------------------

    def allows_address(self, ip: str) -> bool:
        """True when at least one enabled session allows connections from ``ip`` (remembered per
        address until the next reload: with thousands of sessions, every connection of a logon
        storm would otherwise test every allow-list)."""
        known = self._allowed.get(ip)
        if known is None:
            if len(self._allowed) >= 100_000:
                self._allowed.clear()
            known = self._allowed[ip] = any(s.enabled and s.allows(ip) for s in self.sessions.values())
        return known

    # ---- logon ------------------------------------------------------------------------------

    def check_logon(
        self,
        sender_comp_id: str,
        target_comp_id: str,
        fields: Mapping[int, str],
        peer_ip: str,
        now_ns: int,
        received_ns: int | None = None,
    ) -> Decision:
        """Decide on a Logon; ``fields`` holds its tags (34, 52, 95, 96, 553 ...) as strings.

        ``received_ns`` is when the Logon's bytes arrived (default ``now_ns``): SendingTime is judged
        against it (but at most ``max_backlog_s`` before ``now_ns``), so the time the venue took to get
        round to this logon (a logon storm) refuses nobody.

        Lockouts exist to stop guessing, and an Ed25519 signature cannot be guessed: a logon whose
        signature verifies under an active key of its session is never refused for a lockout. So the
        cheap structural checks come first (session known and enabled, TargetCompID, address in its
        allow-list, signature and key id present), then the signature (one verify, ~50 µs, even from
        a locked address), then the lockouts (address, CompID) for anything not so verified, then
        SendingTime window, replay and KYC. Failures are counted as :meth:`_count` says."""
        addr = str(normalize_ip(peer_ip) or peer_ip)
        session = self.sessions.get(sender_comp_id)
        owner_address = session is not None and session.allows(addr)
        arrived = now_ns if received_ns is None else max(received_ns, now_ns - self._backlog_ns)
        key_id = fields.get(TAG_USERNAME) or None
        signature = fields.get(TAG_RAW_DATA)
        signed = signature is not None or key_id is not None
        key_exists = False  # the key id names a key (any state) of this session

        def refuse(code: str, reason: str, key_id: str | None = None) -> Decision:
            self._count(code, addr, sender_comp_id if owner_address and key_exists else None, now_ns)
            return Decision(False, reason, session, code, key_id)

        problem: tuple[str, str, str | None] | None = None
        verified = False
        if session is None:
            problem = "unknown_session", f"unknown SenderCompID {sender_comp_id!r}", None
        elif not session.enabled:
            problem = "session_disabled", f"session {sender_comp_id} is disabled", None
        elif target_comp_id != session.target_comp_id:
            problem = ("wrong_target", f"TargetCompID {target_comp_id!r}, expected {session.target_comp_id!r}",
                       None)
        elif not owner_address:
            problem = "address_not_allowed", f"address {addr} is not in the allow-list of {sender_comp_id}", None
        elif session.require_signature or signed:
            problem = self._check_signature(sender_comp_id, target_comp_id, fields, key_id, signature)
            verified = problem is None
            key_exists = (sender_comp_id, key_id or "") in self._keys

        if not verified:
            locked = self._locked(self._by_addr, addr, "address", now_ns)
            if not locked and owner_address:
                locked = self._locked(self._by_comp, sender_comp_id, "CompID", now_ns)
            if locked:
                return refuse("locked_out", locked, key_id)
        if problem is not None:
            return refuse(*problem)

        if signed:
            assert session is not None
            stale = self._check_time_and_replay(
                fields.get(35, "A"), sender_comp_id, target_comp_id, fields.get(34, ""), fields.get(52, ""),
                key_id, arrived, now_ns,
            )
            if stale is not None:
                return refuse(*stale, key_id)

        assert session is not None
        kyc = self._kyc_problem(session, now_ns)
        if kyc:
            return refuse("kyc", kyc, key_id)

        # a success resets the failure counts, but never lifts a lockout (a verified logon from a
        # locked address must not reopen it to guessing)
        for table, name in ((self._by_addr, addr), (self._by_comp, sender_comp_id)):
            f = table.get(name)
            if f is not None and f.locked_until <= now_ns:
                del table[name]
        return Decision(True, "accepted", session, "accepted", key_id)

    def _check_signature(
        self, sender: str, target: str, fields: Mapping[int, str], key_id: str | None, signature: str | None
    ) -> tuple[str, str, str | None] | None:
        """None when the logon's signature verifies under an active key of ``sender``, else the refusal."""
        if not signature:
            return "signature_missing", "logon carries no signature (RawData 96)", key_id
        if not key_id:
            return "key_id_missing", "logon carries no key id (Username 553)", None
        length = fields.get(TAG_RAW_DATA_LENGTH)
        if length is not None and length != str(len(signature)):
            return ("bad_signature", f"RawDataLength {length!r} does not match RawData ({len(signature)})",
                    key_id)
        state, pub = self._keys.get((sender, key_id), (None, None))
        if state is None or pub is None:
            return "unknown_key", f"key id {key_id!r} is not registered for {sender}", key_id
        if state != "active":
            return "key_retired", f"key {key_id} of {sender} is retired", key_id
        if not verify_logon(pub, signature, fields.get(35, "A"), sender, target, fields.get(34, ""),
                            fields.get(52, "")):
            return "bad_signature", f"signature does not verify with key {key_id}", key_id
        return None

    def refuse_unbound(self, begin_string: str, sender_comp_id: str, target_comp_id: str) -> Decision:
        """The decision on a Logon the FIX acceptor found no session for (unknown, disabled, wrong
        TargetCompID or BeginString), for the audit log. Not counted toward any lockout: no
        credential was tried, and a client retrying while its session is being registered or is
        disabled would otherwise lock out every other session behind its address."""
        session = self.sessions.get(sender_comp_id)
        if session is None:
            code, reason = "unknown_session", f"unknown SenderCompID {sender_comp_id!r}"
        elif not session.enabled:
            code, reason = "session_disabled", f"session {sender_comp_id} is disabled"
        elif target_comp_id != session.target_comp_id:
            code, reason = "wrong_target", f"TargetCompID {target_comp_id!r}, expected {session.target_comp_id!r}"
        else:
            code, reason = "unknown_session", (
                f"no {begin_string!r} session {sender_comp_id}->{target_comp_id} (BeginString must be FIX.4.4)")
        return Decision(False, reason, session, code)

    def _check_time_and_replay(
        self,
        msg_type: str,
        sender: str,
        target: str,
        seq: str,
        sending_time: str,
        key_id: str | None,
        arrived_ns: int,
        now_ns: int,
    ) -> tuple[str, str] | None:
        """SendingTime within the window both ways of ``arrived_ns`` (when the logon arrived, at most
        ``max_backlog_s`` before ``now_ns``), and this signed logon not seen before. A used logon is
        remembered until ``max_backlog_s`` after its window closes: a replay accepted now arrived at
        most that long ago, within the window, so the original is still remembered."""
        window = int(self.config.logon_window_s * NS)
        try:
            sent_ns = parse_utc_timestamp(sending_time)
        except ValueError:
            return "sending_time_invalid", f"SendingTime {sending_time!r} is not a UTC timestamp"
        w = self.config.logon_window_s
        if sent_ns < arrived_ns - window:
            return (
                "sending_time_stale",
                f"SendingTime {sending_time} is {(arrived_ns - sent_ns) / NS:.3f} s old (window {w:g} s)",
            )
        if sent_ns > arrived_ns + window:
            return (
                "sending_time_future",
                f"SendingTime {sending_time} is {(sent_ns - arrived_ns) / NS:.3f} s ahead (window {w:g} s)",
            )
        self._prune_seen(now_ns)
        digest = _logon_digest(key_id, msg_type, sender, target, seq, sending_time)
        if digest in self._seen:
            return "replayed", (
                f"this signed logon (key {key_id}, MsgSeqNum {seq}, SendingTime {sending_time}) was already used"
            )
        self._seen.add(digest)
        heapq.heappush(self._expiry, (sent_ns + window + self._backlog_ns + NS, digest))
        return None

    def remember_logon(self, key_id: str | None, msg_type: str, sender: str, target: str, seq: str,
                       sending_time: str) -> None:
        """Mark a signed logon as used (the venue replays its recent accepted logons from the audit
        log at start, so a restart does not reopen the replay window)."""
        try:
            sent_ns = parse_utc_timestamp(sending_time)
        except ValueError:
            return
        digest = _logon_digest(key_id, msg_type, sender, target, seq, sending_time)
        if digest not in self._seen:
            self._seen.add(digest)
            heapq.heappush(self._expiry,
                           (sent_ns + int(self.config.logon_window_s * NS) + self._backlog_ns + NS, digest))

    # ---- KYC --------------------------------------------------------------------------------

    def session_accounts(self, session: SessionRecord) -> list[str]:
        """The accounts whose KYC gates a session: its entitled accounts, else all its firm's."""
        if session.accounts:
            return list(session.accounts)
        return [a.account_id for a in self.accounts.values() if a.firm_id == session.firm_id]

    def _kyc_problem(self, session: SessionRecord, now_ns: int) -> str | None:
        today = _utc_date(now_ns)
        ids = self.session_accounts(session)
        if not ids:
            return f"firm {session.firm_id} of {session.sender_comp_id} has no accounts"
        for account_id in ids:
            acc = self.accounts.get(account_id)
            if acc is None:
                return f"account {account_id} is not registered"
            problem = acc.kyc_problem(today)
            if problem:
                return problem
        return None

    def kyc_violations(self, now_ns: int) -> list[str]:
        """SenderCompIDs of enabled sessions whose accounts are no longer KYC-verified or have expired.

        The venue runs this periodically (after ``reload``) and logs such sessions out and cancels
        their orders."""
        return [
            s.sender_comp_id for s in self.sessions.values() if s.enabled and self._kyc_problem(s, now_ns)
        ]

    def kyc_reason(self, sender_comp_id: str, now_ns: int) -> str | None:
        session = self.sessions.get(sender_comp_id)
        return None if session is None else self._kyc_problem(session, now_ns)

    # ---- failures, lockouts, replay memory -----------------------------------------------

    def _count(self, code: str, addr: str, owner_comp_id: str | None, now_ns: int) -> None:
        """Count a refusal: against the address, and against ``owner_comp_id`` (None unless the logon
        came from an address its session allows under a key id of that session) only for
        :data:`COUNTS_AGAINST_COMP_ID`."""
        if code in NOT_COUNTED:
            return
        self._fail(self._by_addr, addr, now_ns)
        if owner_comp_id is not None and code in COUNTS_AGAINST_COMP_ID:
            self._fail(self._by_comp, owner_comp_id, now_ns)
        if len(self._by_addr) > 10_000:
            self._prune_failures(now_ns)

    def _fail(self, table: dict[str, _Failures], name: str, now_ns: int) -> None:
        f = table.setdefault(name, _Failures())
        horizon = now_ns - int(self.config.failure_window_s * NS)
        while f.times and f.times[0] < horizon:
            f.times.popleft()
        f.times.append(now_ns)
        if len(f.times) >= self.config.lockout_failures:
            f.locked_until = now_ns + int(self.config.lockout_seconds * NS)
            f.times.clear()

    @staticmethod
    def _locked(table: dict[str, _Failures], name: str, what: str, now_ns: int) -> str | None:
        f = table.get(name)
        if f is not None and f.locked_until > now_ns:
            return f"{what} {name} is locked out for {(f.locked_until - now_ns) / NS:.0f} s more after repeated failures"
        return None

    def is_locked_out(
        self, peer_ip: str | None = None, sender_comp_id: str | None = None, now_ns: int = 0
    ) -> bool:
        addr = str(normalize_ip(peer_ip) or peer_ip) if peer_ip else None
        for table, name in ((self._by_addr, addr), (self._by_comp, sender_comp_id)):
            f = table.get(name) if name else None
            if f is not None and f.locked_until > now_ns:
                return True
        return False

    def _prune_failures(self, now_ns: int) -> None:
        horizon = now_ns - int(self.config.failure_window_s * NS)
        for table in (self._by_addr, self._by_comp):
            for name in [
                n
                for n, f in table.items()
                if f.locked_until <= now_ns and (not f.times or f.times[-1] < horizon)
            ]:
                del table[name]

    def _prune_seen(self, now_ns: int) -> None:
        """Forget logons whose SendingTime is out of the window anyway, however long they waited
        (they are refused as stale)."""
        expiry = self._expiry
        while expiry and expiry[0][0] < now_ns:
            self._seen.discard(heapq.heappop(expiry)[1])


def _parse_key(text: str) -> Ed25519PublicKey | None:
    try:
        return load_public_key(text)
    except ValueError:
        return None


def _logon_digest(key_id: str | None, msg_type: str, sender: str, target: str, seq: str, sending_time: str) -> bytes:
    return hashlib.sha256(
        (key_id or "").encode() + b"\x00" + logon_payload(msg_type, sender, target, seq, sending_time)
    ).digest()


def _utc_date(now_ns: int) -> date:
    return datetime.fromtimestamp(now_ns / NS, tz=UTC).date()


async def record_decision(
    db: AsyncEngine | AsyncConnection | audit.AuditLog,
    decision: Decision,
    sender_comp_id: str,
    peer_ip: str,
    time_ns: int | None = None,
) -> audit.AuditEntry:
    """Write the audit entry of a logon decision (``logon.accepted`` / ``logon.refused``)."""
    kind = "logon.accepted" if decision.ok else "logon.refused"
    kwargs = dict(
        actor=sender_comp_id,
        subject=sender_comp_id,
        source=peer_ip,
        details=decision.audit_details(),
        time_ns=time_ns,
    )
    if isinstance(db, audit.AuditLog):
        return await db.append(kind, **kwargs)
    return await audit.append(db, kind, **kwargs)
