"""Output search through the databases' trigram indexes, and output stored compressed.

Chunks are written by the real output writer; the indexer is the one every worker runs.
"""

from __future__ import annotations

import importlib
import os
import random

import pytest
from django.db import connection, transaction
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from executions import search
from executions.models import Execution, LogChunk, Status
from executions.output import OutputWriter
from executions.tests.helpers import start, wait_until
from executions.tests.test_worker_process import start_worker  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


@pytest.fixture
def execution(make_job, make_server) -> Execution:
    return start(make_job("true", [make_server()]))


@pytest.fixture
def viewer(make_member, team):
    return make_member(team, Role.VIEWER)


@pytest.fixture
def api(viewer) -> APIClient:
    client = APIClient()
    token = ApiToken.issue(viewer, "search")[1]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def write(execution: Execution, *pieces: bytes | tuple[str, bytes]) -> None:
    """Store `pieces` (on stdout unless a piece names its stream) as the writer does, each
    written in one call."""
    host_run = execution.host_runs.get()
    with OutputWriter(execution.pk) as writer:
        for piece in pieces:
            stream, data = piece if isinstance(piece, tuple) else ("stdout", piece)
            writer.write(host_run.pk, stream, data)


def found(needle: str) -> set[int]:
    return set(search.chunks_containing(needle).values_list("execution_id", flat=True))


def searched_ids(api: APIClient, needle: str) -> list[int]:
    response = api.get("/api/v1/executions/", {"q": needle})
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


@pytest.mark.parametrize("indexed", [False, True], ids=["before indexing", "from the index"])
def test_text_split_between_two_chunks_is_found(execution, settings, indexed) -> None:
    settings.OUTPUT_CHUNK_BYTES = 4096
    needle = "deploy failed: disk full on /var"
    # One write that the writer cuts at 4096 bytes, in the middle of the needle.
    write(execution, b"x" * 4080 + f" {needle}\n".encode() + b"y" * 100)
    chunks = list(LogChunk.objects.filter(execution=execution).order_by("seq"))
    assert len(chunks) == 2
    assert all(needle.encode() not in chunk.data for chunk in chunks)
    if indexed:
        assert search.index_everything() == 4080 + len(needle) + 2 + 100
        assert not LogChunk.objects.filter(indexed=False).exists()
    assert found(needle) == {execution.pk}
    assert found("deploy failed: disk full on /usr") == set()


def test_a_line_over_many_small_chunks_is_found(execution) -> None:
    # Slow output: each piece a flush of its own, so each its own chunk.
    write(execution, b"conn", b"ection ref", b"used by 10.0.", b"3.7\nnext line\n")
    search.index_everything()
    assert LogChunk.objects.filter(execution=execution).count() >= 2
    assert found("connection refused by 10.0.3.7") == {execution.pk}
    # A search stays within a line: the end of one and the start of the next are not text.
    assert found("3.7next") == set()


def test_the_search_is_exact_case_and_bytes_included(execution) -> None:
    write(execution, "Résumé of ERROR 42\n".encode(), b"\xff\xfe binary \x00 then OK\n")
    search.index_everything()
    assert found("ERROR 42") == {execution.pk}
    assert found("error 42") == set()  # the trigram index folds case; the check does not
    assert found("Résumé") == {execution.pk}
    assert found("binary \x00 then") == {execution.pk}


def test_only_runs_the_user_may_see_are_found(
    execution, other_team, make_job, make_server, api
) -> None:
    hidden = start(make_job("true", [make_server(team=other_team)]))
    for run in (execution, hidden):
        write(run, b"shared marker 7781\n")
    search.index_everything()
    assert found("marker 7781") == {execution.pk, hidden.pk}
    assert searched_ids(api, "marker 7781") == [execution.pk]


@pytest.mark.parametrize(
    ("needle", "message"),
    [
        ("ab", "at least 3 characters"),
        ("two\nlines", "within one line"),
        ("x" * 300, "at most 256 bytes"),
    ],
)
def test_a_search_that_cannot_be_done_says_why(api, client, viewer, needle, message) -> None:
    response = api.get("/api/v1/executions/", {"q": needle})
    assert response.status_code == 400
    assert message in str(response.json()), response.json()
    client.force_login(viewer)
    page = client.get("/executions/", {"q": needle})
    assert message in page.content.decode()


def test_spaces_around_the_text_are_part_of_it(execution, api) -> None:
    write(execution, b"step 300: done\n")
    search.index_everything()
    assert searched_ids(api, "step 300") == [execution.pk]
    assert searched_ids(api, "step 300 ") == []
    assert searched_ids(api, "   ") == []


def test_a_search_the_ui_cannot_do_shows_no_runs_and_names_the_field(
    execution, client, viewer
) -> None:
    client.force_login(viewer)
    page = client.get("/executions/", {"q": "ok"}).content.decode()
    assert "Output contains: Output search needs at least 3 characters." in page
    assert f"/executions/{execution.pk}/" not in page  # not the unfiltered list instead


def test_two_indexers_never_index_a_chunk_twice(execution) -> None:
    write(execution, b"first\n", b"second\n")
    waiting = search.waiting_batch(1 << 20)
    assert len(waiting) == 2
    # Another worker's indexer claimed them between this one's read and its claim.
    assert search.claim_and_index(waiting) > 0
    assert search.claim_and_index(waiting) == 0


def test_deleted_output_leaves_the_index(execution) -> None:
    write(execution, b"forget me 5521\n")
    search.index_everything()
    if connection.vendor == "sqlite":
        assert _sqlite_index_rows("552") != []
    Execution.objects.filter(pk=execution.pk).delete()  # a cascade, as the admin's delete
    search.index_everything()
    assert found("forget me 5521") == set()
    if connection.vendor == "sqlite":
        # The contentless index was told: nothing of the chunk is left in it.
        assert _sqlite_index_rows("552") == []


def _sqlite_index_rows(trigram: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rowid FROM {search.FTS_TABLE} WHERE {search.FTS_TABLE} MATCH %s",
            [f'"{trigram}"'],
        )
        return [row[0] for row in cursor.fetchall()]


def test_postgresql_answers_from_its_trigram_index(execution) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner; run with DATABASE_URL=postgres://...")
    write(execution, b"needle-7f3a9c\n")
    search.index_everything()
    query = search.chunks_containing("needle-7f3a9c").order_by()
    with transaction.atomic(), connection.cursor() as cursor:
        # A handful of rows make a sequential scan cheaper: forbid it to see the index match
        # the query's expression at all.
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = query.explain()
    assert "logchunk_search" in plan, plan
    assert list(query.values_list("execution_id", flat=True)) == [execution.pk]


def test_sqlite_stores_output_compressed_and_reads_it_back_exactly(execution) -> None:
    text = b"".join(
        b"Dec 03 10:%02d:%02d web-%d nginx[%d]: GET /api/v1/items/%d 200\n"
        % (n // 60 % 60, n % 60, n % 50, 1000 + n, random.randrange(10**6))
        for n in range(2000)
    )
    binary = os.urandom(5000)
    write(execution, text, ("stderr", binary))
    chunks = LogChunk.objects.filter(execution=execution)
    assert b"".join(c.data for c in chunks.filter(stream=1).order_by("seq")) == text
    assert b"".join(c.data for c in chunks.filter(stream=2).order_by("seq")) == binary
    assert sum(chunks.values_list("size", flat=True)) == len(text) + len(binary)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT SUM(LENGTH(data)) FROM executions_logchunk WHERE execution_id = %s",
            [execution.pk],
        )
        (on_disk,) = cursor.fetchone()
    if connection.vendor == "sqlite":
        # The text packs to a fraction; random bytes do not shrink and are kept as they are.
        assert on_disk < len(text) / 3 + len(binary) + 100
    else:
        assert on_disk == len(text) + len(binary)  # TOAST compresses below the SQL level


@pytest.mark.real_queue
def test_a_worker_indexes_a_runs_output(make_job, make_server, start_worker, api) -> None:  # noqa: F811
    execution = start(make_job("echo 'backup done: 4412 files'", [make_server()]))
    start_worker(SEARCH_INDEX_IDLE_SECONDS="0.2")
    chunks = LogChunk.objects.filter(execution=execution)
    wait_until(
        lambda: chunks.exists() and not chunks.filter(indexed=False).exists(),
        60,
        "the worker to run the job and index its output",
    )
    execution.refresh_from_db()
    assert execution.status == Status.SUCCEEDED
    assert searched_ids(api, "done: 4412") == [execution.pk]


def test_upgrading_packs_the_output_stored_before_on_sqlite(execution) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite packs chunks")
    upgrade = importlib.import_module("executions.migrations.0013_output_search")
    text = b"an old line of output\n" * 100
    write(execution, text)
    with connection.cursor() as cursor:
        # As 0012 left it: the bytes as they came, no codec tag, no size.
        cursor.execute("UPDATE executions_logchunk SET data = %s, size = 0", [text])
        upgrade._pack_existing(connection)
        cursor.execute("SELECT LENGTH(data) FROM executions_logchunk")
        assert cursor.fetchone()[0] < len(text) / 4
    chunk = LogChunk.objects.get(execution=execution)
    assert (chunk.data, chunk.size) == (text, len(text))


def test_a_run_that_begins_to_match_between_count_and_page_leaves_no_old_one_out(
    execution, make_job, make_server, api
) -> None:
    # The list's count and its page are two queries. A run whose output begins to match in
    # between must not push an older match off the page (the page was cut at the count).
    needle = "deploy finished: release 7"
    write(execution, f"{needle}\n".encode())
    search.index_everything()
    newer = start(make_job("true", [make_server()]))
    counted: list[str] = []

    def new_match_after_the_count(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("SELECT COUNT(*)") and not counted:
            counted.append(sql)
            write(newer, f"{needle}\n".encode())
        return result

    with connection.execute_wrapper(new_match_after_the_count):
        response = api.get("/api/v1/executions/", {"q": needle})
    assert counted
    assert response.status_code == 200, response.content
    assert {item["id"] for item in response.json()["results"]} == {execution.pk, newer.pk}
