"""The echo application the certification suite expects (see shared/certification/README.md).

NewOrderSingle (D) and SecurityDefinition (d) come straight back as new messages of ours (new
header, body fields in ascending tag order, repeating groups kept whole after their NumInGroup
field, values byte for byte); a PossResend (97=Y) NewOrderSingle whose ClOrdID this logon already
saw is dropped; any other application message gets BusinessMessageReject 380=3.
"""

from __future__ import annotations

from fix.application import Application, UnsupportedMessageType
from fix.message import Message
from fix.session import HEADER_TAGS, Session

ECHO_TYPES = frozenset({b"D", b"d"})
_SKIP = HEADER_TAGS | {10, 93, 89}


def _first(item: tuple[int, bytes]) -> int:
    return item[0]


class EchoApplication(Application):
    def __init__(self) -> None:
        self._seen: dict[str, set[bytes]] = {}

    def on_logon(self, session: Session) -> None:
        self._seen[session.key] = set()

    def on_logout(self, session: Session, reason: str) -> None:
        self._seen.pop(session.key, None)

    def from_app(self, session: Session, msg: Message) -> None:
        get = msg._idx().get
        msg_type = get(35)
        if msg_type not in ECHO_TYPES:
            raise UnsupportedMessageType()
        if msg_type == b"D":
            cl_ord_id = get(11)
            seen = self._seen.setdefault(session.key, set())
            if get(97) == b"Y" and cl_ord_id in seen:
                return
            seen.add(cl_ord_id)
        body = [f for f in msg.fields if f[0] not in _SKIP]
        session.send_app_fields(msg_type, _sorted_body(body, session, msg_type))


def _sorted_body(body: list[tuple[int, bytes]], session: Session, msg_type: bytes) -> list[tuple[int, bytes]]:
    """Ascending tag order; a repeating group's instances stay whole right after their count field."""
    tags = [t for t, _ in body]
    if len(set(tags)) == len(tags):
        body.sort(key=_first)
        return body
    dd = session.dictionary
    groups = dd.groups_for(msg_type.decode()) if dd is not None and hasattr(dd, "groups_for") else {}
    blocks: list[tuple[int, list[tuple[int, bytes]]]] = []
    i = 0
    n = len(body)
    while i < n:
        tag, value = body[i]
        spec = groups.get(tag)
        block = [body[i]]
        i += 1
        if spec is not None:
            members = _all_members(spec)
            while i < n and body[i][0] in members:
                block.append(body[i])
                i += 1
        blocks.append((tag, block))
    blocks.sort(key=_first)
    return [f for _, block in blocks for f in block]


def _all_members(spec) -> set[int]:
    out = set(spec.fields)
    for sub in spec.groups.values():
        out |= _all_members(sub)
    return out
