"""Printing followed output: escapes removed when piped wherever chunks cut them, one prefix
per line of each host, and nothing held beyond a line."""

from __future__ import annotations

import io

from tsubame_cli.render import LINE_MAX, EscapeStripper, Printer

COLOURED = b"\x1b[31mred\x1b[0m\x1b(B plain\x1b7 \x1b]0;title\x07\x1b[1;32mbold green\x1b[m\r\n"


def test_escapes_are_removed_wherever_the_chunks_cut_them():
    for cut in range(len(COLOURED) + 1):
        stripper = EscapeStripper()
        text = stripper.feed(COLOURED[:cut]) + stripper.feed(COLOURED[cut:]) + stripper.flush()
        assert text == b"red plain bold green\r\n", cut


def chunk(host: int, text: str, stream: str = "stdout") -> dict:
    return {"seq": 0, "host_run": host, "stream": stream, "text": text}


def printed(chunks: list[dict], **options) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    printer = Printer(out, err, {1: "web-1", 2: "db"}, **options)
    for each in chunks:
        printer.chunk(each)
    printer.close()
    return out.getvalue(), err.getvalue()


def test_each_line_gets_its_hosts_prefix_however_the_chunks_fall():
    chunks = [chunk(1, "one\ntw"), chunk(2, "\x1b[1mx"), chunk(1, "o\n"), chunk(2, "y\x1b[0m\nz")]
    chunks.append(chunk(2, "oops\n", "stderr"))
    assert printed(chunks, prefixed=True) == (
        b"web-1 | one\nweb-1 | two\ndb    | xy\ndb    | z\n",
        b"db    | oops\n",
    )
    out, _ = printed(chunks, prefixed=True, colour=True)
    assert b"\x1b[1mxy\x1b[0m\n" in out  # the host's own colours kept
    assert out.startswith(b"\x1b[0m\x1b[36mweb-1 |\x1b[0m one\n")


def test_raw_is_the_stored_bytes_and_one_host_has_no_prefix():
    chunks = [chunk(1, "a\x1b[1m"), {**chunk(2, "\ufffd"), "b64": "/w=="}, chunk(1, "b", "stderr")]
    assert printed(chunks, raw=True) == (b"a\x1b[1m\xffb", b"")
    assert printed(chunks, only_host=1) == (b"a", b"b")


def test_an_endless_line_is_printed_in_pieces():
    out, _ = printed([chunk(1, "x" * (LINE_MAX * 2 + 5))], prefixed=True)
    assert out.split(b"\n")[:3] == [b"web-1 | " + b"x" * LINE_MAX] * 2 + [b"web-1 | xxxxx"]
