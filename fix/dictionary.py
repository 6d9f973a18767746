"""The FIX data dictionary and inbound message validation, to QuickFIX's rules.

``DataDictionary.load(base, *extensions)`` reads QuickFIX-format XML (later files extend the
earlier ones) and compiles per-message-type lookup tables once; ``validate(msg)`` then checks
a parsed :class:`fix.message.Message` with dictionary and set look-ups only.

Order of the checks (the first failure is the one reported), as in QuickFIX's
``Message::setString`` + ``DataDictionary::validate``:

1. Structure, in wire order: the first three tags are 8, 9, 35; no header field after a body
   or trailer field, no body field after a trailer field, nothing after CheckSum (10) → 14
   *Tag specified out of required order*. Inside a repeating group each instance starts with
   the delimiter and its fields follow the dictionary's order → 15 *Repeating group fields out
   of order* (QuickFIX/J's rule; with ``group_field_order=False`` instances are delimited as
   QuickFIX C++ does and never give 15). These are checked while the groups are being
   delimited, so the first such problem on the wire wins. (``fields_out_of_order=False``
   turns the 14 checks off, as QuickFIX's ValidateFieldsOutOfOrder=N.)
2. MsgType defined in the dictionary → 11 *Invalid MsgType* (no RefTagID).
3. Required fields → 1 *Required tag missing*: header (ascending tag), trailer, body
   (ascending tag), then each group instance's required fields (groups by ascending
   NumInGroup tag, depth first).
4. Field by field: the header (8, 9, 35, then ascending), the trailer (93, 89, then 10), the
   body's top-level fields (ascending tag), then the fields inside group instances. For each:
   same tag as the previous one → 13 *Tag appears more than once*; empty → 4 *Tag specified
   without a value* (unless ``fields_have_values=False``); syntax → 6 *Incorrect data format
   for value*; enumerated values → 5 *Value is incorrect (out of range) for this tag*; then,
   unless the tag is exempt (``unknown_fields=True`` exempts tags < 5000,
   ``user_defined_fields=False`` exempts tags >= 5000): tag defined → 0 *Invalid tag number*;
   for body fields, tag defined for this message type → 2 *Tag not defined for this message
   type*; NumInGroup equal to the number of instances → 16 *Incorrect NumInGroup count for
   repeating group*. (Beyond QuickFIX C++, which checks neither group contents' values nor
   header group counts, group members get the value checks and every NumInGroup is counted.)

Required fields inside a group instance: those marked required in the group, and the required
fields of its required components (QuickFIX C++ only enforces them when the group itself is
required; QuickFIX/J, like this module, whenever an instance is present).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fix.dictionary_xml import (
    ComponentRef,
    DictionaryError,
    DictionaryModel,
    FieldRef,
    GroupDef,
    Item,
    load_xml,
    parse_xml,
)
from fix.field_formats import CHECKS, MULTI_VALUE_TYPES, Check, bound_problem
from fix.message import Message

__all__ = [
    "DataDictionary",
    "DictionaryError",
    "FieldRow",
    "GroupSpec",
    "Reject",
    "REJECT_TEXT",
    "USER_DEFINED_MIN",
]

# SessionRejectReason (373) values.
INVALID_TAG_NUMBER = 0
REQUIRED_TAG_MISSING = 1
TAG_NOT_DEFINED_FOR_MESSAGE = 2
UNDEFINED_TAG = 3
TAG_WITHOUT_VALUE = 4
VALUE_INCORRECT = 5
INCORRECT_DATA_FORMAT = 6
COMPID_PROBLEM = 9
SENDINGTIME_ACCURACY = 10
INVALID_MSGTYPE = 11
TAG_APPEARS_MORE_THAN_ONCE = 13
TAG_OUT_OF_ORDER = 14
GROUP_FIELDS_OUT_OF_ORDER = 15
INCORRECT_NUMINGROUP = 16
OTHER = 99

#: QuickFIX's reference texts (``Values.h``) per SessionRejectReason.
REJECT_TEXT: dict[int, str] = {
    INVALID_TAG_NUMBER: "Invalid tag number",
    REQUIRED_TAG_MISSING: "Required tag missing",
    TAG_NOT_DEFINED_FOR_MESSAGE: "Tag not defined for this message type",
    UNDEFINED_TAG: "Undefined Tag",
    TAG_WITHOUT_VALUE: "Tag specified without a value",
    VALUE_INCORRECT: "Value is incorrect (out of range) for this tag",
    INCORRECT_DATA_FORMAT: "Incorrect data format for value",
    7: "Decryption problem",
    8: "Signature problem",
    COMPID_PROBLEM: "CompID problem",
    SENDINGTIME_ACCURACY: "SendingTime accuracy problem",
    INVALID_MSGTYPE: "Invalid MsgType",
    TAG_APPEARS_MORE_THAN_ONCE: "Tag appears more than once",
    TAG_OUT_OF_ORDER: "Tag specified out of required order",
    GROUP_FIELDS_OUT_OF_ORDER: "Repeating group fields out of order",
    INCORRECT_NUMINGROUP: "Incorrect NumInGroup count for repeating group",
    17: "Non Data Value includes Field Delimiter",
    OTHER: "Other",
}

#: First tag of the user-defined range (QuickFIX ``FIELD::UserMin``).
USER_DEFINED_MIN = 5000

# QuickFIX treats these as header/trailer fields whatever the dictionary says (Message.cpp).
_BUILTIN_HEADER = frozenset(
    {8, 9, 35, 49, 56, 115, 128, 90, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 52, 122, 212,
     213, 347, 369, 370, 1128, 1129, 627}
)
_BUILTIN_TRAILER = frozenset({93, 89, 10})
_HEADER_FIRST = {8: -3, 9: -2, 35: -1}
_TRAILER_POS = {93: -2, 89: -1, 10: 1 << 40}


@dataclass(slots=True, frozen=True)
class Reject:
    """Why a message fails validation: what a session-level Reject (35=3) carries.

    ``ref_tag`` is None when no RefTagID (371) applies (Invalid MsgType); note that tag 0
    is a real RefTagID (``371=0`` for an invalid tag number 0).
    """

    reason: int  # SessionRejectReason (373)
    ref_tag: int | None  # RefTagID (371)
    text: str  # Text (58), QuickFIX's wording
    ref_msg_type: str | None  # RefMsgType (372), None when the message had none


def _reject(reason: int, tag: int | None, msg_type: str | None) -> Reject:
    return Reject(reason, tag, REJECT_TEXT[reason], msg_type)


@dataclass(slots=True, frozen=True)
class GroupSpec:
    """A repeating group as it appears in one message type (or the header)."""

    count_tag: int  # the NumInGroup field
    delimiter: int  # first field of every instance
    fields: tuple[int, ...]  # member tags in dictionary order (nested NumInGroup tags included)
    order: dict[int, int]  # member tag → position in ``fields``
    required: tuple[int, ...]  # required inside each instance, ascending
    groups: dict[int, GroupSpec]  # nested groups by NumInGroup tag


@dataclass(slots=True, frozen=True)
class FieldRow:
    """One line of :meth:`DataDictionary.describe`."""

    depth: int  # 0 top level, 1 inside a group, 2 inside a nested group…
    tag: int
    name: str
    type: str
    required: bool
    group: bool  # a NumInGroup field; the group's fields follow at depth + 1


@dataclass(slots=True, frozen=True)
class _Layout:
    """Compiled lookup tables for one message type's body."""

    msg_type: str
    name: str
    admin: bool
    fields: tuple[int, ...]  # top-level tags in dictionary order
    allowed: frozenset[int]
    required: tuple[int, ...]  # ascending
    required_set: frozenset[int]
    groups: dict[int, GroupSpec]
    # Fast path: tag sequences of messages that passed the strictest validation → the value
    # checks (position, predicate) that a message of the same sequence still needs.
    plans: dict[tuple[int, ...], tuple[tuple[int, Check], ...]] = field(default_factory=dict)


@dataclass(slots=True)
class _Occurrence:
    """One NumInGroup field met on the wire and the instances that followed it."""

    spec: GroupSpec
    declared: bytes
    instances: list[tuple[list[tuple[int, bytes]], list[_Occurrence]]]


_NO_GROUPS: dict[int, GroupSpec] = {}
_MAX_SHAPES = 256  # per message type
#: Largest frame validated on the fast path; a longer one (rare: order entry sends ~200 bytes) takes
#: the full pass, so a memoised check's 4,096 cache keys hold at most this many bytes each.
_FAST_MAX_BYTES = 1024


class DataDictionary:
    """A compiled FIX dictionary: look-ups for the session/application and ``validate``."""

    def __init__(self, model: DictionaryModel) -> None:
        self.model = model
        self.begin_string = model.begin_string
        self._compile()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, base: str | Path, *extensions: str | Path) -> DataDictionary:
        """Load a QuickFIX-format dictionary; each extension file adds to / overrides it."""
        model = load_xml(base)
        for path in extensions:
            model.merge(load_xml(path))
        return cls(model)

    @classmethod
    def from_xml(cls, base: str | bytes, *extensions: str | bytes) -> DataDictionary:
        model = parse_xml(base)
        for text in extensions:
            model.merge(parse_xml(text))
        return cls(model)

    def to_xml(self) -> str:
        """The merged dictionary as one standalone QuickFIX-format XML document."""
        return self.model.to_xml()

    # ------------------------------------------------------------------ compile
    def _compile(self) -> None:
        model = self.model
        self._names = model.names()
        self._known: frozenset[int] = frozenset(model.fields)
        self._fmt: dict[int, Check] = {}
        self._enums: dict[int, frozenset[bytes]] = {}
        self._multi: frozenset[int] = frozenset(
            t for t, f in model.fields.items() if f.type in MULTI_VALUE_TYPES
        )
        for tag, fdef in model.fields.items():
            check = CHECKS.get(fdef.type)
            if check is not None:
                self._fmt[tag] = check
            if fdef.values:
                self._enums[tag] = frozenset(v.encode() for v in fdef.values)

        hdr_fields, _hdr_allowed, hdr_req, hdr_groups = self._expand(model.header, "header")
        trl_fields, _trl_allowed, trl_req, _trl_groups = self._expand(model.trailer, "trailer")
        self._header_fields = frozenset(hdr_fields)
        self._trailer_fields = frozenset(trl_fields)
        self._header_tags = self._header_fields | _BUILTIN_HEADER
        self._trailer_tags = self._trailer_fields | _BUILTIN_TRAILER
        self._header_required = tuple(sorted(hdr_req))
        self._trailer_required = tuple(sorted(trl_req))
        self._header_groups = hdr_groups

        combined = {tag: self._combined_check(tag) for tag in model.fields}
        combined = {tag: check for tag, check in combined.items() if check is not None}
        self._combined = combined
        self._numingroup = frozenset(t for t, f in model.fields.items() if f.type == "NUMINGROUP")

        self._layouts: dict[bytes, _Layout] = {}
        for mdef in model.messages.values():
            fields, allowed, req, groups = self._expand(mdef.items, f"message {mdef.msgtype}")
            self._layouts[mdef.msgtype.encode()] = _Layout(
                msg_type=mdef.msgtype,
                name=mdef.name,
                admin=mdef.msgcat == "admin",
                fields=tuple(fields),
                allowed=frozenset(allowed),
                required=tuple(sorted(req)),
                required_set=frozenset(req),
                groups=groups,
            )

    def _learn(self, layout: _Layout, fields: list[tuple[int, bytes]], shape: tuple[int, ...]) -> None:
        """Remember the value checks for a tag sequence that just passed strict validation.

        Whether a message is valid depends on its tag sequence (structure, groups, required and
        allowed tags, repeats) and on each value (presence, format, enum, group counts). For a
        sequence that passed once, the values are all that is left to check; NumInGroup values
        are pinned to the ones seen, so the instance counts cannot differ.
        """
        combined = self._combined
        numingroup = self._numingroup
        plan: list[tuple[int, Check]] = []
        for i, (tag, value) in enumerate(fields):
            if tag in numingroup:
                plan.append((i, value.__eq__))
            else:
                check = combined.get(tag)
                if check is not None:
                    plan.append((i, _memoised(check)))
        if len(layout.plans) >= _MAX_SHAPES:
            layout.plans.clear()
        layout.plans[shape] = tuple(plan)

    def _combined_check(self, tag: int) -> Check | None:
        """One predicate for format and enumerated values together (which one failed is
        worked out only when it fails)."""
        fmt = self._fmt.get(tag)
        values = self._enums.get(tag)
        if values is None:
            return fmt
        if tag in self._multi:
            def multi(value: bytes) -> bool:
                return (fmt is None or fmt(value)) and all(p in values for p in value.split(b" "))
            return multi
        if fmt is None or all(fmt(v) for v in values):
            return values.__contains__  # a listed value is then well formed too
        return lambda value: fmt(value) and value in values

    def _tag(self, name: str, where: str) -> int:
        tag = self._names.get(name)
        if tag is None:
            raise DictionaryError(f"{where}: field {name} is not defined in <fields>")
        return tag

    def _expand(
        self, items: list[Item], where: str
    ) -> tuple[list[int], set[int], set[int], dict[int, GroupSpec]]:
        """Flatten items (components inlined) into ordered tags, required tags and groups."""
        ordered: list[int] = []
        required: set[int] = set()
        groups: dict[int, GroupSpec] = {}
        self._walk(items, True, where, ordered, required, groups, depth=0)
        return ordered, set(ordered), required, groups

    def _walk(
        self,
        items: list[Item],
        ctx_required: bool,
        where: str,
        ordered: list[int],
        required: set[int],
        groups: dict[int, GroupSpec],
        depth: int,
    ) -> None:
        if depth > 50:
            raise DictionaryError(f"{where}: components nest too deeply (a cycle?)")
        for item in items:
            if isinstance(item, FieldRef):
                tag = self._tag(item.name, where)
                if tag not in ordered:
                    ordered.append(tag)
                if item.required and ctx_required:
                    required.add(tag)
            elif isinstance(item, ComponentRef):
                comp = self.model.components.get(item.name)
                if comp is None:
                    raise DictionaryError(f"{where}: component {item.name} is not defined")
                self._walk(
                    comp.items, ctx_required and item.required, f"{where}/{item.name}",
                    ordered, required, groups, depth + 1,
                )
            elif isinstance(item, GroupDef):
                tag = self._tag(item.name, where)
                if tag not in ordered:
                    ordered.append(tag)
                if item.required and ctx_required:
                    required.add(tag)
                groups[tag] = self._group(item, f"{where}/{item.name}", depth + 1)

    def _group(self, gdef: GroupDef, where: str, depth: int) -> GroupSpec:
        ordered: list[int] = []
        required: set[int] = set()
        nested: dict[int, GroupSpec] = {}
        # Inside an instance, a field marked required is required whatever the group's own flag.
        self._walk(gdef.items, True, where, ordered, required, nested, depth)
        if not ordered:
            raise DictionaryError(f"{where}: group has no fields")
        return GroupSpec(
            count_tag=self._tag(gdef.name, where),
            delimiter=ordered[0],
            fields=tuple(ordered),
            order={tag: i for i, tag in enumerate(ordered)},
            required=tuple(sorted(required)),
            groups=nested,
        )

    # ------------------------------------------------------------------ look-ups
    def has_msg_type(self, msg_type: str) -> bool:
        return msg_type.encode() in self._layouts

    def msg_types(self) -> list[str]:
        return [layout.msg_type for layout in self._layouts.values()]

    def message_name(self, msg_type: str) -> str | None:
        layout = self._layouts.get(msg_type.encode())
        return layout.name if layout else None

    def is_admin(self, msg_type: str) -> bool:
        layout = self._layouts.get(msg_type.encode())
        return layout is not None and layout.admin

    def is_header_field(self, tag: int) -> bool:
        return tag in self._header_tags

    def is_trailer_field(self, tag: int) -> bool:
        return tag in self._trailer_tags

    def is_field(self, tag: int) -> bool:
        return tag in self._known

    def field_name(self, tag: int) -> str | None:
        fdef = self.model.fields.get(tag)
        return fdef.name if fdef else None

    def field_tag(self, name: str) -> int | None:
        return self._names.get(name)

    def field_type(self, tag: int) -> str | None:
        fdef = self.model.fields.get(tag)
        return fdef.type if fdef else None

    def enum_values(self, tag: int) -> dict[str, str]:
        """Enumerated values of a field (value → description); empty if unrestricted."""
        fdef = self.model.fields.get(tag)
        return dict(fdef.values) if fdef else {}

    def message_fields(self, msg_type: str) -> tuple[int, ...]:
        """Top-level body tags of a message type, in dictionary order (components inlined)."""
        layout = self._layouts.get(msg_type.encode())
        return layout.fields if layout else ()

    def required_fields(self, msg_type: str) -> tuple[int, ...]:
        layout = self._layouts.get(msg_type.encode())
        return layout.required if layout else ()

    def is_msg_field(self, msg_type: str, tag: int) -> bool:
        layout = self._layouts.get(msg_type.encode())
        return layout is not None and tag in layout.allowed

    def describe(self, msg_type: str) -> list[FieldRow]:
        """A message type's body, components inlined, groups nested: one row per field.

        ``required`` is what validation enforces (a field of an optional component is not).
        Raises KeyError for an unknown MsgType.
        """
        mdef = self.model.messages.get(msg_type)
        if mdef is None:
            raise KeyError(msg_type)
        rows: list[FieldRow] = []
        self._describe(mdef.items, True, 0, rows)
        return rows

    def _describe(self, items: list[Item], ctx: bool, depth: int, rows: list[FieldRow]) -> None:
        for item in items:
            if isinstance(item, ComponentRef):
                comp = self.model.components[item.name]
                self._describe(comp.items, ctx and item.required, depth, rows)
                continue
            tag = self._names[item.name]
            fdef = self.model.fields[tag]
            is_group = isinstance(item, GroupDef)
            rows.append(FieldRow(depth, tag, fdef.name, fdef.type, item.required and ctx, is_group))
            if isinstance(item, GroupDef):
                self._describe(item.items, True, depth + 1, rows)

    def groups_for(self, msg_type: str) -> dict[int, GroupSpec]:
        """The message type's top-level repeating groups by NumInGroup tag (``"_header_"`` → header's)."""
        if msg_type == "_header_":
            return dict(self._header_groups)
        layout = self._layouts.get(msg_type.encode())
        return dict(layout.groups) if layout else {}

    def group_instances(self, msg: Message, count_tag: int) -> list[list[tuple[int, bytes]]]:
        """The instances of a top-level body group as lists of (tag, value), nested groups inline.

        Delimits instances the same way validation does; returns [] if the message type has no
        such group or the NumInGroup field is absent.
        """
        fields = msg.fields
        if len(fields) < 3:
            return []
        layout = self._layouts.get(fields[2][1])
        spec = layout.groups.get(count_tag) if layout else None
        if spec is None:
            return []
        for i, (tag, value) in enumerate(fields):
            if tag == count_tag:
                out: list[_Occurrence] = []
                self._parse_group(fields, i + 1, spec, value, out, None)
                if not out:
                    return []
                return [_flatten(inst) for inst in out[0].instances]
        return []

    def validator(
        self,
        fields_have_values: bool = True,
        user_defined_fields: bool = True,
        unknown_fields: bool = False,
        fields_out_of_order: bool = True,
        group_field_order: bool = True,
    ) -> Callable[[Message], Reject | None]:
        """``validate`` with one session's switches bound."""
        return functools.partial(
            self.validate,
            fields_have_values=fields_have_values,
            user_defined_fields=user_defined_fields,
            unknown_fields=unknown_fields,
            fields_out_of_order=fields_out_of_order,
            group_field_order=group_field_order,
        )

    # ------------------------------------------------------------------ validation
    def validate(
        self,
        msg: Message,
        fields_have_values: bool = True,
        user_defined_fields: bool = True,
        unknown_fields: bool = False,
        fields_out_of_order: bool = True,
        group_field_order: bool = True,
    ) -> Reject | None:
        """Check a whole inbound message (8, 9, 35 … 10 in wire order); None if it is valid.

        Switches (QuickFIX settings): ``fields_have_values`` = ValidateFieldsHaveValues,
        ``user_defined_fields`` = ValidateUserDefinedFields, ``unknown_fields`` =
        AllowUnknownMsgFields, ``fields_out_of_order`` = ValidateFieldsOutOfOrder,
        ``group_field_order`` = QuickFIX/J's ValidateUnorderedGroupFields (off: instances are
        delimited as QuickFIX C++ does — a new one starts at the delimiter or at a field the
        current instance already has — and the order inside an instance is free).

        Fast path: a message whose tag sequence already passed strict validation (per MsgType,
        a bounded cache) only has its values checked; every switch only relaxes checks, so that
        holds for any setting. Anything else takes the full pass, which reports the first
        failure in QuickFIX's order (and, if the message passes strictly, caches its sequence).
        """
        fields = msg.fields
        layout = None
        shape: tuple[int, ...] = ()
        if len(fields) > 3 and fields[2][0] == 35:
            layout = self._layouts.get(fields[2][1])
            if layout is not None:
                shape = msg.shape or tuple(map(_tag_key, fields))
                plan = layout.plans.get(shape)
                raw = msg.raw
                # no empty value: with a fast-parsed frame, no '=' is followed by SOH; and only a
                # frame of at most _FAST_MAX_BYTES: the memoised checks keep what they were given
                # as cache keys, so no value longer than that is ever held there
                if plan is not None and (raw is None or len(raw) <= _FAST_MAX_BYTES) and (
                        b"=\x01" not in raw if msg.shape else all(map(_value_key, fields))):
                    for i, check in plan:
                        if not check(fields[i][1]):
                            break
                    else:
                        return None
        result = self._validate_full(
            msg, fields_have_values, user_defined_fields, unknown_fields, fields_out_of_order,
            group_field_order,
        )
        if result is None and layout is not None and shape not in layout.plans:
            strict = (fields_have_values and user_defined_fields and not unknown_fields
                      and fields_out_of_order and group_field_order)
            if strict or self._validate_full(msg, True, True, False, True, True) is None:
                self._learn(layout, fields, shape)
        return result

    def _validate_full(
        self,
        msg: Message,
        fields_have_values: bool,
        user_defined_fields: bool,
        unknown_fields: bool,
        fields_out_of_order: bool,
        group_field_order: bool = True,
    ) -> Reject | None:
        fields = msg.fields
        n = len(fields)
        if n < 3 or fields[0][0] != 8 or fields[1][0] != 9 or fields[2][0] != 35:
            return self._bad_start(fields)
        mt_raw = fields[2][1]
        ref_mt = mt_raw.decode("latin-1") or None
        layout = self._layouts.get(mt_raw)
        body_groups = layout.groups if layout is not None else _NO_GROUPS
        header_groups = self._header_groups
        header_tags = self._header_tags
        trailer_tags = self._trailer_tags

        # 1. structure: split header/body/trailer in wire order and delimit groups.
        header: list[tuple[int, bytes]] = [fields[0], fields[1], fields[2]]
        body: list[tuple[int, bytes]] = []
        trailer: list[tuple[int, bytes]] = []
        hdr_occ: list[_Occurrence] = []
        body_occ: list[_Occurrence] = []
        state = 0  # 0 header, 1 body, 2 trailer
        after_checksum = False
        i = 3
        while i < n:
            item = fields[i]
            tag = item[0]
            i += 1
            if after_checksum and fields_out_of_order:
                return _reject(TAG_OUT_OF_ORDER, tag, ref_mt)
            if tag in header_tags:
                if state and fields_out_of_order:
                    return _reject(TAG_OUT_OF_ORDER, tag, ref_mt)
                header.append(item)
                spec = header_groups.get(tag)
                if spec is not None:
                    i, err = self._parse_group(fields, i, spec, item[1], hdr_occ, ref_mt, group_field_order)
                    if err is not None:
                        return err
            elif tag in trailer_tags:
                state = 2
                trailer.append(item)
                if tag == 10:
                    after_checksum = True
            else:
                if state == 2 and fields_out_of_order:
                    return _reject(TAG_OUT_OF_ORDER, tag, ref_mt)
                state = 1
                body.append(item)
                spec = body_groups.get(tag)
                if spec is not None:
                    i, err = self._parse_group(fields, i, spec, item[1], body_occ, ref_mt, group_field_order)
                    if err is not None:
                        return err

        # 2. message type.
        if layout is None:
            return _reject(INVALID_MSGTYPE, None, ref_mt)

        # 3. required fields.
        present = {t for t, _ in header}
        for tag in self._header_required:
            if tag not in present:
                return _reject(REQUIRED_TAG_MISSING, tag, ref_mt)
        present = {t for t, _ in trailer}
        for tag in self._trailer_required:
            if tag not in present:
                return _reject(REQUIRED_TAG_MISSING, tag, ref_mt)
        present = {t for t, _ in body}
        if not layout.required_set <= present:
            for tag in layout.required:
                if tag not in present:
                    return _reject(REQUIRED_TAG_MISSING, tag, ref_mt)
        if body_occ:
            body_occ.sort(key=_occ_key)
            err = _check_group_required(body_occ, ref_mt)
            if err is not None:
                return err

        # 4. field by field.
        fhv, udf, unk = fields_have_values, user_defined_fields, unknown_fields
        if len(msg._idx()) != n:  # a tag is repeated: 8, 9 or 35 may be among the rest
            header.sort(key=_header_key)
        else:  # 8, 9, 35 are first (checked above) and not repeated: the rest by tag
            header[3:] = sorted(header[3:], key=_tag_key)
        hdr_counts = _instance_counts(hdr_occ) if hdr_occ else None
        err = self._iterate(header, None, hdr_counts, fhv, udf, unk, ref_mt)
        if err is not None:
            return err
        if len(trailer) > 1:
            trailer.sort(key=_trailer_key)
        err = self._iterate(trailer, None, None, fhv, udf, unk, ref_mt)
        if err is not None:
            return err
        body.sort(key=_tag_key)
        counts = _instance_counts(body_occ) if body_occ else None
        err = self._iterate(body, layout.allowed, counts, fhv, udf, unk, ref_mt)
        if err is not None:
            return err
        for occs in (hdr_occ, body_occ):
            if occs:
                err = self._iterate_groups(occs, fhv, udf, unk, ref_mt)
                if err is not None:
                    return err
        return None

    def _iterate(
        self,
        items: list[tuple[int, bytes]],
        allowed: frozenset[int] | None,
        counts: dict[int, int] | None,
        fhv: bool,
        udf: bool,
        unk: bool,
        ref_mt: str | None,
    ) -> Reject | None:
        """Per-field checks over one sorted list; ``allowed`` is None for header/trailer."""
        combined = self._combined
        known = self._known
        last = None
        for tag, value in items:
            if tag == last:
                return _reject(TAG_APPEARS_MORE_THAN_ONCE, tag, ref_mt)
            last = tag
            if not value and fhv:
                return _reject(TAG_WITHOUT_VALUE, tag, ref_mt)
            check = combined.get(tag)
            if check is not None and not check(value):
                return self._value_reject(tag, value, ref_mt)
            if (unk and tag < USER_DEFINED_MIN) or (not udf and tag >= USER_DEFINED_MIN):
                continue
            if tag not in known:
                return _reject(INVALID_TAG_NUMBER, tag, ref_mt)
            if allowed is not None and tag not in allowed:
                return _reject(TAG_NOT_DEFINED_FOR_MESSAGE, tag, ref_mt)
            if counts is not None and tag in counts and int(value) != counts[tag]:
                return _reject(INCORRECT_NUMINGROUP, tag, ref_mt)
        return None

    def _iterate_groups(
        self, occs: list[_Occurrence], fhv: bool, udf: bool, unk: bool, ref_mt: str | None
    ) -> Reject | None:
        combined = self._combined
        for occ in sorted(occs, key=_occ_key):
            nested_specs = occ.spec.groups
            for inst_fields, nested in occ.instances:
                for tag, value in inst_fields:
                    if not value and fhv:
                        return _reject(TAG_WITHOUT_VALUE, tag, ref_mt)
                    check = combined.get(tag)
                    if check is not None and not check(value):
                        return self._value_reject(tag, value, ref_mt)
                    if tag in nested_specs and not ((unk and tag < USER_DEFINED_MIN) or (
                            not udf and tag >= USER_DEFINED_MIN)):
                        found = sum(len(o.instances) for o in nested if o.spec.count_tag == tag)
                        if int(value) != found:
                            return _reject(INCORRECT_NUMINGROUP, tag, ref_mt)
                if nested:
                    err = self._iterate_groups(nested, fhv, udf, unk, ref_mt)
                    if err is not None:
                        return err
        return None

    def _value_reject(self, tag: int, value: bytes, ref_mt: str | None) -> Reject:
        """A value failed its combined check: 6 if the syntax is wrong, else 5 (not an enum).

        A number that is well formed but breaks its type's bound (too many digits or characters,
        out of the type's range) is a 6 too, as QuickFIX answers an INT that does not fit 32
        bits; its Text then names the field and the limit instead of QuickFIX's bare wording."""
        fmt = self._fmt.get(tag)
        if fmt is not None and not fmt(value):
            fdef = self.model.fields[tag]
            problem = bound_problem(fdef.type, value)
            if problem is not None:
                text = f"{REJECT_TEXT[INCORRECT_DATA_FORMAT]}: {fdef.name} ({tag}) {problem}"
                return Reject(INCORRECT_DATA_FORMAT, tag, text, ref_mt)
            return _reject(INCORRECT_DATA_FORMAT, tag, ref_mt)
        return _reject(VALUE_INCORRECT, tag, ref_mt)

    def _parse_group(
        self,
        fields: list[tuple[int, bytes]],
        i: int,
        spec: GroupSpec,
        declared: bytes,
        out: list[_Occurrence],
        ref_mt: str | None,
        strict: bool = True,
    ) -> tuple[int, Reject | None]:
        """Delimit the instances following a NumInGroup field starting at index ``i``.

        ``strict``: every instance starts with the delimiter and follows the dictionary's order
        (else 15). Otherwise QuickFIX C++'s rule: a new instance starts at the delimiter or at a
        member the current instance already holds.
        """
        order = spec.order
        delimiter = spec.delimiter
        nested_specs = spec.groups
        instances: list[tuple[list[tuple[int, bytes]], list[_Occurrence]]] = []
        occ = _Occurrence(spec, declared, instances)
        out.append(occ)
        current: list[tuple[int, bytes]] | None = None
        nested: list[_Occurrence] = []
        prev = -1
        n = len(fields)
        while i < n:
            item = fields[i]
            tag = item[0]
            pos = order.get(tag)
            if pos is None:
                break
            if tag == delimiter or (not strict and (current is None or any(t == tag for t, _ in current))):
                current = [item]
                nested = []
                instances.append((current, nested))
                prev = pos
            else:
                if current is None or (strict and pos <= prev):
                    return i + 1, _reject(GROUP_FIELDS_OUT_OF_ORDER, tag, ref_mt)
                prev = pos
                current.append(item)
            i += 1
            sub = nested_specs.get(tag)
            if sub is not None:
                i, err = self._parse_group(fields, i, sub, item[1], nested, ref_mt, strict)
                if err is not None:
                    return i, err
        return i, None

    def _bad_start(self, fields: list[tuple[int, bytes]]) -> Reject:
        ref_mt = next((v.decode("latin-1") for t, v in fields if t == 35), None) or None
        for pos, want in enumerate((8, 9, 35)):
            if pos >= len(fields) or fields[pos][0] != want:
                if any(t == want for t, _ in fields):
                    return _reject(TAG_OUT_OF_ORDER, want, ref_mt)
                return _reject(REQUIRED_TAG_MISSING, want, ref_mt)
        raise AssertionError("unreachable")  # pragma: no cover


_MEMO: dict[Check, Check] = {}


def _memoised(check: Check) -> Check:
    """A value check with a C-level cache in front (checks are pure ``bytes -> bool``): repeated
    values (symbols, sides, a batch's shared timestamp) skip the Python/regex work."""
    if not isinstance(check, type(_memoised)):  # C callables (set.__contains__, bytes.__eq__)
        return check
    memo = _MEMO.get(check)
    if memo is None:
        memo = _MEMO[check] = functools.lru_cache(maxsize=4096)(check)
    return memo


_tag_key = operator.itemgetter(0)
_value_key = operator.itemgetter(1)


def _header_key(item: tuple[int, bytes]) -> int:
    return _HEADER_FIRST.get(item[0], item[0])


def _trailer_key(item: tuple[int, bytes]) -> int:
    return _TRAILER_POS.get(item[0], item[0])


def _occ_key(occ: _Occurrence) -> int:
    return occ.spec.count_tag


def _instance_counts(occs: list[_Occurrence]) -> dict[int, int]:
    """Instances per NumInGroup tag; a repeated NumInGroup adds up (as QuickFIX's group map)."""
    counts: dict[int, int] = {}
    for occ in occs:
        tag = occ.spec.count_tag
        counts[tag] = counts.get(tag, 0) + len(occ.instances)
    return counts


def _check_group_required(occs: Iterable[_Occurrence], ref_mt: str | None) -> Reject | None:
    for occ in occs:
        required = occ.spec.required
        for inst_fields, nested in occ.instances:
            if required:
                present = {t for t, _ in inst_fields}
                for tag in required:
                    if tag not in present:
                        return _reject(REQUIRED_TAG_MISSING, tag, ref_mt)
            if nested:
                err = _check_group_required(sorted(nested, key=_occ_key), ref_mt)
                if err is not None:
                    return err
    return None


def _flatten(instance: tuple[list[tuple[int, bytes]], list[_Occurrence]]) -> list[tuple[int, bytes]]:
    """An instance's fields with its nested groups' fields inserted after their NumInGroup."""
    inst_fields, nested = instance
    out: list[tuple[int, bytes]] = []
    k = 0
    for item in inst_fields:
        out.append(item)
        if k < len(nested) and nested[k].spec.count_tag == item[0]:
            for sub in nested[k].instances:
                out.extend(_flatten(sub))
            k += 1
    return out
