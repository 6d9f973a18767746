"""The QuickFIX XML data-dictionary format: parse, merge extensions, write back.

The model mirrors the file (fields, header, trailer, messages, components, groups) so a base
dictionary plus any number of extension files can be merged and exported as one standalone
dictionary in the structure QuickFIX, QuickFIX/J and QuickFIX/n load. Validation tables are
compiled from this model by :mod:`fix.dictionary`; nothing here runs per message.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path


class DictionaryError(ValueError):
    """A dictionary file is malformed or refers to something undefined."""


@dataclass(slots=True)
class FieldDef:
    number: int
    name: str
    type: str
    values: dict[str, str] = field(default_factory=dict)  # enum → description


@dataclass(slots=True)
class FieldRef:
    name: str
    required: bool


@dataclass(slots=True)
class ComponentRef:
    name: str
    required: bool


@dataclass(slots=True)
class GroupDef:
    name: str  # the NumInGroup field's name
    required: bool
    items: list[Item] = field(default_factory=list)


Item = FieldRef | ComponentRef | GroupDef


@dataclass(slots=True)
class MessageDef:
    name: str
    msgtype: str
    msgcat: str
    items: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class ComponentDef:
    name: str
    items: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class DictionaryModel:
    """One dictionary (possibly merged from several files), in file order."""

    type: str = "FIX"
    major: str = "4"
    minor: str = "4"
    servicepack: str = "0"
    fields: dict[int, FieldDef] = field(default_factory=dict)
    header: list[Item] = field(default_factory=list)
    trailer: list[Item] = field(default_factory=list)
    messages: dict[str, MessageDef] = field(default_factory=dict)
    components: dict[str, ComponentDef] = field(default_factory=dict)

    @property
    def begin_string(self) -> str:
        return f"{self.type}.{self.major}.{self.minor}"

    def names(self) -> dict[str, int]:
        return {f.name: f.number for f in self.fields.values()}

    # ------------------------------------------------------------------ merging
    def merge(self, other: DictionaryModel) -> None:
        """Extend this model with ``other``: later definitions add to and override earlier ones.

        Fields are matched by number (a redefinition replaces name/type and adds values),
        messages by MsgType, components by name, and items inside a message, component,
        group, header or trailer by name (a repeated item updates ``required``; a repeated
        group merges its items); anything new is appended.
        """
        by_name = self.names()
        for fdef in other.fields.values():
            existing = self.fields.get(fdef.number)
            clash = by_name.get(fdef.name)
            if clash is not None and clash != fdef.number:
                raise DictionaryError(
                    f"field name {fdef.name} is already tag {clash}, cannot also be {fdef.number}"
                )
            if existing is None:
                self.fields[fdef.number] = FieldDef(fdef.number, fdef.name, fdef.type, dict(fdef.values))
            else:
                by_name.pop(existing.name, None)
                existing.name = fdef.name
                existing.type = fdef.type or existing.type
                existing.values.update(fdef.values)
            by_name[fdef.name] = fdef.number
        _merge_items(self.header, other.header)
        _merge_items(self.trailer, other.trailer)
        for comp in other.components.values():
            mine = self.components.get(comp.name)
            if mine is None:
                self.components[comp.name] = ComponentDef(comp.name, _copy_items(comp.items))
            else:
                _merge_items(mine.items, comp.items)
        for msg in other.messages.values():
            mine_msg = self.messages.get(msg.msgtype)
            if mine_msg is None:
                self.messages[msg.msgtype] = MessageDef(
                    msg.name, msg.msgtype, msg.msgcat, _copy_items(msg.items)
                )
                msg_type_field = self.fields.get(35)
                if msg_type_field is not None and msg_type_field.values:
                    # MsgType (35) enumerates the message types: a new one must be listed too.
                    msg_type_field.values.setdefault(msg.msgtype, _snake(msg.name) or msg.msgtype)
            else:
                if msg.name:
                    mine_msg.name = msg.name
                if msg.msgcat:
                    mine_msg.msgcat = msg.msgcat
                _merge_items(mine_msg.items, msg.items)

    # ------------------------------------------------------------------ export
    def to_xml(self) -> str:
        """The whole model as a standalone QuickFIX-format dictionary."""
        root = ET.Element(
            "fix",
            {"type": self.type, "major": self.major, "minor": self.minor, "servicepack": self.servicepack},
        )
        _items_xml(ET.SubElement(root, "header"), self.header)
        messages = ET.SubElement(root, "messages")
        for msg in self.messages.values():
            node = ET.SubElement(
                messages, "message", {"name": msg.name, "msgtype": msg.msgtype, "msgcat": msg.msgcat}
            )
            _items_xml(node, msg.items)
        _items_xml(ET.SubElement(root, "trailer"), self.trailer)
        components = ET.SubElement(root, "components")
        for comp in self.components.values():
            _items_xml(ET.SubElement(components, "component", {"name": comp.name}), comp.items)
        fields = ET.SubElement(root, "fields")
        for fdef in sorted(self.fields.values(), key=lambda f: f.number):
            node = ET.SubElement(
                fields, "field", {"number": str(fdef.number), "name": fdef.name, "type": fdef.type}
            )
            for enum, description in fdef.values.items():
                ET.SubElement(node, "value", {"enum": enum, "description": description})
        ET.indent(root, space=" ")
        return ET.tostring(root, encoding="unicode") + "\n"


def _snake(name: str) -> str:
    """'NewOrderSingle' → 'NEW_ORDER_SINGLE' (the style of the enum descriptions)."""
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.upper())
    return "".join(out)


def _copy_items(items: list[Item]) -> list[Item]:
    out: list[Item] = []
    for item in items:
        if isinstance(item, GroupDef):
            out.append(GroupDef(item.name, item.required, _copy_items(item.items)))
        elif isinstance(item, ComponentRef):
            out.append(ComponentRef(item.name, item.required))
        else:
            out.append(FieldRef(item.name, item.required))
    return out


def _merge_items(target: list[Item], additions: list[Item]) -> None:
    for item in additions:
        match = next(
            (t for t in target if type(t) is type(item) and t.name == item.name),
            None,
        )
        if match is None:
            target.extend(_copy_items([item]))
            continue
        match.required = item.required
        if isinstance(match, GroupDef) and isinstance(item, GroupDef):
            _merge_items(match.items, item.items)


def _items_xml(parent: ET.Element, items: list[Item]) -> None:
    for item in items:
        required = "Y" if item.required else "N"
        if isinstance(item, FieldRef):
            ET.SubElement(parent, "field", {"name": item.name, "required": required})
        elif isinstance(item, ComponentRef):
            ET.SubElement(parent, "component", {"name": item.name, "required": required})
        else:
            node = ET.SubElement(parent, "group", {"name": item.name, "required": required})
            _items_xml(node, item.items)


# ---------------------------------------------------------------------- parsing
def _required(node: ET.Element) -> bool:
    return node.get("required", "N") in ("Y", "y")


def _parse_items(node: ET.Element, where: str) -> list[Item]:
    items: list[Item] = []
    for child in node:
        if child.tag not in ("field", "component", "group"):
            continue
        name = child.get("name") or ""
        if not name:
            raise DictionaryError(f"<{child.tag}> without a name in {where}")
        if child.tag == "field":
            items.append(FieldRef(name, _required(child)))
        elif child.tag == "component":
            items.append(ComponentRef(name, _required(child)))
        else:
            items.append(GroupDef(name, _required(child), _parse_items(child, f"{where}/{name}")))
    return items


def parse_xml(text: str | bytes, source: str = "<string>") -> DictionaryModel:
    """Parse one QuickFIX-format file (a full dictionary or an extension)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DictionaryError(f"{source}: not well-formed XML: {exc}") from exc
    if root.tag != "fix":
        raise DictionaryError(f"{source}: root element is <{root.tag}>, expected <fix>")
    model = DictionaryModel(
        type=root.get("type", "FIX"),
        major=root.get("major", ""),
        minor=root.get("minor", ""),
        servicepack=root.get("servicepack", "0"),
    )
    if not model.major or not model.minor:
        raise DictionaryError(f"{source}: <fix> needs major and minor attributes")
    for section in root:
        if section.tag == "fields":
            for node in section:
                if node.tag != "field":
                    continue
                number, name, ftype = node.get("number"), node.get("name"), node.get("type")
                if not number or not name or not ftype:
                    raise DictionaryError(f"{source}: <field> needs number, name and type ({ET.tostring(node)!r})")
                try:
                    tag = int(number)
                except ValueError as exc:
                    raise DictionaryError(f"{source}: field {name} has number {number!r}") from exc
                values: dict[str, str] = {}
                for value in node:
                    if value.tag != "value":
                        continue
                    enum = value.get("enum")
                    if enum is None:
                        raise DictionaryError(f"{source}: <value> without enum in field {name}")
                    values[enum] = value.get("description", "")
                if tag in model.fields:
                    raise DictionaryError(f"{source}: field {tag} defined twice")
                model.fields[tag] = FieldDef(tag, name, ftype, values)
        elif section.tag == "header":
            model.header.extend(_parse_items(section, "header"))
        elif section.tag == "trailer":
            model.trailer.extend(_parse_items(section, "trailer"))
        elif section.tag == "messages":
            for node in section:
                if node.tag != "message":
                    continue
                msgtype = node.get("msgtype")
                if not msgtype:
                    raise DictionaryError(f"{source}: <message> without msgtype")
                model.messages[msgtype] = MessageDef(
                    node.get("name", ""), msgtype, node.get("msgcat", ""), _parse_items(node, msgtype)
                )
        elif section.tag == "components":
            for node in section:
                if node.tag != "component":
                    continue
                name = node.get("name")
                if not name:
                    raise DictionaryError(f"{source}: <component> without a name")
                model.components[name] = ComponentDef(name, _parse_items(node, name))
    return model


def load_xml(path: str | Path) -> DictionaryModel:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DictionaryError(f"{path}: {exc.strerror}") from exc
    return parse_xml(data, str(path))
