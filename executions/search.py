"""Search in stored output, through each database's own trigram index.

What is searched: the bytes of each chunk, preceded by `line_start` (the unfinished line the
chunk continues, up to LINE_START_BYTES, kept by the output writer). A needle is at most
MAX_NEEDLE_BYTES and holds no newline, so any match that the writer's cut split between
chunks lies whole inside the later chunk's searched text.

How it is found:
- PostgreSQL: a pg_trgm GIN index on `encode(line_start || data, 'escape')`, partial on
  `indexed`. The 'escape' encoding maps each byte to a fixed string, so a needle encoded the
  same way is a LIKE pattern on it; the index gives the candidates, LIKE checks them, and a
  byte comparison drops the rare match that the encoding alone would make up.
- SQLite: an FTS5 table with the trigram tokenizer, contentless and with detail=none (it
  keeps which chunks hold a trigram and nothing else: 0.2 byte per byte of log instead of
  2.3 with positions). Candidates hold every trigram of the needle; a function registered on
  each connection (`tsubame_output_has`) unpacks them and checks the bytes.

Indexing is not on the output path: FTS5 takes about 8 MB/s and GIN 4 MB/s on this
project's machines, far below what a run writes. A chunk is written with `indexed` false and
each worker's `serve` thread indexes the oldest such chunks, a few hundred KiB per
transaction. A search also reads the chunks not yet indexed directly, so it misses nothing
while the indexer catches up. On SQLite a contentless index forgets a chunk only when told
its text: a trigger keeps each deleted indexed chunk in a queue that the same thread drains.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import BinaryField, BooleanField, F, Func, Q, QuerySet, Subquery, Value
from django.db.models.expressions import RawSQL

from executions.fields import unpack
from executions.models import LogChunk

logger = logging.getLogger(__name__)

LINE_START_BYTES = 255
MAX_NEEDLE_BYTES = LINE_START_BYTES + 1
# The shortest needle a trigram index can look up.
MIN_NEEDLE_CHARS = 3
# How long the indexer lets go of SQLite's write lock after each batch, at least (see serve).
SQLITE_YIELD_SECONDS = 0.1

CHUNKS = LogChunk._meta.db_table
FTS_TABLE = "executions_logchunk_search"
FORGET_TABLE = "executions_logchunk_search_forget"


def needle_problem(text: str) -> str | None:
    """Why `text` cannot be searched for, or None."""
    if "\n" in text or "\r" in text:
        return "Output search finds text within one line: leave out line breaks."
    if len(text) < MIN_NEEDLE_CHARS:
        return f"Output search needs at least {MIN_NEEDLE_CHARS} characters."
    if len(text.encode()) > MAX_NEEDLE_BYTES:
        return f"Output search takes at most {MAX_NEEDLE_BYTES} bytes of text."
    return None


def next_line_start(line_start: bytes, data: bytes) -> bytes:
    """The `line_start` of the chunk that follows one holding `data` after `line_start`."""
    newline = data.rfind(b"\n")
    tail = data[newline + 1 :] if newline >= 0 else line_start + data
    return tail[-LINE_START_BYTES:]


def searched_text(line_start: bytes, data: bytes) -> str:
    """The text the SQLite index holds for a chunk; the same bytes must give the same text
    again when the chunk is forgotten. FTS5 reads text no further than a NUL: those become
    U+FFFD, as bytes that are not UTF-8 do (no trigram looked up holds either)."""
    return (line_start + data).decode("utf-8", "replace").replace("\x00", "\ufffd")


class _OutputHas(Func):
    """True where a chunk's searched bytes contain the needle, byte for byte."""

    output_field = BooleanField()

    def __init__(self, needle: bytes) -> None:
        super().__init__(F("line_start"), F("data"), Value(needle, output_field=BinaryField()))

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self.as_sql(compiler, connection, function="tsubame_output_has", **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (start, start_params), (data, data_params), (needle, needle_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        sql = f"POSITION({needle} IN ({start} || {data})) > 0"
        return sql, [*needle_params, *start_params, *data_params]


def _escape_encoded(needle: bytes) -> str:
    """`needle` as PostgreSQL's encode(…, 'escape') writes it."""
    return "".join(
        "\\\\" if byte == 0x5C else f"\\{byte:03o}" if byte == 0 or byte >= 0x80 else chr(byte)
        for byte in needle
    )


class _EncodedLike(Func):
    """PostgreSQL: `encode(line_start || data, 'escape') LIKE pattern`, the expression of the
    trigram index (migration 0013) spelled exactly so, or the planner cannot use the index."""

    output_field = BooleanField()

    def __init__(self, pattern: str) -> None:
        super().__init__(F("line_start"), F("data"), Value(pattern))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (start, start_params), (data, data_params), (pattern, pattern_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        sql = f"encode(({start} || {data}), 'escape') LIKE {pattern}"
        return sql, [*start_params, *data_params, *pattern_params]


def _indexed_candidates(needle: str) -> Q:
    """Indexed chunks that may hold `needle`, as the index answers."""
    if connection.vendor == "postgresql":
        pattern = _escape_encoded(needle.encode())
        for special in ("\\", "%", "_"):
            pattern = pattern.replace(special, "\\" + special)
        return Q(indexed=True) & Q(_EncodedLike(f"%{pattern}%"))
    # Every trigram of the needle (as the tokenizer folds case: the check that follows does
    # not). Each is quoted as an FTS5 string; detail=none answers no phrase queries. FTS5's
    # query parser ends a string at a NUL, so trigrams holding one are left to the check.
    trigrams = {
        needle[i : i + 3] for i in range(len(needle) - 2) if "\x00" not in needle[i : i + 3]
    }
    if not trigrams:
        return Q(indexed=True)
    query = " AND ".join('"' + trigram.replace('"', '""') + '"' for trigram in sorted(trigrams))
    matching = RawSQL(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH %s", [query])
    return Q(indexed=True, id__in=matching)


def chunks_containing(needle: str) -> QuerySet[LogChunk]:
    """Chunks whose searched text contains `needle` (see needle_problem for what it may be).

    Chunks the indexer has not reached yet are read directly: a few seconds of output
    normally, all of it while a new index is first built.
    """
    candidates = _indexed_candidates(needle) | Q(indexed=False)
    return LogChunk.objects.filter(candidates).filter(_OutputHas(needle.encode()))


class _ExecutionHasMatch(Func):
    """The outer execution is one of those whose chunks `matching` finds.

    PostgreSQL reads `pk IN (subquery)` as a semi-join and, for a list wanting the newest
    50 of a team, walks that team's runs newest first checking each one's chunks: a scan of
    their whole output (4.3 s at 1 GiB). ARRAY(subquery) is computed once, from the trigram
    index, before the list is read.
    """

    output_field = BooleanField()

    def __init__(self, matching: QuerySet[LogChunk]) -> None:
        super().__init__(F("pk"), Subquery(matching.values("execution_id")))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        (pk, pk_params), (chunks, chunk_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        if connection.vendor == "postgresql":
            return f"{pk} = ANY(ARRAY{chunks})", [*pk_params, *chunk_params]
        return f"{pk} IN {chunks}", [*pk_params, *chunk_params]


def executions_containing(needle: str) -> Q:
    """A filter for Executions: those whose output contains `needle`."""
    return Q(_ExecutionHasMatch(chunks_containing(needle).order_by()))


def register_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """connection_created: give each SQLite connection the byte check searches use."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(
            "tsubame_output_has", 3, _output_has, deterministic=True
        )


def _output_has(line_start: bytes, stored: bytes, needle: bytes) -> bool:
    return needle in line_start + unpack(stored)


def index_next(max_bytes: int | None = None) -> int:
    """Index the oldest chunks not yet indexed, up to `max_bytes` of output (at least one
    chunk) in one transaction; how many bytes that was."""
    batch = waiting_batch(max_bytes or settings.SEARCH_INDEX_BATCH_BYTES)
    return claim_and_index(batch) if batch else 0


def waiting_batch(max_bytes: int) -> list[int]:
    """The oldest chunks waiting for the index, up to `max_bytes` of output (at least one).

    Read before they are claimed, so that a batch is bounded by bytes whatever the chunks'
    sizes: another worker may claim some of them meanwhile."""
    waiting = LogChunk.objects.filter(indexed=False).order_by("id").values_list("id", "size")
    batch, total = [], 0
    for chunk_id, size in waiting[:256]:
        if batch and total + size > max_bytes:
            break
        batch.append(chunk_id)
        total += size
    return batch


def claim_and_index(batch: list[int]) -> int:
    """Index those of `batch` that no other indexer has claimed; how many bytes they hold.
    The claim is a guarded update, so two workers never index a chunk twice."""
    placeholders = ", ".join(["%s"] * len(batch))
    sqlite = connection.vendor == "sqlite"
    with transaction.atomic(), connection.cursor() as cursor:
        # PostgreSQL builds the index entries as it runs this update (the index is partial
        # on `indexed`); SQLite's index is given the text of what was claimed.
        cursor.execute(
            f"UPDATE {CHUNKS} SET indexed = true WHERE id IN ({placeholders}) AND NOT indexed "
            f"RETURNING size{', id, line_start, data' if sqlite else ''}",
            batch,
        )
        claimed = cursor.fetchall()
        if sqlite:
            cursor.executemany(
                f"INSERT INTO {FTS_TABLE} (rowid, body) VALUES (%s, %s)",
                [(pk, searched_text(bytes(start), unpack(data))) for _, pk, start, data in claimed],
            )
    return sum(row[0] for row in claimed)


def forget_next(max_rows: int = 64) -> int:
    """SQLite: take deleted chunks out of the index, from the queue the trigger fills; how
    many. (PostgreSQL's index forgets deleted rows by itself.)"""
    if connection.vendor != "sqlite":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {FORGET_TABLE} WHERE id IN "
            f"(SELECT id FROM {FORGET_TABLE} ORDER BY id LIMIT %s) "
            "RETURNING chunk_id, line_start, data",
            [max_rows],
        )
        forgotten = cursor.fetchall()
        cursor.executemany(
            f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, body) VALUES ('delete', %s, %s)",
            [(pk, searched_text(bytes(start), unpack(data))) for pk, start, data in forgotten],
        )
    return len(forgotten)


def index_everything() -> int:
    """Index (and forget) until nothing is waiting; how many bytes were indexed. For
    `manage.py` and tests: a worker does this a batch at a time in `serve`."""
    total = 0
    while forget_next():
        pass
    while indexed := index_next():
        total += indexed
    return total


def serve(stop: threading.Event) -> None:
    """A worker's indexer: until `stop`, index what waits, resting a moment when nothing
    does. Runs in a thread of `manage.py worker`, so no run waits for its output's index."""
    while not stop.is_set():
        began = time.monotonic()
        try:
            busy = forget_next() + index_next()
        except Exception:
            logger.exception("indexing output for search failed; trying again")
            busy = 0
        if not busy:
            close_old_connections()
            stop.wait(settings.SEARCH_INDEX_IDLE_SECONDS)
        elif connection.vendor == "sqlite":
            # SQLite has one writer and no queue: a writer kept waiting sleeps up to 100 ms
            # between tries, and would find the lock taken again by the next batch each time.
            # Letting go for that long (and at least as long as the batch held it) lets runs'
            # claims, heartbeats and output in: behind a 75 MB log, claims waited 4-5 s.
            stop.wait(max(SQLITE_YIELD_SECONDS, time.monotonic() - began))
