"""How PostgreSQL stores output."""

from __future__ import annotations

import pytest
from django.db import connection

from executions.models import LogChunk

pytestmark = pytest.mark.django_db


def test_output_is_compressed_with_lz4_on_postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's column compression; run with DATABASE_URL=postgres://...")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attcompression FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = %s",
            [LogChunk._meta.db_table, LogChunk._meta.get_field("data").column],
        )
        assert cursor.fetchone() == ("l",)  # lz4, where pglz is PostgreSQL's default
