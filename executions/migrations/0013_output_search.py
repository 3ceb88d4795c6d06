"""Output is searched through each database's own trigram index (executions/search.py) and
stored compressed on SQLite (executions/fields.py: zstd chunks; PostgreSQL's TOAST has
compressed them with lz4 since migration 0003).

Existing chunks are packed on SQLite here, in batches; on either database they start out
not indexed, and the workers' indexers take them in (searches read them directly until then).
"""

from django.db import migrations, models

import executions.fields

BATCH = 500

SQLITE_SEARCH = [
    # Contentless with detail=none: the index keeps which chunks hold each trigram, nothing
    # more (see executions/search.py).
    "CREATE VIRTUAL TABLE executions_logchunk_search USING fts5("
    "body, content='', detail=none, tokenize='trigram')",
    # A contentless index forgets a row only when given its text again: what a delete took
    # away waits here for the indexer (whatever deleted it: retention, the admin, a cascade).
    "CREATE TABLE executions_logchunk_search_forget ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id INTEGER NOT NULL, "
    "line_start BLOB NOT NULL, data BLOB NOT NULL)",
    "CREATE TRIGGER executions_logchunk_search_forget AFTER DELETE ON executions_logchunk "
    "WHEN OLD.indexed BEGIN "
    "INSERT INTO executions_logchunk_search_forget (chunk_id, line_start, data) "
    "VALUES (OLD.id, OLD.line_start, OLD.data); END",
]
SQLITE_UNDO = [
    "DROP TRIGGER executions_logchunk_search_forget",
    "DROP TABLE executions_logchunk_search_forget",
    "DROP TABLE executions_logchunk_search",
]
POSTGRESQL_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # The expression executions.search queries with, or the planner cannot use it.
    "CREATE INDEX logchunk_search ON executions_logchunk USING gin "
    "((encode(line_start || data, 'escape')) gin_trgm_ops) WHERE indexed",
    "UPDATE executions_logchunk SET size = octet_length(data)",
]


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "sqlite":
        _pack_existing(connection)
        statements = SQLITE_SEARCH
    elif connection.vendor == "postgresql":
        # Chunks stay as they are, compressed by TOAST with lz4 (migration 0003).
        statements = POSTGRESQL_SEARCH
    else:
        return
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "sqlite":
        for statement in SQLITE_UNDO:
            schema_editor.execute(statement)
        _unpack_existing(connection)
    elif connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX logchunk_search")


def _rewrite(connection, convert) -> None:
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT id, data FROM executions_logchunk WHERE id > %s ORDER BY id LIMIT %s",
                [last, BATCH],
            )
            rows = cursor.fetchall()
            if not rows:
                return
            cursor.executemany(
                "UPDATE executions_logchunk SET data = %s, size = %s WHERE id = %s",
                [(*convert(bytes(data)), pk) for pk, data in rows],
            )
            last = rows[-1][0]


def _pack_existing(connection) -> None:
    _rewrite(connection, lambda data: (executions.fields.pack(data), len(data)))


def _unpack_existing(connection) -> None:
    def unpacked(stored: bytes) -> tuple[bytes, int]:
        data = executions.fields.unpack(stored)
        return data, len(data)

    _rewrite(connection, unpacked)


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0012_list_order_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="logchunk",
            name="data",
            field=executions.fields.OutputField(),
        ),
        migrations.AddField(
            model_name="logchunk",
            name="size",
            field=executions.fields.ByteCountField(default=0, of="data"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="logchunk",
            name="line_start",
            field=models.BinaryField(blank=True, default=b""),
        ),
        migrations.AddField(
            model_name="logchunk",
            name="indexed",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="logchunk",
            index=models.Index(
                condition=models.Q(("indexed", False)), fields=["id"], name="logchunk_unindexed"
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
