"""The certification-script grammar: parsing, message preparation and comparison (no network)."""

from __future__ import annotations

import calendar

import pytest

from fix.scenario import Result, compare, junit_xml, load_formats, parse_script, prepare

S = "\x01"
T = calendar.timegm((2026, 3, 4, 5, 6, 7))


def test_directives_comments_and_connection_numbers_are_parsed():
    steps = parse_script(f"# comment\n\niCONNECT\ni2,CONNECT\nI2,8=FIX.4.4{S}35=0{S}\nE8=FIX.4.4{S}\n"
                         "e2,DISCONNECT\niDISCONNECT\r\n")
    assert [(s.action, s.conn, s.line) for s in steps] == [
        ("connect", 1, 3), ("connect", 2, 4), ("send", 2, 5), ("expect", 1, 6),
        ("expect_disconnect", 2, 7), ("disconnect", 1, 8)]


def test_unknown_directive_is_an_error_with_its_line():
    with pytest.raises(ValueError, match="line 2"):
        parse_script("iCONNECT\nXfoo\n")


def test_prepare_substitutes_times_and_adds_body_length_and_checksum():
    data = prepare(f"8=FIX.4.4{S}35=0{S}52=<TIME>{S}122=<TIME-1>{S}60=<TIME+10>{S}", T)
    assert data.startswith(b"8=FIX.4.4\x019=")
    body = data.split(b"\x01", 2)[2]
    body = body[:body.rindex(b"10=")]
    assert int(data.split(b"\x01")[1][2:]) == len(body)
    assert b"52=20260304-05:06:07\x01122=20260304-05:06:06\x0160=20260304-05:06:17\x01" in data
    assert data.endswith(b"10=%03d\x01" % (sum(data[:data.rindex(b"10=")]) & 0xFF))


def test_prepare_sends_garbled_lines_exactly_as_written():
    line = f"8=FIX.4.4{S}9=52{S}35=0{S}34=2{S}4garbled9=TW{S}10=0{S}"
    assert prepare(line, T) == line.encode()


def test_prepare_with_checksum_but_no_length_counts_up_to_the_soh_before_10():
    data = prepare(f"8=FIX.4.4{S}35=0{S}34=2{S}10=0{S}", T)
    assert data == f"8=FIX.4.4{S}9=9{S}35=0{S}34=2{S}10=0{S}".encode()


def test_compare_ignores_free_fields_but_checks_their_format_and_everything_else():
    fmt = load_formats(None)
    exp = prepare(f"8=FIX.4.4{S}35=0{S}34=2{S}52=00000000-00:00:00.000{S}112=A{S}", T)
    got = prepare(f"8=FIX.4.4{S}35=0{S}34=2{S}52=20260304-05:06:07.123{S}112=A{S}", T)
    assert compare(exp, got, fmt) is None
    assert "does not match" in compare(exp, got.replace(b"52=20260304", b"52=2026030X"), fmt)
    wrong = prepare(f"8=FIX.4.4{S}35=0{S}34=3{S}52=20260304-05:06:07.123{S}112=A{S}", T)
    assert compare(exp, wrong, fmt).startswith("field 4: expected 34=2, received 34=3")
    shorter = prepare(f"8=FIX.4.4{S}35=0{S}34=2{S}52=20260304-05:06:07.123{S}", T)
    assert compare(exp, shorter, fmt).startswith("field 2: expected 9=")  # BodyLength differs first


def test_formats_are_read_from_a_fields_fmt_file(tmp_path):
    path = tmp_path / "fields.fmt"
    path.write_text("10=\\d{3}\n52=\\d{8}\n")
    fmt = load_formats(path)
    assert set(fmt) == {10, 52} and fmt[52].match("20260101")


def test_junit_report_counts_failures():
    xml = junit_xml([Result("a.def", True, seconds=0.5), Result("b.def", False, 7, "expected <x> & y")])
    assert 'tests="2" failures="1"' in xml and "line 7: expected &lt;x&gt; &amp; y" in xml
