"""``venue dictionary``: export the venue's FIX dialect, show a message's fields, check a message."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import config

CONFIG_DIR = Path(config.__file__).resolve().parent
#: The standard FIX 4.4 dictionary shipped with the venue (a copy of QuickFIX's FIX44.xml).
DEFAULT_BASE = CONFIG_DIR / "FIX44.xml"
#: The venue's own additions on top of it.
VENUE_EXTENSION = CONFIG_DIR / "venue-fix44.xml"


def load_venue_dictionary(base: Path | None = None, extensions: tuple[Path, ...] | None = None):
    """The dictionary the venue's acceptor validates against (base + venue extension)."""
    from fix.dictionary import DataDictionary

    exts = (VENUE_EXTENSION,) if extensions is None else extensions
    return DataDictionary.load(base or DEFAULT_BASE, *exts)


_path = click.Path(exists=True, dir_okay=False, path_type=Path)
_base_option = click.option(
    "--base", type=_path, default=None,
    help=f"Base QuickFIX dictionary [default: {DEFAULT_BASE}].",
)
_extension_option = click.option(
    "--extension", "extensions", type=_path, multiple=True,
    help="Extension file(s) merged over the base, in order [default: config/venue-fix44.xml].",
)
_plain_option = click.option("--plain", is_flag=True, help="The base alone, without any extension.")


def _load(base: Path | None, extensions: tuple[Path, ...], plain: bool):
    from fix.dictionary import DictionaryError

    try:
        return load_venue_dictionary(base, () if plain else (extensions or None))
    except DictionaryError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def dictionary() -> None:
    """The venue's FIX 4.4 dictionary (QuickFIX XML)."""


@dictionary.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@_base_option
@_extension_option
@_plain_option
def export_cmd(file: Path, base: Path | None, extensions: tuple[Path, ...], plain: bool) -> None:
    """Write the merged dictionary to FILE ('-' for stdout) as one standalone QuickFIX XML file."""
    dd = _load(base, extensions, plain)
    text = '<?xml version="1.0" encoding="UTF-8"?>\n' + dd.to_xml()
    if str(file) == "-":
        sys.stdout.write(text)
        return
    file.write_text(text, encoding="utf-8")
    click.echo(
        f"wrote {file}: {len(dd.msg_types())} messages, {len(dd.model.fields)} fields, "
        f"{len(dd.model.components)} components ({dd.begin_string})",
        err=True,
    )


@dictionary.command("show")
@click.argument("msg_type")
@_base_option
@_extension_option
@_plain_option
def show_cmd(msg_type: str, base: Path | None, extensions: tuple[Path, ...], plain: bool) -> None:
    """Print the fields of a message, by MsgType (D) or name (NewOrderSingle)."""
    dd = _load(base, extensions, plain)
    wanted = msg_type
    if not dd.has_msg_type(wanted):
        by_name = {dd.message_name(t): t for t in dd.msg_types()}
        if wanted not in by_name:
            raise click.ClickException(f"no message {msg_type!r} in the dictionary")
        wanted = by_name[wanted]
    kind = "admin" if dd.is_admin(wanted) else "app"
    click.echo(f"{dd.message_name(wanted)} (35={wanted}, {kind})")
    click.echo(f"{'tag':>6}  {'name':<40} {'type':<20} required")
    for row in dd.describe(wanted):
        indent = "  " * row.depth
        name = indent + row.name + (" [group]" if row.group else "")
        click.echo(f"{row.tag:>6}  {name:<40} {row.type:<20} {'Y' if row.required else 'N'}")
        values = dd.enum_values(row.tag)
        if values and len(values) <= 12:
            listed = ", ".join(f"{k}={v}" for k, v in values.items())
            click.echo(f"{'':>6}  {indent}  values: {listed}")


@dictionary.command("check")
@click.argument("message")
@_base_option
@_extension_option
@_plain_option
@click.option("--no-values-check", is_flag=True, help="Allow empty values (ValidateFieldsHaveValues=N).")
def check_cmd(message: str, base: Path | None, extensions: tuple[Path, ...], plain: bool,
              no_values_check: bool) -> None:
    """Validate one message given as tag=value pairs separated by '|' or SOH (8, 9, 35 … 10).

    Prints OK, or the Reject the acceptor would send; exits 1 if rejected.
    """
    from fix.message import Message

    dd = _load(base, extensions, plain)
    pairs: list[tuple[int, bytes]] = []
    for part in message.replace("\x01", "|").split("|"):
        if not part:
            continue
        tag, sep, value = part.partition("=")
        if not sep:
            raise click.ClickException(f"field without '=': {part!r}")
        try:
            pairs.append((int(tag), value.encode("latin-1")))
        except ValueError as exc:
            raise click.ClickException(f"tag is not a number: {tag!r}") from exc
    rej = dd.validate(Message(pairs), fields_have_values=not no_values_check)
    if rej is None:
        click.echo("OK")
        return
    ref = f" 371={rej.ref_tag}" if rej.ref_tag is not None else ""
    click.echo(f"Reject 373={rej.reason}{ref} 372={rej.ref_msg_type or ''} 58={rej.text}")
    sys.exit(1)


commands = [dictionary]
