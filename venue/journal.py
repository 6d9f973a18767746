"""The core's journal in the database: group commits of commands + events, snapshots, recovery.

Tables (SQLAlchemy Core, own ``MetaData``):

- ``core_journal``: one row per batch (one group commit): ``cmd_from``/``cmd_to`` (the core's command
  counter before/after the batch), ``seq_from``/``seq_to`` (first/last event seq; ``seq_to <
  seq_from`` for a batch without events), and the batch's commands and events, each a zlib-compressed
  array of positional rows ``(tag, field, field, ...)`` (events without their ``seq``, implied by
  the position). Rows are written in the binary encoding (``BINARY_MAGIC``: a version tag, then
  the rows as one marshal version-2 list of tuples of None/bool/int/str, nothing else); the JSON
  rows of older venues are still read.
- ``core_snapshot``: ``Core.snapshot()`` at a batch boundary, keyed by ``cmd_count``.

Recovery: the latest snapshot, then the commands of every batch after it, replayed through a fresh
core (the core is deterministic); the replay checks that each batch ends at the journaled seq.

Usage (the FIX layer)::

    journal = await Journal.open(engine)          # creates tables, reads the counters
    events = core.process_batch(commands)
    async with engine.begin() as conn:            # same transaction as the message store
        await journal.write(conn, commands, events)
    # ... only now send the execution reports
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import marshal
import struct
import typing
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from operator import attrgetter

from sqlalchemy import BigInteger, Column, Index, LargeBinary, MetaData, Table, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from venue.core import commands as _commands
from venue.core import events as _events
from venue.core.engine import Core
from venue.core.hooks import CoreHooks
from venue.core.instruments import Instrument

metadata = MetaData()

journal_table = Table(
    "core_journal",
    metadata,
    Column("cmd_from", BigInteger, primary_key=True, autoincrement=False),
    Column("cmd_to", BigInteger, nullable=False),
    Column("seq_from", BigInteger, nullable=False),
    Column("seq_to", BigInteger, nullable=False),
    Column("commands", LargeBinary, nullable=False),
    Column("events", LargeBinary, nullable=False),
    Index("ix_core_journal_seq_to", "seq_to"),
)

snapshot_table = Table(
    "core_snapshot",
    metadata,
    Column("cmd_count", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

COMPRESS_LEVEL = 1
_INSERT_BATCH = journal_table.insert()
_INSERT_BATCH_QMARK = ("INSERT INTO core_journal (cmd_from, cmd_to, seq_from, seq_to, commands, events)"
                       " VALUES (?, ?, ?, ?, ?, ?)")


class JournalError(RuntimeError):
    """The journal and the core disagree (a gap, or a replay that diverged)."""


class JournalEncodeError(ValueError):
    """One command or event cannot be written to the journal (a value the rows cannot carry, e.g.
    an integer of thousands of digits). Raised for that one item, before anything is written, so the
    caller refuses that item alone and the batch, the transaction and the connection stay sound."""


def _row_encoder() -> typing.Callable[[list], str]:
    """``json.dumps(row, separators=(",", ":"))``, minus its per-call set-up: the C encoder made
    once (rows are flat lists, so no cycle check). Per row, this is cheaper than one ``dumps``
    of the whole batch was."""
    plain = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    enc = make(None, plain.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda row: "".join(enc(row, 0))


_dumps_row = _row_encoder()
_MAX_DIGITS = 4000  # below Python's int <-> str conversion limit (4300 digits)


def _too_big(v) -> bool:
    return type(v) is int and v.bit_length() > _MAX_DIGITS * 3.32  # digits ~ bits * log10(2)


def _describe(obj, fields: Sequence[str], exc: Exception) -> str:
    """A sentence naming the field that cannot be journaled (for the refusal's Text and the log)."""
    name = type(obj).__name__
    for f in fields:
        v = getattr(obj, f, None)
        if _too_big(v):
            return f"{name}.{f} is an integer of about {int(v.bit_length() * 0.30103)} digits: too large to record"
        if isinstance(v, tuple | list) and _has_too_big(v):
            return f"{name}.{f} holds an integer of more than {_MAX_DIGITS} digits: too large to record"
    return f"{name} cannot be recorded: {type(exc).__name__}: {str(exc)[:200]}"


# ---------------------------------------------------------------------------------------- codec
def _deep_tuple(v):
    return tuple(_deep_tuple(x) if isinstance(x, list) else x for x in v)


BINARY_MAGIC = b"\x00\x02"
"""First bytes of a blob in the binary encoding (version 2; a JSON blob starts with ``[``). What
follows is what ``marshal.dumps(rows, 2)`` gives for a list of tuples whose items are None, True,
False, int or str (type codes N T F i l u ( [, unchanged since Python 3.0; version 2 has no
back-references, so rows encoded one by one concatenate into the list)."""
_MARSHAL_VERSION = 2
_LIST = b"["
_BIG_ROW = 1600  # bytes: a row shorter than this cannot hold an integer of _MAX_DIGITS digits


def _plain(v):
    """A value as the binary rows hold it: enums by value, Decimals as str, containers deeply
    (tuples; lists and dicts keep their type), subclasses of str and int as the plain value."""
    t = type(v)
    if t is str or t is int or v is None or t is bool:
        return v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Decimal):
        return str(v)
    if t is tuple:
        return tuple([_plain(x) for x in v])
    if t is list:
        return [_plain(x) for x in v]
    if t is dict:
        return {_plain(k): _plain(x) for k, x in v.items()}
    if isinstance(v, str):
        return str(v)
    if isinstance(v, int):
        return int(v)
    return v


def _has_too_big(v) -> bool:
    if type(v) is int:
        return _too_big(v)
    if isinstance(v, tuple | list):
        return any(_has_too_big(x) for x in v)
    return False


class _Kind:
    """How one dataclass is written as a positional row and read back."""

    __slots__ = ("cls", "tag", "fields", "get", "has_seq", "decoders", "encoders", "json_decoders", "fast_row")

    def __init__(self, cls: type, tag: str) -> None:
        self.cls = cls
        self.tag = tag
        names = [f.name for f in dataclasses.fields(cls)]
        self.has_seq = bool(names) and names[0] == "seq"
        self.fields = names[1:] if self.has_seq else names
        self.get = attrgetter(*self.fields) if len(self.fields) > 1 else None
        hints = typing.get_type_hints(cls)
        self.decoders: list[tuple[int, typing.Any]] = []  # binary rows: enums and Decimals
        self.json_decoders: list[tuple[int, typing.Any]] = []  # JSON rows: tuples too
        self.encoders: list[int] = []
        parts: list[str] = []
        for i, name in enumerate(self.fields):
            hint = hints.get(name)
            part = f"o.{name}"
            if typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint)):
                self.json_decoders.append((i, _deep_tuple))  # JSON gives lists back
                part = f"o.{name}"  # plain tuples as they are (an enum inside: the generic path)
            else:
                members = [a for a in typing.get_args(hint) if isinstance(a, type)] or [hint]
                for m in members:
                    if isinstance(m, type) and issubclass(m, enum.Enum):
                        self.decoders.append((i, m._value2member_map_))
                        self.json_decoders.append((i, m._value2member_map_))
                        optional = type(None) in typing.get_args(hint)
                        part = f"(None if o.{name} is None else o.{name}._value_)" if optional else f"o.{name}._value_"
                        break
                    if m is Decimal:
                        self.decoders.append((i, Decimal))
                        self.json_decoders.append((i, Decimal))
                        self.encoders.append(i)
                        part = f"(None if o.{name} is None else str(o.{name}))"
                        break
            parts.append(part)
        # the row of an object in one generated expression: attribute reads, enum values, no loop
        src = f"def row(o):\n    return ({tag!r}, {''.join(p + ', ' for p in parts)})\n"
        scope: dict[str, typing.Any] = {"_plain": _plain}
        exec(compile(src, f"<journal row {tag}>", "exec"), scope)  # noqa: S102 - field names of a dataclass
        self.fast_row = scope["row"]

    def row(self, obj) -> tuple:
        """The positional row of ``obj`` as the binary encoding holds it: tag first, enums as their
        values, Decimals as str. Built by one generated expression; an object whose values are not
        of their declared types (a plain str for an enum) takes the generic path."""
        try:
            return self.fast_row(obj)
        except AttributeError:
            return (self.tag, *[_plain(getattr(obj, f)) for f in self.fields])

    def build(self, row, seq: int | None, json_row: bool = False):
        decoders = self.json_decoders if json_row else self.decoders
        if decoders:
            vals = list(row[1:])
            for i, conv in decoders:
                v = vals[i]
                if v is not None:
                    vals[i] = conv[v] if type(conv) is dict else conv(v)
        else:
            vals = row[1:]
        if self.has_seq:
            return self.cls(seq, *vals)
        return self.cls(*vals)


class Codec:
    """Positional JSON rows for commands and events; foreign dataclasses (e.g. ledger events) are
    registered on first sight under ``module:QualName`` and imported back by that name."""

    def __init__(self) -> None:
        self._by_cls: dict[type, _Kind] = {}
        self._by_tag: dict[str, _Kind] = {}
        for mod in (_commands, _events):
            for name, obj in vars(mod).items():
                if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == mod.__name__:
                    self.register(obj, name)

    def register(self, cls: type, tag: str | None = None) -> _Kind:
        tag = tag or f"{cls.__module__}:{cls.__qualname__}"
        kind = _Kind(cls, tag)
        self._by_cls[cls] = kind
        self._by_tag[tag] = kind
        return kind

    def _kind(self, cls: type) -> _Kind:
        kind = self._by_cls.get(cls)
        if kind is None:
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"cannot journal {cls!r}: not a dataclass")
            kind = self.register(cls)
        return kind

    def _kind_by_tag(self, tag: str) -> _Kind:
        kind = self._by_tag.get(tag)
        if kind is None:
            module, _, qual = tag.partition(":")
            obj: typing.Any = importlib.import_module(module)
            for part in qual.split("."):
                obj = getattr(obj, part)
            kind = self.register(obj, tag)
        return kind

    def encode_row(self, x) -> bytes:
        """One command or event as its binary row; JournalEncodeError (naming the field) if it
        cannot be. Rows are encoded one by one as the core runs and joined by :meth:`pack` at
        commit (an integer of more than _MAX_DIGITS digits is refused, as the JSON rows did)."""
        kind = self._by_cls.get(type(x))
        try:
            if kind is None:
                kind = self._kind(type(x))
            row = kind.row(x)
            try:
                out = _dumps(row, _MARSHAL_VERSION)
            except ValueError:  # a value of a subclass (an enum where a str or int is declared)
                row = _plain(row)
                out = _dumps(row, _MARSHAL_VERSION)
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise JournalEncodeError(_describe(x, kind.fields if kind else (), exc)) from exc
        if len(out) > _BIG_ROW and _has_too_big(row):
            raise JournalEncodeError(_describe(x, kind.fields, ValueError("integer too large")))
        return out

    @staticmethod
    def pack(rows: Sequence[bytes]) -> bytes:
        """Encoded rows -> the stored blob (the same bytes :meth:`encode` gives for the items)."""
        return zlib.compress(BINARY_MAGIC + _LIST + _COUNT(len(rows)) + b"".join(rows), COMPRESS_LEVEL)

    def encode(self, items: Iterable) -> bytes:
        return self.pack([self.encode_row(x) for x in items])

    def decode(self, blob: bytes, first_seq: int | None = None) -> list:
        """A stored blob -> its commands or events (binary rows, or the JSON rows of older venues)."""
        data = zlib.decompress(blob)
        if data[:2] == BINARY_MAGIC:
            rows, json_rows = marshal.loads(memoryview(data)[2:]), False
        elif data[:1] == b"[":
            rows, json_rows = json.loads(data), True
        else:
            raise JournalError(f"journal blob in an unknown encoding (starts {data[:4]!r})")
        out = []
        by_tag = self._by_tag
        seq = first_seq
        for row in rows:
            kind = by_tag.get(row[0]) or self._kind_by_tag(row[0])
            out.append(kind.build(row, seq, json_rows))
            if seq is not None:
                seq += 1
        return out


_dumps = marshal.dumps
_COUNT = struct.Struct("<i").pack


CODEC = Codec()


def encode_snapshot(d: dict) -> bytes:
    try:
        return zlib.compress(json.dumps(d, separators=(",", ":")).encode(), COMPRESS_LEVEL)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise JournalEncodeError(f"snapshot cannot be recorded: {type(exc).__name__}: {str(exc)[:200]}") from exc


def decode_snapshot(blob: bytes) -> dict:
    return json.loads(zlib.decompress(blob))


# -------------------------------------------------------------------------------------- journal
async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


class Journal:
    """Writes batches and snapshots; reads events back; recovers a core. One writer per database."""

    def __init__(self, engine: AsyncEngine, cmd_count: int = 0, seq: int = 0) -> None:
        self.engine = engine
        self.cmd_count = cmd_count  # commands journaled so far (== the core's cmd_count)
        self.seq = seq  # last journaled event seq
        self.codec = CODEC

    @classmethod
    async def open(cls, engine: AsyncEngine) -> Journal:
        """Create the tables if needed and continue after the last journaled batch."""
        await create_tables(engine)
        async with engine.connect() as conn:
            row = (await conn.execute(
                select(journal_table.c.cmd_to, journal_table.c.seq_to)
                .order_by(journal_table.c.cmd_from.desc()).limit(1)
            )).first()
            snap = (await conn.execute(
                select(snapshot_table.c.cmd_count, snapshot_table.c.seq)
                .order_by(snapshot_table.c.cmd_count.desc()).limit(1)
            )).first()
        cmd_count, seq = (row[0], row[1]) if row is not None else (0, 0)
        if snap is not None and snap[0] > cmd_count:
            cmd_count, seq = snap[0], snap[1]
        return cls(engine, cmd_count, seq)

    async def write(self, conn: AsyncConnection, commands: Sequence, events: Sequence) -> None:
        """Journal one batch (all commands the core processed since the last write, and all their
        events) into the caller's open transaction. Raises JournalError on a seq gap,
        JournalEncodeError (before writing anything) on an item that cannot be recorded.

        The counters move at once: for callers that commit right after, or give up on failure.
        The venue's batch loop uses :meth:`write_rows` + :meth:`committed` instead."""
        if not commands:
            if events:
                raise JournalError("events without commands")
            return
        if events and (events[0].seq != self.seq + 1 or events[-1].seq != self.seq + len(events)):
            raise JournalError(f"event seq gap: journal at {self.seq}, batch {events[0].seq}..{events[-1].seq}")
        encode = self.codec.encode_row
        cmd_to, seq_to = await self.write_rows(conn, [encode(c) for c in commands], [encode(e) for e in events])
        self.committed(cmd_to, seq_to)

    async def write_rows(self, conn: AsyncConnection, commands: Sequence[bytes], events: Sequence[bytes]) -> tuple[int, int]:
        """Insert one batch of already encoded rows (``Codec.encode_row``; the events are the next
        ones after the journal's seq, in order) into the caller's transaction, WITHOUT moving the
        counters; returns ``(cmd_to, seq_to)`` for :meth:`committed`, to call once the transaction
        has committed. A failed commit thus leaves the journal where it was, and the same rows
        (with later ones appended) can be written again."""
        cmd_from, seq_from = self.cmd_count, self.seq + 1
        cmd_to, seq_to = cmd_from + len(commands), self.seq + len(events)
        await conn.execute(_INSERT_BATCH, {  # one statement, built once (its compiled form cached)
            "cmd_from": cmd_from, "cmd_to": cmd_to, "seq_from": seq_from, "seq_to": seq_to,
            "commands": self.codec.pack(commands), "events": self.codec.pack(events),
        })
        return cmd_to, seq_to

    def rows_statement(self, commands: Sequence[bytes], events: Sequence[bytes]) -> tuple[str, tuple, tuple[int, int]]:
        """:meth:`write_rows` as one plain DBAPI statement (qmark style: SQLite's ``sqlite3``), for a
        caller that writes the whole batch in one call on the driver's thread: ``(sql, params,
        (cmd_to, seq_to))``; the counters do not move (see :meth:`committed`)."""
        cmd_from, seq_from = self.cmd_count, self.seq + 1
        cmd_to, seq_to = cmd_from + len(commands), self.seq + len(events)
        pack = self.codec.pack
        return _INSERT_BATCH_QMARK, (cmd_from, cmd_to, seq_from, seq_to, pack(commands), pack(events)), (cmd_to, seq_to)

    def committed(self, cmd_to: int, seq_to: int) -> None:
        """The batch written up to ``cmd_to``/``seq_to`` is committed: continue after it."""
        self.cmd_count, self.seq = cmd_to, seq_to

    async def write_snapshot(self, conn: AsyncConnection, core: Core, at: tuple[int, int] | None = None) -> None:
        """Store ``core.snapshot()``; the core must be exactly at the journal's last batch (or at
        ``at`` = ``(cmd_to, seq_to)`` of a batch written by :meth:`write_rows` in this transaction).
        JournalEncodeError if the snapshot cannot be encoded (nothing written: the journal alone
        still recovers the core)."""
        cmd_count, seq = at if at is not None else (self.cmd_count, self.seq)
        if core.cmd_count != cmd_count or core.seq != seq:
            raise JournalError(
                f"snapshot off a batch boundary: core at cmd {core.cmd_count}/seq {core.seq}, "
                f"journal at cmd {cmd_count}/seq {seq}"
            )
        data = encode_snapshot(core.snapshot())
        await conn.execute(snapshot_table.insert().values(cmd_count=core.cmd_count, seq=core.seq, data=data))

    async def events_since(self, seq: int, limit: int | None = None, conn: AsyncConnection | None = None) -> list:
        """Journaled events with ``seq`` > the given one, in order (at most ``limit``)."""
        stmt = (select(journal_table.c.seq_from, journal_table.c.events)
                .where(journal_table.c.seq_to > seq).order_by(journal_table.c.cmd_from))
        out: list = []
        if conn is None:
            async with self.engine.connect() as c:
                return await self._collect(c, stmt, seq, limit, out)
        return await self._collect(conn, stmt, seq, limit, out)

    async def _collect(self, conn, stmt, seq, limit, out) -> list:
        result = await conn.stream(stmt)
        async for seq_from, blob in result:
            for e in self.codec.decode(blob, seq_from):
                if e.seq > seq:
                    out.append(e)
                    if limit is not None and len(out) >= limit:
                        await result.close()
                        return out
        return out

    async def last_seq(self) -> int:
        async with self.engine.connect() as conn:
            v = (await conn.execute(select(func.max(journal_table.c.seq_to)))).scalar()
        return v or 0

    @classmethod
    async def recover(
        cls,
        engine: AsyncEngine,
        instruments: Iterable[Instrument],
        hooks: CoreHooks | None = None,
        verify_events: bool = False,
    ) -> Core:
        """Latest snapshot + replay of the journaled commands after it; returns the core.

        ``verify_events`` also compares every replayed event with the journaled one."""
        await create_tables(engine)
        instruments = list(instruments)
        codec = CODEC
        async with engine.connect() as conn:
            snap = (await conn.execute(
                select(snapshot_table.c.cmd_count, snapshot_table.c.data)
                .order_by(snapshot_table.c.cmd_count.desc()).limit(1)
            )).first()
            if snap is None:
                core = Core(instruments, hooks)
                start = 0
            else:
                core = Core.from_snapshot(decode_snapshot(snap[1]), hooks)
                for inst in instruments:
                    core.add_instrument(inst)
                start = snap[0]
            cols = [journal_table.c.cmd_from, journal_table.c.cmd_to, journal_table.c.seq_from,
                    journal_table.c.seq_to, journal_table.c.commands]
            if verify_events:
                cols.append(journal_table.c.events)
            result = await conn.stream(
                select(*cols).where(journal_table.c.cmd_from >= start).order_by(journal_table.c.cmd_from))
            process = core.process
            async for row in result:
                if row[0] != core.cmd_count:
                    raise JournalError(f"journal batch starts at command {row[0]}, core at {core.cmd_count}")
                produced: list = []
                for cmd in codec.decode(row[4]):
                    produced.extend(process(cmd))
                if core.seq != row[3] or core.cmd_count != row[1]:
                    raise JournalError(f"replay diverged at batch {row[0]}: seq {core.seq} != {row[3]}")
                if verify_events and produced != codec.decode(row[5], row[2]):
                    raise JournalError(f"replayed events differ from the journal in batch {row[0]}")
        return core
