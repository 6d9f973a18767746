"""The echo application the certification suite expects (see certification/README.md).

NewOrderSingle (D) and SecurityDefinition (d) come straight back as new messages of ours (new
header, body fields in ascending tag order, repeating groups kept whole after their NumInGroup
field, values byte for byte); a PossResend (97=Y) NewOrderSingle whose ClOrdID this logon already
saw is dropped; any other application message gets BusinessMessageReject 380=3.

The echo keeps the inbound header's other fields (PossResend 97, routing 115/128...), as QuickFIX's
test acceptor does: it sends the message itself back, and QuickFIX's ``Session::send`` only rewrites
8/9/34/35/49/52/56 and removes PossDupFlag (43) and OrigSendingTime (122).
"""

from __future__ import annotations

import operator

from fix.application import Application, UnsupportedMessageType
from fix.message import Message
from fix.session import HEADER_TAGS, Session

ECHO_TYPES = frozenset({b"D", b"d"})
_SKIP = HEADER_TAGS | {10, 93, 89}
_KEPT_HEADER = HEADER_TAGS - {8, 9, 34, 35, 43, 49, 52, 56, 122}
"""Inbound header fields the echo carries over (QuickFIX's session rewrites or drops the rest)."""


_first = operator.itemgetter(0)


class EchoApplication(Application):
    def __init__(self) -> None:
        self._seen: dict[str, set[bytes]] = {}
        self._groups: dict[bytes, dict[int, set[int]]] = {}  # per MsgType (one dictionary per acceptor)
        self._orders: dict[bytes, dict[tuple[int, ...], operator.itemgetter | None]] = {}
        """Per MsgType: inbound tag sequence -> picks the echo's body parts from ``raw.split(SOH)`` in order."""

    def on_logon(self, session: Session) -> None:
        self._seen[session.key] = set()

    def on_logout(self, session: Session, reason: str) -> None:
        self._seen.pop(session.key, None)

    def from_app(self, session: Session, msg: Message) -> None:
        index = msg._index or msg._idx()
        get = index.get
        msg_type = get(35)
        if msg_type not in ECHO_TYPES:
            raise UnsupportedMessageType()
        if msg_type == b"D":
            cl_ord_id = get(11)
            seen = self._seen.get(session.key)
            if seen is None:
                seen = self._seen[session.key] = set()
            elif get(97) == b"Y" and cl_ord_id in seen:
                return
            seen.add(cl_ord_id)
        if not _KEPT_HEADER.isdisjoint(index):
            header = [f for f in msg.fields if f[0] in _KEPT_HEADER]
            session.send_app_fields(msg_type, self._body(session, msg_type, msg, index), header)
            return
        shape = msg.shape
        if shape is not None:  # raw splits into one canonical tag=value part per field
            orders = self._orders.get(msg_type)
            if orders is None:
                orders = self._orders[msg_type] = {}
            pick = orders.get(shape, _MISSING)
            if pick is _MISSING:
                if len(orders) > 4096:
                    orders.clear()
                pick = orders[shape] = self._order(session, msg_type, shape)
            if pick is not None:
                session.send_app_encoded(msg_type, b"\x01".join(pick(msg.raw.split(b"\x01"))) + b"\x01")
                return
        session.send_app_fields(msg_type, self._body(session, msg_type, msg, index))

    def _body(self, session: Session, msg_type: bytes, msg: Message, index: dict) -> list[tuple[int, bytes]]:
        """The echo's body: ascending tag order, each repeating group whole after its count."""
        body = [f for f in msg.fields if f[0] not in _SKIP]
        groups = self._groups.get(msg_type)
        if groups is None:
            groups = self._groups[msg_type] = _groups(session.dictionary, msg_type)
        if groups and not groups.keys().isdisjoint(index):
            return _with_groups(body, groups)
        body.sort(key=_first)
        return body

    def _order(self, session: Session, msg_type: bytes, shape: tuple[int, ...]) -> operator.itemgetter | None:
        """The same ordering as the general path, computed once per tag sequence on indices."""
        groups = self._groups.get(msg_type)
        if groups is None:
            groups = self._groups[msg_type] = _groups(session.dictionary, msg_type)
        body = [(t, i) for i, t in enumerate(shape) if t not in _SKIP]
        if groups and not groups.keys().isdisjoint(shape):
            body = _with_groups(body, groups)  # type: ignore[arg-type]
        else:
            body.sort(key=_first)
        if len(body) < 2:  # itemgetter of one index returns the item, not a tuple
            return None
        return operator.itemgetter(*[i for _, i in body])


_MISSING = object()


def _sorted_body(body: list[tuple[int, bytes]], session: Session, msg_type: bytes) -> list[tuple[int, bytes]]:
    """Ascending tag order; a repeating group's instances stay whole right after their count field."""
    groups = _groups(session.dictionary, msg_type)
    if groups and any(t in groups for t, _ in body):
        return _with_groups(body, groups)
    body.sort(key=_first)
    return body


def _with_groups(body: list[tuple[int, bytes]], groups: dict[int, set[int]]) -> list[tuple[int, bytes]]:
    blocks: list[tuple[int, list[tuple[int, bytes]]]] = []
    i = 0
    n = len(body)
    while i < n:
        tag = body[i][0]
        block = [body[i]]
        i += 1
        members = groups.get(tag)
        if members is not None:
            while i < n and body[i][0] in members:
                block.append(body[i])
                i += 1
        blocks.append((tag, block))
    blocks.sort(key=_first)
    return [f for _, block in blocks for f in block]


_GROUP_CACHE: dict[tuple[int, bytes], dict[int, set[int]]] = {}


def _groups(dd, msg_type: bytes) -> dict[int, set[int]]:
    """NumInGroup tag -> every tag that may appear inside that group (nested groups included)."""
    if dd is None or not hasattr(dd, "groups_for"):
        return {}
    key = (id(dd), msg_type)
    cached = _GROUP_CACHE.get(key)
    if cached is None:
        cached = {count: _all_members(spec) for count, spec in dd.groups_for(msg_type.decode()).items()}
        _GROUP_CACHE[key] = cached
    return cached


def _all_members(spec) -> set[int]:
    out = set(spec.fields)
    for sub in spec.groups.values():
        out |= _all_members(sub)
    return out
