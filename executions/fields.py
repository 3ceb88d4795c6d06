"""How output bytes are kept on disk, behind the model fields that hold them.

On SQLite a chunk is stored compressed with zstd (one frame per chunk, behind a one-byte
codec tag), because SQLite keeps blobs as they come: a text log costs a quarter of its size
instead of all of it. On PostgreSQL chunks are stored as they are and the column is
compressed by TOAST with lz4 (migration 0003): the database must read them itself for
its trigram index (executions/search.py). Either way `LogChunk.data` reads and writes plain
bytes; only the database sees the difference.
"""

from __future__ import annotations

import threading
from typing import Any

import zstandard
from django.db import models

RAW, ZSTD = 0, 1
# Below this, a zstd frame's own header eats what it saves.
COMPRESS_FROM_BYTES = 128
# Level 1: the same ratio as level 3 on logs (0.245 vs 0.247 measured on a generated
# journal), half again as fast, on the output writer's one thread.
ZSTD_LEVEL = 1

_codecs = threading.local()


def _thread_codecs() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    # zstandard's (de)compressors are not safe to share between threads.
    if not hasattr(_codecs, "pair"):
        _codecs.pair = (zstandard.ZstdCompressor(level=ZSTD_LEVEL), zstandard.ZstdDecompressor())
    return _codecs.pair


def pack(data: bytes) -> bytes:
    """`data` as SQLite stores it: a codec tag, then the bytes, compressed if that pays."""
    if len(data) >= COMPRESS_FROM_BYTES:
        packed = _thread_codecs()[0].compress(data)
        if len(packed) < len(data):
            return bytes((ZSTD,)) + packed
    return bytes((RAW,)) + data


def unpack(stored: bytes) -> bytes:
    """What `pack` was given."""
    if stored[0] == ZSTD:
        return _thread_codecs()[1].decompress(memoryview(stored)[1:])
    if stored[0] == RAW:
        return bytes(memoryview(stored)[1:])
    raise ValueError(f"stored output has an unknown codec tag {stored[0]}")


class OutputField(models.BinaryField):
    """Output bytes: packed on SQLite, as they are on PostgreSQL (see the module's doc)."""

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if value is not None and connection.vendor == "sqlite":
            value = pack(bytes(value))
        return super().get_db_prep_value(value, connection, prepared)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is not None and connection.vendor == "sqlite":
            return unpack(value)
        return value


class ByteCountField(models.PositiveIntegerField):
    """The length of another field's bytes, as the model had them (not as stored), filled in
    on every insert: `LogChunk(data=...)` needs no size, and bulk_create fills it too."""

    def __init__(self, *args: Any, of: str = "data", **kwargs: Any) -> None:
        self.of = of
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["of"] = self.of
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> int:
        size = len(getattr(model_instance, self.of))
        setattr(model_instance, self.attname, size)
        return size
