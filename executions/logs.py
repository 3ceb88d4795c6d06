"""Reading stored output: shared by the WebSocket consumer, the API and the raw download."""

from __future__ import annotations

from collections.abc import Iterator

from executions.models import HostRun, LogChunk

# One page holds at most this many chunks and (past the first chunk) bytes, so that reading a
# huge log neither builds huge responses nor holds much memory per reader.
PAGE_CHUNKS = 64
PAGE_BYTES = 1024 * 1024


def read_page(
    execution_id: int,
    after: int,
    *,
    host_run_id: int | None = None,
    limit: int = PAGE_CHUNKS,
    max_bytes: int = PAGE_BYTES,
) -> tuple[list[LogChunk], bool]:
    """Chunks with seq > after, in order; and whether more may follow right away."""
    chunks = LogChunk.objects.filter(execution_id=execution_id, seq__gt=after).order_by("seq")
    if host_run_id is not None:
        chunks = chunks.filter(host_run_id=host_run_id)
    # Sizes first, data second: only the bytes that fit in the page are ever loaded.
    sizes = list(chunks.values_list("seq", "size")[:limit])
    last, total = None, 0
    for seq, size in sizes:
        if last is not None and total + size > max_bytes:
            break
        last, total = seq, total + size
    if last is None:
        return [], False
    page = list(chunks.filter(seq__lte=last))
    return page, len(page) < len(sizes) or len(sizes) == limit


def one_line(name: str) -> str:
    """A name as printable text on one line, to label output with. Server names are checked
    to be that (servers.validation); one stored before that check has its newlines, escape
    sequences and other unprintable characters shown escaped (`\\n`, `\\x1b`), so that it
    can never end its label's line or start another."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in name)


def raw_bytes(execution_id: int, host_run_id: int | None = None) -> Iterator[bytes]:
    """The stored output, exactly; for several hosts, each one's after a `==> name <==` line.

    A header is always exactly one line (see one_line). The output itself is not altered, so
    a host that prints a line looking like a header is not told apart from a real one: read
    one host's output exactly with `host_run_id`."""
    if host_run_id is not None:
        yield from _host_bytes(host_run_id)
        return
    runs = list(
        HostRun.objects.filter(execution_id=execution_id)
        .order_by("server_name", "id")
        .values_list("pk", "server_name")
    )
    for index, (run_id, name) in enumerate(runs):
        if len(runs) > 1:
            yield f"{'' if index == 0 else chr(10)}==> {one_line(name)} <==\n".encode()
        yield from _host_bytes(run_id)


def _host_bytes(host_run_id: int) -> Iterator[bytes]:
    chunks = LogChunk.objects.filter(host_run_id=host_run_id).order_by("seq")
    for data in chunks.values_list("data", flat=True).iterator(chunk_size=16):
        yield bytes(data)


def tail_start(execution_id: int, max_bytes: int, *, max_chunks: int = 2000) -> int:
    """The `after` seq from which the last ~max_bytes of output follow: where a viewer of a
    huge log starts, so that it opens at the end without loading everything before."""
    sizes = (
        LogChunk.objects.filter(execution_id=execution_id)
        .order_by("-seq")
        .values_list("seq", "size")[:max_chunks]
    )
    total, start = 0, -1
    for seq, size in sizes:
        if total + size > max_bytes and total > 0:
            return seq
        total += size
        start = seq - 1
    return start
