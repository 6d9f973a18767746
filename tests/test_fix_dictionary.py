"""fix.dictionary: QuickFIX-format dictionaries, merging, export, and validation with QuickFIX's
SessionRejectReason, RefTagID and texts, in QuickFIX's order of checks."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fix.dictionary import REJECT_TEXT, DataDictionary, DictionaryError, Reject
from fix.message import Message, encode, parse_fields

CHECKOUT = Path(__file__).resolve().parents[1]
BASE = CHECKOUT / "config" / "FIX44.xml"
VENUE_EXT = CHECKOUT / "config" / "venue-fix44.xml"
CERT_DIR = CHECKOUT.parent / "shared" / "certification" / "quickfix-fix44"
T = "20260101-12:00:00"
HDR = f"35={{mt}}|34=2|49=TW44|52={T}|56=ISLD"
NOS = f"11=ID|21=1|38=200|40=1|54=1|55=INTC|60={T}"


@pytest.fixture(scope="module")
def dd() -> DataDictionary:
    return DataDictionary.load(BASE)


@pytest.fixture(scope="module")
def venue() -> DataDictionary:
    return DataDictionary.load(BASE, VENUE_EXT)


def frame(text: str) -> Message:
    """A complete frame from 'tag=value|…' (header from 35 on, no 8/9/10): real BodyLength/CheckSum."""
    pairs = []
    for part in text.split("|"):
        tag, _, value = part.partition("=")
        pairs.append((int(tag), value.encode()))
    return Message(parse_fields(encode(pairs)))


def raw(text: str) -> Message:
    """Fields exactly as written (8, 9, 10 included or not), for structure tests."""
    pairs = []
    for part in text.split("|"):
        tag, _, value = part.partition("=")
        pairs.append((int(tag), value.encode()))
    return Message(pairs)


def app(mt: str, body: str) -> Message:
    return frame(HDR.format(mt=mt) + "|" + body)


def with_field(body: str, field: str) -> str:
    """``body`` with ``field`` replacing the field of the same tag, or appended."""
    tag = field.split("=", 1)[0]
    parts = body.split("|")
    for i, part in enumerate(parts):
        if part.split("=", 1)[0] == tag:
            parts[i] = field
            return "|".join(parts)
    return body + "|" + field


def rej(reason: int, tag: int | None, mt: str | None) -> Reject:
    return Reject(reason, tag, REJECT_TEXT[reason], mt)


# ---------------------------------------------------------------- one test per reason


@pytest.mark.parametrize("tag", [999, 0, -1, 5000])
def test_unknown_tag_is_invalid_tag_number_373_0(dd: DataDictionary, tag: int) -> None:
    assert dd.validate(app("0", f"{tag}=HI")) == rej(0, tag, "0")


def test_user_defined_tag_is_not_checked_when_user_defined_validation_is_off(dd: DataDictionary) -> None:
    msg = app("0", "5000=HI")
    assert dd.validate(msg, user_defined_fields=False) is None
    assert dd.validate(app("0", "4999=HI"), user_defined_fields=False) == rej(0, 4999, "0")


def test_allow_unknown_fields_exempts_tags_below_the_user_defined_range(dd: DataDictionary) -> None:
    assert dd.validate(app("0", "999=HI"), unknown_fields=True) is None
    assert dd.validate(app("0", "5001=HI"), unknown_fields=True) == rej(0, 5001, "0")


def test_required_header_tag_missing_373_1(dd: DataDictionary) -> None:
    assert dd.validate(frame(f"35=0|34=2|49=TW44|52={T}")) == rej(1, 56, "0")


def test_required_body_tag_missing_reports_lowest_missing_tag(dd: DataDictionary) -> None:
    # 14b: ClOrdID (11) and OrderQty-less NewOrderSingle, fields shuffled
    msg = frame(f"35=D|49=TW44|34=3|56=ISLD|52={T}|40=1|60={T}|54=1|21=3")
    assert dd.validate(msg) == rej(1, 11, "D")


def test_required_trailer_checksum_missing(dd: DataDictionary) -> None:
    assert dd.validate(raw(f"8=FIX.4.4|9=5|35=0|34=2|49=A|52={T}|56=B")) == rej(1, 10, "0")


def test_required_field_inside_group_instance_missing(dd: DataDictionary) -> None:
    # NewOrderList: each NoOrders (73) instance needs ListSeqNo (67) and Side (54)
    msg = app("E", "66=L1|68=1|394=1|73=1|11=A|54=1")
    assert dd.validate(msg) == rej(1, 67, "E")
    ok = app("E", "66=L1|68=1|394=1|73=1|11=A|67=1|55=X|54=1")
    assert dd.validate(ok) is None


def test_tag_not_defined_for_message_type_373_2(dd: DataDictionary) -> None:
    assert dd.validate(app("0", "55=MSFT")) == rej(2, 55, "0")


def test_group_member_outside_its_group_is_not_defined_for_message(dd: DataDictionary) -> None:
    assert dd.validate(app("D", NOS + "|448=TRADER")) == rej(2, 448, "D")


def test_tag_without_value_373_4(dd: DataDictionary) -> None:
    assert dd.validate(frame(f"35=0|34=2|49=TW44|52={T}|56=")) == rej(4, 56, "0")


def test_empty_string_value_passes_when_fields_have_values_is_off(dd: DataDictionary) -> None:
    msg = frame(f"35=0|34=2|49=TW44|52={T}|56=ISLD|112=")
    assert dd.validate(msg) == rej(4, 112, "0")
    assert dd.validate(msg, fields_have_values=False) is None


def test_empty_value_still_needs_valid_format_when_fields_have_values_is_off(dd: DataDictionary) -> None:
    # QuickFIX only skips the presence check: an empty CHAR is still not one character
    msg = app("D", NOS + "|59=")
    assert dd.validate(msg, fields_have_values=False) == rej(6, 59, "D")


def test_value_not_in_enumeration_373_5(dd: DataDictionary) -> None:
    assert dd.validate(app("D", NOS.replace("40=1", "40=Z"))) == rej(5, 40, "D")


def test_multiple_value_string_checks_every_item(dd: DataDictionary) -> None:
    assert dd.validate(app("D", NOS + "|18=6 E")) is None  # ExecInst 18: two listed values
    assert dd.validate(app("D", NOS + "|18=6 ~")) == rej(5, 18, "D")


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("38=+200.00", 38),  # QTY with a leading '+' (14f)
        ("44=1,5", 44),  # PRICE
        ("44=1e5", 44),
        ("110=-", 110),  # QTY: sign without digits
        ("54=12", 54),  # CHAR of two characters: format before enum
        ("660=abc", 660),  # INT with enumerated values: format before enum
        ("60=2026-01-01 12:00:00", 60),  # UTCTIMESTAMP
        ("60=20261301-12:00:00", 60),  # month 13
        ("60=20260101-24:00:00", 60),
        ("60=20260101-12:00:00.1234567890", 60),  # more than 9 fraction digits
        ("75=2026011", 75),  # LOCALMKTDATE
        ("75=20260132", 75),
        ("200=202613", 200),  # MONTHYEAR
        ("200=2026w1", 200),
        ("114=X", 114),  # BOOLEAN
        ("432=20260230X", 432),  # ExpireDate LOCALMKTDATE
        ("126=20260101-12:00", 126),  # ExpireTime UTCTIMESTAMP
        ("223=1.2.3", 223),  # CouponRate PERCENTAGE
        ("211=abc", 211),  # PegOffsetValue FLOAT
        ("12=--1", 12),  # Commission AMT
    ],
)
def test_incorrect_data_format_373_6(dd: DataDictionary, field: str, bad: int) -> None:
    assert dd.validate(app("D", with_field(NOS, field))) == rej(6, bad, "D")


@pytest.mark.parametrize(
    "field",
    ["38=200", "38=200.", "38=.5", "38=-1.25", "60=20260101-12:00:00.123", "60=20260101-23:59:60",
     "60=20260101-12:00:00.123456789", "75=20261231", "200=202612", "200=20261215", "200=202612w4",
     "114=Y", "12=0.0001"],
)
def test_well_formed_values_pass(dd: DataDictionary, field: str) -> None:
    assert dd.validate(app("D", with_field(NOS, field))) is None


def test_header_seqnum_and_bodylength_formats(dd: DataDictionary) -> None:
    assert dd.validate(frame(f"35=0|34=x2|49=TW44|52={T}|56=ISLD")) == rej(6, 34, "0")
    assert dd.validate(raw(f"8=FIX.4.4|9=abc|35=0|34=2|49=A|52={T}|56=B|10=000")) == rej(6, 9, "0")


def test_repeated_tag_373_13(dd: DataDictionary) -> None:
    msg = app("D", f"11=ID|21=1|40=1|40=2|54=1|38=200.00|55=INTC|60={T}")  # 14h
    assert dd.validate(msg) == rej(13, 40, "D")


def test_repeated_header_tag_373_13(dd: DataDictionary) -> None:
    msg = frame(f"35=0|34=2|49=TW44|49=TW44|52={T}|56=ISLD")
    assert dd.validate(msg) == rej(13, 49, "0")


def test_header_field_after_body_field_373_14(dd: DataDictionary) -> None:
    msg = frame(f"35=D|34=2|49=TW44|52={T}|11=ID|56=ISLD|21=1|38=1|40=1|54=1|55=X|60={T}")
    assert dd.validate(msg) == rej(14, 56, "D")


def test_out_of_order_header_is_accepted_when_order_check_is_off(dd: DataDictionary) -> None:
    msg = frame(f"35=D|34=2|49=TW44|52={T}|11=ID|56=ISLD|21=1|38=1|40=1|54=1|55=X|60={T}")
    assert dd.validate(msg, fields_out_of_order=False) is None


def test_field_after_checksum_373_14(dd: DataDictionary) -> None:
    msg = raw(f"8=FIX.4.4|9=5|35=0|34=2|49=A|52={T}|56=B|10=000|112=X")
    assert dd.validate(msg) == rej(14, 112, "0")


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        (f"9=5|8=FIX.4.4|35=0|34=2|49=A|52={T}|56=B|10=000", 8),
        (f"8=FIX.4.4|35=0|9=5|34=2|49=A|52={T}|56=B|10=000", 9),
        (f"8=FIX.4.4|9=5|34=2|35=0|49=A|52={T}|56=B|10=000", 35),
    ],
)
def test_first_three_tags_not_8_9_35_373_14(dd: DataDictionary, text: str, tag: int) -> None:
    assert dd.validate(raw(text)) == rej(14, tag, "0")


def test_missing_bodylength_is_required_tag_missing(dd: DataDictionary) -> None:
    assert dd.validate(raw(f"8=FIX.4.4|35=0|34=2|49=A|52={T}|56=B|10=000")) == rej(1, 9, "0")


def test_validator_binds_one_sessions_switches(dd: DataDictionary) -> None:
    msg = frame(f"35=0|34=2|49=TW44|52={T}|56=ISLD|112=")
    assert dd.validator(fields_have_values=False)(msg) is None
    assert dd.validator()(msg) == rej(4, 112, "0")


def test_group_field_before_delimiter_373_15(dd: DataDictionary) -> None:
    msg = app("D", NOS + "|453=1|447=D|448=A|452=1")
    assert dd.validate(msg) == rej(15, 447, "D")


def test_group_fields_out_of_dictionary_order_373_15(dd: DataDictionary) -> None:
    msg = app("D", NOS + "|453=1|448=A|452=1|447=D")
    assert dd.validate(msg) == rej(15, 447, "D")


def test_group_instance_without_delimiter_373_15(dd: DataDictionary) -> None:
    msg = app("D", NOS + "|453=2|448=A|447=D|452=1|447=D|452=3")
    assert dd.validate(msg) == rej(15, 447, "D")


def test_unordered_group_fields_follow_quickfix_cpp_when_group_order_check_is_off(dd: DataDictionary) -> None:
    loose = {"group_field_order": False}
    assert dd.validate(app("D", NOS + "|453=1|448=A|452=1|447=D"), **loose) is None
    # a repeated member opens a new instance: two instances for a count of 2
    assert dd.validate(app("D", NOS + "|453=2|448=A|447=D|452=1|447=D|452=3"), **loose) is None
    # a member before the delimiter opens an instance of its own: 2 instances for a count of 1
    assert dd.validate(app("D", NOS + "|453=1|447=D|448=A|452=1"), **loose) == rej(16, 453, "D")


def test_numingroup_count_mismatch_373_16(dd: DataDictionary) -> None:
    two = "448=A|447=D|452=1|448=B|447=D|452=3"
    assert dd.validate(app("D", NOS + "|453=2|" + two)) is None
    assert dd.validate(app("D", NOS + "|453=3|" + two)) == rej(16, 453, "D")
    assert dd.validate(app("D", NOS + "|453=1|" + two)) == rej(16, 453, "D")


def test_repeated_numingroup_counts_all_its_instances_like_quickfix(dd: DataDictionary) -> None:
    one, other = "448=A|447=D|452=1", "448=B|447=D|452=3"
    msg = app("D", NOS + f"|453=1|{one}|58=x|453=1|{other}")
    assert dd.validate(msg) == rej(16, 453, "D")  # 2 instances under the first 453
    msg = app("D", NOS + f"|453=2|{one}|58=x|453=1|{other}")
    assert dd.validate(msg) == rej(13, 453, "D")


def test_nested_group_count_mismatch_373_16(dd: DataDictionary) -> None:
    ok = "453=1|448=A|447=D|452=1|802=2|523=x|803=1|523=y|803=2"
    assert dd.validate(app("D", NOS + "|" + ok)) is None
    assert dd.validate(app("D", NOS + "|" + ok.replace("802=2", "802=3"))) == rej(16, 802, "D")


def test_bad_value_inside_group_instance(dd: DataDictionary) -> None:
    assert dd.validate(app("D", NOS + "|453=1|448=A|447=D|452=x")) == rej(6, 452, "D")


def test_invalid_msgtype_373_11_without_ref_tag(dd: DataDictionary) -> None:
    assert dd.validate(frame(f"35=*|34=2|49=TW44|52={T}|56=ISLD")) == rej(11, None, "*")


# ---------------------------------------------------------------- which check wins


def test_structure_is_checked_before_required_fields(dd: DataDictionary) -> None:
    msg = frame(f"35=D|34=2|49=TW44|52={T}|40=1|56=ISLD")  # 56 after a body field, 11 missing
    assert dd.validate(msg).reason == 14


def test_msgtype_is_checked_before_required_fields(dd: DataDictionary) -> None:
    assert dd.validate(frame(f"35=*|34=2|49=TW44|52={T}")) == rej(11, None, "*")


def test_required_fields_are_checked_before_field_values(dd: DataDictionary) -> None:
    msg = app("D", f"21=1|38=+1|40=Z|54=1|55=X|60={T}")
    assert dd.validate(msg) == rej(1, 11, "D")


def test_header_fields_are_checked_before_body_fields(dd: DataDictionary) -> None:
    msg = frame(f"35=D|34=x|49=TW44|52={T}|56=ISLD|" + NOS.replace("40=1", "40=Z"))
    assert dd.validate(msg) == rej(6, 34, "D")


def test_body_field_errors_are_reported_for_the_lowest_tag(dd: DataDictionary) -> None:
    body = f"11=ID|21=1|54=Q|38=+5|40=1|55=X|60={T}"  # 38 format and 54 enum: 38 < 54
    assert dd.validate(app("D", body)) == rej(6, 38, "D")
    body = f"11=ID|21=1|999=1|38=5|40=1|54=1|55=X|60={T}|58=hi|112=x"
    assert dd.validate(app("D", body)) == rej(2, 112, "D")  # TestReqID (112) before 999


def test_repeated_tag_is_reported_after_checking_the_first_occurrence(dd: DataDictionary) -> None:
    msg = app("D", f"11=ID|21=1|38=5|40=Z|40=1|54=1|55=X|60={T}")
    assert dd.validate(msg) == rej(5, 40, "D")


def test_empty_value_is_reported_before_format(dd: DataDictionary) -> None:
    assert dd.validate(app("D", NOS.replace("38=200", "38="))) == rej(4, 38, "D")


def test_body_fields_are_checked_before_group_contents(dd: DataDictionary) -> None:
    msg = app("D", f"11=ID|21=1|38=5|40=1|54=1|55=X|60={T}|453=1|448=A|447=D|452=x|7000=1")
    assert dd.validate(msg) == rej(0, 7000, "D")


# ---------------------------------------------------------------- the certification scripts


def _cert_pairs(path: Path) -> list[tuple[int, str, str]]:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def subst(line: str) -> str:
        def repl(m: re.Match[str]) -> str:
            delta = int(m.group(1) or 0)
            return (now + dt.timedelta(seconds=delta)).strftime("%Y%m%d-%H:%M:%S")
        return re.sub(r"<TIME([+-]\d+)?>", repl, line)

    lines = [(n, ln.rstrip("\n")) for n, ln in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, ln) for n, ln in lines if ln.strip() and not ln.startswith("#")]
    return [(n, subst(a[1:]), b[1:]) for (n, a), (_, b) in zip(lines, lines[1:], strict=False)
            if a.startswith("I8=") and b.startswith("E8=")]


def _wire(text: str) -> Message:
    pairs = [(int(t), v.encode()) for t, _, v in (p.partition("=") for p in text.split("\x01") if p)]
    body = [p for p in pairs if p[0] not in (8, 9, 10)]
    return Message(parse_fields(encode(body)))


CERT_FILES = sorted(
    [*CERT_DIR.glob("14*.def"), *CERT_DIR.glob("15_*.def"), *CERT_DIR.glob("2q*.def"), *CERT_DIR.glob("2r*.def")]
) if CERT_DIR.is_dir() else []


@pytest.mark.skipif(not CERT_FILES, reason=f"QuickFIX's acceptance scripts are not beside this checkout ({CERT_DIR})")
@pytest.mark.parametrize("path", CERT_FILES, ids=lambda p: p.name)
def test_certification_script_rejects_match_quickfix(dd: DataDictionary, path: Path) -> None:
    pairs = _cert_pairs(path)
    assert pairs
    for line, sent, expected in pairs:
        exp = dict(
            (int(t), v) for t, _, v in (p.partition("=") for p in expected.split("\x01") if p)
        )
        got = dd.validate(_wire(sent))
        if exp.get(35) == "3":
            want = Reject(int(exp[373]), int(exp[371]) if 371 in exp else None, exp[58], exp.get(372))
            assert got == want, f"{path.name}:{line}"
        else:
            assert got is None, f"{path.name}:{line}: {got}"


# ---------------------------------------------------------------- the venue's extension


def test_venue_extension_adds_custom_tags_to_new_order_single(dd: DataDictionary, venue: DataDictionary) -> None:
    msg = app("D", NOS + "|7002=T|7003=Y")
    assert venue.validate(msg) is None
    assert dd.validate(msg) == rej(0, 7002, "D")


def test_venue_extension_enumerates_self_trade_prevention_modes(venue: DataDictionary) -> None:
    assert set(venue.enum_values(7002)) == {"N", "T", "M", "B", "D"}
    assert venue.validate(app("D", NOS + "|7002=X")) == rej(5, 7002, "D")
    assert venue.validate(app("D", NOS + "|7003=yes")) == rej(6, 7003, "D")


def test_venue_extension_puts_each_custom_tag_only_on_its_messages(venue: DataDictionary) -> None:
    g = f"11=B|21=1|38=5|40=2|41=A|44=10|54=1|55=X|60={T}"
    assert venue.validate(app("G", g + "|7003=Y")) is None
    assert venue.validate(app("G", g + "|7002=T")) == rej(2, 7002, "G")
    assert venue.validate(frame(f"35=3|34=2|49=A|52={T}|56=B|45=1|7001=101")) is None
    assert venue.validate(app("0", "7001=1")) == rej(2, 7001, "0")
    for mt in ("3", "8", "9", "j", "r"):
        assert venue.is_msg_field(mt, 7001)
        assert venue.field_type(7001) == "INT"


def test_venue_extension_extends_security_list_group(venue: DataDictionary) -> None:
    inst = "55=BTC-USD|15=USD|561=0.0001|562=0.001|969=0.01|7004=100|7005=10|7006=17"
    msg = app("y", "320=r1|322=r1|560=0|146=1|" + inst)
    assert venue.validate(msg) is None
    assert venue.validate(app("y", "320=r1|322=r1|560=0|146=1|" + inst.replace("7006=17", "7006=5"))) == rej(
        5, 7006, "y"
    )


EXT_HEAD = "<fix major='4' minor='4'>"


def test_extension_adds_values_to_an_existing_field() -> None:
    ext = EXT_HEAD + "<fields><field number='40' name='OrdType' type='CHAR'><value enum='Z' description='ZED'/>" \
        "</field></fields></fix>"
    merged = DataDictionary.from_xml(BASE.read_bytes(), ext)
    assert merged.validate(app("D", NOS.replace("40=1", "40=Z"))) is None
    assert merged.enum_values(40)["Z"] == "ZED" and "1" in merged.enum_values(40)


def test_extension_makes_an_existing_field_required() -> None:
    ext = EXT_HEAD + "<messages><message name='NewOrderSingle' msgtype='D' msgcat='app'>" \
        "<field name='Account' required='Y'/></message></messages></fix>"
    merged = DataDictionary.from_xml(BASE.read_bytes(), ext)
    assert merged.validate(app("D", NOS)) == rej(1, 1, "D")
    assert merged.validate(app("D", "1=ACC|" + NOS)) is None


def test_extension_adds_a_message_type_and_a_component() -> None:
    ext = EXT_HEAD + "<messages><message name='VenueStatus' msgtype='U1' msgcat='app'>" \
        "<field name='Text' required='Y'/><component name='VenueBits' required='N'/></message></messages>" \
        "<components><component name='VenueBits'><field name='VenueFlag' required='N'/></component></components>" \
        "<fields><field number='7100' name='VenueFlag' type='BOOLEAN'/></fields></fix>"
    merged = DataDictionary.from_xml(BASE.read_bytes(), ext)
    assert merged.has_msg_type("U1") and not merged.is_admin("U1")
    assert merged.enum_values(35)["U1"] == "VENUE_STATUS"
    assert merged.validate(app("U1", "58=hello|7100=Y")) is None
    assert merged.validate(app("U1", "7100=Y")) == rej(1, 58, "U1")


def test_extension_redefining_a_field_name_with_another_number_is_an_error() -> None:
    ext = EXT_HEAD + "<fields><field number='7200' name='ClOrdID' type='STRING'/></fields></fix>"
    with pytest.raises(DictionaryError):
        DataDictionary.from_xml(BASE.read_bytes(), ext)


def test_reference_to_an_undefined_field_is_an_error() -> None:
    ext = EXT_HEAD + "<messages><message name='X' msgtype='U2' msgcat='app'>" \
        "<field name='NoSuchField' required='N'/></message></messages></fix>"
    with pytest.raises(DictionaryError, match="NoSuchField"):
        DataDictionary.from_xml(BASE.read_bytes(), ext)


def test_malformed_xml_is_a_dictionary_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<fix major='4' minor='4'><fields>")
    with pytest.raises(DictionaryError, match="well-formed"):
        DataDictionary.load(BASE, bad)


# ---------------------------------------------------------------- export


CORPUS = [
    app("D", NOS),
    app("D", NOS + "|7002=T|7003=Y"),
    app("D", NOS + "|7002=X"),
    app("D", NOS + "|453=2|448=A|447=D|452=1|448=B|447=D|452=3"),
    app("D", NOS + "|453=3|448=A|447=D|452=1"),
    app("D", NOS.replace("38=200", "38=+200")),
    app("0", "999=HI"),
    app("0", "55=X"),
    app("G", f"11=B|21=1|38=5|40=2|41=A|44=10|54=1|55=X|60={T}|7003=N"),
    app("y", "320=r1|322=r1|560=0|146=1|55=BTC-USD|969=0.01|7004=100"),
    frame(f"35=*|34=2|49=TW44|52={T}|56=ISLD"),
    frame(f"35=3|34=2|49=A|52={T}|56=B|45=1|7001=101"),
    app("E", "66=L1|68=1|394=1|73=1|11=A|54=1"),
]


def test_export_round_trip_gives_the_same_validation_results(venue: DataDictionary, tmp_path: Path) -> None:
    out = tmp_path / "venue.xml"
    out.write_text(venue.to_xml())
    again = DataDictionary.load(out)
    assert [again.validate(m) for m in CORPUS] == [venue.validate(m) for m in CORPUS]
    assert any(r is None for r in (venue.validate(m) for m in CORPUS))
    assert again.to_xml() == venue.to_xml()


def test_exported_xml_has_quickfix_structure(venue: DataDictionary) -> None:
    root = ET.fromstring(venue.to_xml())
    assert root.tag == "fix" and root.get("type") == "FIX"
    assert (root.get("major"), root.get("minor")) == ("4", "4")
    assert [child.tag for child in root] == ["header", "messages", "trailer", "components", "fields"]
    names = {f.get("name") for f in root.find("fields")}
    for f in root.find("fields"):
        assert f.get("number", "").isdigit() and f.get("type")
        for v in f:
            assert v.tag == "value" and v.get("enum") is not None
    components = {c.get("name") for c in root.find("components")}
    for node in root.iter():
        if node.tag in ("field", "group") and node.get("required") is not None:
            assert node.get("name") in names
            assert node.get("required") in ("Y", "N")
        if node.tag == "component" and node.get("required") is not None:
            assert node.get("name") in components
    for m in root.find("messages"):
        assert m.tag == "message" and m.get("msgtype") and m.get("name") and m.get("msgcat") in ("admin", "app")
    header = [f.get("name") for f in root.find("header")][:3]
    assert header == ["BeginString", "BodyLength", "MsgType"]
    assert [f.get("name") for f in root.find("trailer")][-1] == "CheckSum"
    d = next(m for m in root.find("messages") if m.get("msgtype") == "D")
    assert {"SelfTradePreventionMode", "PostOnly"} <= {f.get("name") for f in d}


def test_plain_base_exports_the_fields_of_the_original(dd: DataDictionary) -> None:
    root = ET.fromstring(dd.to_xml())
    original = ET.parse(BASE).getroot()
    assert {f.get("number") for f in root.find("fields")} == {f.get("number") for f in original.find("fields")}
    assert len(root.find("messages")) == len(original.find("messages"))


# ---------------------------------------------------------------- look-ups


def test_lookups(venue: DataDictionary) -> None:
    assert venue.begin_string == "FIX.4.4"
    assert venue.has_msg_type("D") and not venue.has_msg_type("*")
    assert venue.is_admin("0") and venue.is_admin("A") and not venue.is_admin("D")
    assert venue.is_header_field(49) and not venue.is_header_field(11)
    assert venue.is_trailer_field(10) and not venue.is_trailer_field(49)
    assert venue.field_name(44) == "Price" and venue.field_type(44) == "PRICE"
    assert venue.field_tag("PostOnly") == 7003
    assert venue.enum_values(54)["1"] == "BUY"
    assert venue.message_name("D") == "NewOrderSingle"
    assert venue.required_fields("D") == (11, 21, 38, 40, 54, 55, 60)[: 0] + venue.required_fields("D")
    assert {11, 54, 60, 40} <= set(venue.required_fields("D"))


def test_groups_for_describes_nested_groups(venue: DataDictionary) -> None:
    groups = venue.groups_for("D")
    parties = groups[453]
    assert parties.delimiter == 448 and parties.fields[:3] == (448, 447, 452)
    assert 802 in parties.groups and parties.groups[802].delimiter == 523
    assert 627 in venue.groups_for("_header_")


def test_group_instances_reads_a_repeating_group(venue: DataDictionary) -> None:
    msg = app("D", NOS + "|453=2|448=A|447=D|452=1|802=1|523=s|803=2|448=B|447=D|452=3")
    assert venue.group_instances(msg, 453) == [
        [(448, b"A"), (447, b"D"), (452, b"1"), (802, b"1"), (523, b"s"), (803, b"2")],
        [(448, b"B"), (447, b"D"), (452, b"3")],
    ]
    assert venue.group_instances(app("D", NOS), 453) == []


def test_describe_lists_components_inline_with_effective_required_flags(venue: DataDictionary) -> None:
    rows = {r.tag: r for r in venue.describe("D")}
    assert rows[11].required and rows[55].depth == 0 and not rows[55].required
    assert rows[453].group and rows[448].depth == 1 and rows[523].depth == 2
    assert 7002 in rows


# ---------------------------------------------------------------- properties

_VALID_NOS = app("D", NOS + "|1=ACC|44=10.5|59=1|453=1|448=A|447=D|452=1")


@settings(max_examples=300, deadline=None)
@given(st.permutations(_VALID_NOS.fields))
def test_field_permutations_never_raise(fields: list[tuple[int, bytes]]) -> None:
    dd = _module_dd()
    result = dd.validate(Message(list(fields)))
    assert result is None or (isinstance(result, Reject) and result.text == REJECT_TEXT[result.reason])


_tags = st.sampled_from([8, 9, 35, 34, 49, 52, 56, 10, 11, 38, 40, 44, 54, 453, 448, 447, 452, 802, 523,
                         627, 628, 93, 89, 0, -1, 999, 5000, 7002, 18, 60, 146, 55])
_values = st.sampled_from([b"", b"D", b"1", b"2", b"0", b"Y", b"abc", b"+1", b"1.5", b"20260101-12:00:00",
                           b"6 E", b"-3", b"99999999999"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_tags, _values), max_size=30), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
       st.booleans())
def test_random_messages_never_raise_and_fast_path_agrees(
    fields: list[tuple[int, bytes]], fhv: bool, udf: bool, unk: bool, order: bool, group_order: bool
) -> None:
    dd = _module_dd()
    prefixed = [(8, b"FIX.4.4"), (9, b"10"), (35, b"D"), *fields]
    for candidate in (fields, prefixed):
        got = dd.validate(Message(list(candidate)), fhv, udf, unk, order, group_order)
        full = dd._validate_full(Message(list(candidate)), fhv, udf, unk, order, group_order)
        assert got == full
        assert got is None or got.text == REJECT_TEXT[got.reason]


_SHAPES = [
    app("D", NOS),
    app("D", NOS + "|453=2|448=A|447=D|452=1|802=1|523=s|803=2|448=B|447=D|452=3"),
    app("E", "66=L1|68=1|394=1|73=1|11=A|67=1|55=X|54=1"),
    frame(f"35=0|34=2|49=TW44|52={T}|56=ISLD|112=ping"),
]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_SHAPES), st.lists(st.tuples(st.integers(0, 40), _values), max_size=3))
def test_cached_tag_sequences_only_skip_work_never_change_the_answer(
    template: Message, changes: list[tuple[int, bytes]]
) -> None:
    dd = _module_dd()
    assert dd.validate(Message(list(template.fields))) is None  # learns the sequence
    fields = list(template.fields)
    for pos, value in changes:
        i = pos % len(fields)
        fields[i] = (fields[i][0], value)
    assert dd.validate(Message(list(fields))) == dd._validate_full(Message(list(fields)), True, True, False, True)


_DD_CACHE: list[DataDictionary] = []


def _module_dd() -> DataDictionary:
    if not _DD_CACHE:
        _DD_CACHE.append(DataDictionary.load(BASE, VENUE_EXT))
    return _DD_CACHE[0]


# ---------------------------------------------------------------- the CLI


def test_cli_export_writes_a_loadable_standalone_dictionary(tmp_path: Path) -> None:
    from tools.cli import main

    out = tmp_path / "venue-fix44-export.xml"
    result = CliRunner().invoke(main, ["dictionary", "export", str(out)])
    assert result.exit_code == 0, result.output
    exported = DataDictionary.load(out)
    assert exported.validate(app("D", NOS + "|7002=N")) is None
    assert exported.field_name(7003) == "PostOnly"


def test_cli_export_with_another_base(tmp_path: Path) -> None:
    from tools.cli import main

    out = tmp_path / "plain.xml"
    result = CliRunner().invoke(main, ["dictionary", "export", str(out), "--base", str(BASE), "--plain"])
    assert result.exit_code == 0, result.output
    assert DataDictionary.load(out).field_name(7002) is None


def test_cli_show_prints_a_messages_fields() -> None:
    from tools.cli import main

    result = CliRunner().invoke(main, ["dictionary", "show", "D"])
    assert result.exit_code == 0, result.output
    assert "NewOrderSingle (35=D, app)" in result.output
    assert re.search(r"^\s+11\s+ClOrdID\s+STRING\s+Y$", result.output, re.M)
    assert re.search(r"^\s+7002\s+SelfTradePreventionMode\s+CHAR\s+N$", result.output, re.M)
    by_name = CliRunner().invoke(main, ["dictionary", "show", "NewOrderSingle"])
    assert by_name.output == result.output
    assert CliRunner().invoke(main, ["dictionary", "show", "ZZ"]).exit_code != 0


def test_cli_check_reports_the_reject() -> None:
    from tools.cli import main

    good = f"8=FIX.4.4|9=5|35=0|34=2|49=A|52={T}|56=B|10=000"
    assert CliRunner().invoke(main, ["dictionary", "check", good]).output.strip() == "OK"
    bad = CliRunner().invoke(main, ["dictionary", "check", good.replace("|10=", "|55=X|10=")])
    assert bad.exit_code == 1
    assert "373=2 371=55 372=0" in bad.output
