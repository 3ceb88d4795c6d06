"""How followed output is printed: exact, or per host prefixed, in colour on a terminal.

Every piece of state is bounded per host and stream (a partial line, a cut escape sequence),
so printing a log of any size holds the same memory.
"""

from __future__ import annotations

import base64
import re
from typing import Any, BinaryIO

# ECMA-48 sequences: CSI (colours, cursor moves), OSC (titles, links), escapes with
# intermediates (character sets), and the other two-byte ones.
ESCAPE = re.compile(
    rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]+[0-~]|[0-Z\\^-~])"
)
# The start of one, cut at the end of a chunk: held until the next chunk completes it.
CUT_ESCAPE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)")
CUT_ESCAPE_MAX = 256
# A line longer than this is printed in pieces, each with the host's prefix.
LINE_MAX = 64 * 1024
HOST_COLOURS = [36, 33, 35, 32, 34, 31]  # cyan, yellow, magenta, green, blue, red
RESET = b"\x1b[0m"


def chunk_bytes(chunk: dict[str, Any]) -> bytes:
    """The exact bytes of a chunk of the API or the WebSocket."""
    if "b64" in chunk:
        return base64.b64decode(chunk["b64"])
    return chunk["text"].encode()


class EscapeStripper:
    """Removes terminal escape sequences from a stream cut at arbitrary places."""

    def __init__(self) -> None:
        self.held = b""

    def feed(self, data: bytes) -> bytes:
        data, self.held = self.held + data, b""
        start = data.rfind(b"\x1b", max(0, len(data) - CUT_ESCAPE_MAX))
        if start != -1 and ESCAPE.match(data, start) is None and CUT_ESCAPE.fullmatch(data, start):
            data, self.held = data[:start], data[start:]
        return ESCAPE.sub(b"", data)

    def flush(self) -> bytes:
        held, self.held = self.held, b""
        return held


class Printer:
    """Writes chunks to `out` (stdout chunks) and `err` (stderr chunks).

    raw: the stored bytes, both streams to `out`, as `log/raw/` gives them. Otherwise each
    stream goes where it came from, without escape sequences unless `colour`, and with
    `prefixed` each line starts with its host's name (`web-1 | `).
    """

    def __init__(
        self,
        out: BinaryIO,
        err: BinaryIO,
        hosts: dict[int, str],
        *,
        raw: bool = False,
        prefixed: bool = False,
        colour: bool = False,
        only_host: int | None = None,
    ) -> None:
        self.out, self.err = out, err
        self.hosts = hosts
        self.raw, self.prefixed, self.colour = raw, prefixed, colour
        self.only_host = only_host
        self.width = max((len(name) for name in hosts.values()), default=0)
        self.strippers: dict[tuple[int, str], EscapeStripper] = {}
        self.partial: dict[tuple[int, str], bytes] = {}
        self.prefixes: dict[int, bytes] = {}

    def chunk(self, chunk: dict[str, Any]) -> None:
        host, stream = chunk["host_run"], chunk["stream"]
        if self.only_host is not None and host != self.only_host:
            return
        data = chunk_bytes(chunk)
        if self.raw:
            self.out.write(data)
            return
        target = self.err if stream == "stderr" else self.out
        if not self.colour:
            data = self.strippers.setdefault((host, stream), EscapeStripper()).feed(data)
        if not self.prefixed:
            target.write(data)
            return
        key = (host, stream)
        lines = (self.partial.pop(key, b"") + data).split(b"\n")
        for line in lines[:-1]:
            target.write(self.prefix(host) + line + b"\n")
        rest = lines[-1]
        while len(rest) > LINE_MAX:
            target.write(self.prefix(host) + rest[:LINE_MAX] + b"\n")
            rest = rest[LINE_MAX:]
        if rest:
            self.partial[key] = rest

    def prefix(self, host: int) -> bytes:
        if host not in self.prefixes:
            name = self.hosts.get(host, f"host {host}").ljust(self.width).encode()
            if self.colour:
                position = sorted(self.hosts).index(host) if host in self.hosts else 0
                colour = HOST_COLOURS[position % len(HOST_COLOURS)]
                name = RESET + f"\x1b[{colour}m".encode() + name + b" |" + RESET + b" "
            else:
                name += b" | "
            self.prefixes[host] = name
        return self.prefixes[host]

    def flush(self) -> None:
        self.out.flush()
        self.err.flush()

    def close(self) -> None:
        """Print what is held back: a last line without its newline, a cut escape."""
        for (host, stream), stripper in self.strippers.items():
            if held := stripper.flush():
                self.partial[(host, stream)] = self.partial.get((host, stream), b"") + held
        for (host, stream), rest in self.partial.items():
            target = self.err if stream == "stderr" else self.out
            target.write(self.prefix(host) + rest + b"\n" if self.prefixed else rest)
        self.partial.clear()
        self.flush()
