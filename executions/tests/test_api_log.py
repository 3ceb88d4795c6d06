"""Reading a run's output through the API: pages in order per host, and the exact raw bytes."""

from __future__ import annotations

import base64

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from executions.models import Execution, HostRun, Status
from executions.tests.helpers import output, run, start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# All 256 byte values, three times: never valid UTF-8, and NUL and CR must survive too.
ALL_BYTES = bytes(range(256)) * 3
BINARY_SCRIPT = (
    'for n in 1 2 3; do for i in $(seq 0 255); do printf "\\\\$(printf %o "$i")"; done; done'
)


@pytest.fixture
def api(superuser) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(superuser, 'log')[1]}")
    return client


@pytest.fixture
def small_chunks(settings) -> None:
    # Many chunks from a little output, so that paging has something to page through.
    settings.OUTPUT_CHUNK_BYTES = 4096


def chunk_bytes(chunk: dict[str, object]) -> bytes:
    if "b64" in chunk:
        return base64.b64decode(str(chunk["b64"]))
    return str(chunk["text"]).encode()


def read_all(api: APIClient, execution: Execution, **params: object) -> list[dict[str, object]]:
    """Follow next_after until complete; every page but the last says it is not complete."""
    chunks: list[dict[str, object]] = []
    after = -1
    for _ in range(500):
        page = api.get(f"/api/v1/executions/{execution.pk}/log/", {"after": after, **params})
        assert page.status_code == 200, page.json()
        body = page.json()
        chunks += body["chunks"]
        if body["chunks"]:
            assert body["next_after"] == body["chunks"][-1]["seq"]
        else:
            assert body["next_after"] == after
        if body["complete"]:
            return chunks
        assert body["chunks"], "an incomplete page of a finished run must make progress"
        after = body["next_after"]
    raise AssertionError("the log never completed")


@pytest.fixture
def two_hosts(make_server, make_job, small_chunks) -> Execution:
    servers = [make_server(name="alpha"), make_server(name="beta")]
    script = 'seq -f "line %g" 1 20000; seq -f "err %g" 1 5000 >&2; seq -f "more %g" 1 5000'
    execution = run(make_job(script, servers))
    assert execution.status == Status.SUCCEEDED
    return execution


def test_log_pages_through_every_chunk_in_order(api, two_hosts):
    chunks = read_all(api, two_hosts, limit=3)
    seqs = [chunk["seq"] for chunk in chunks]
    assert seqs == list(range(len(seqs)))
    assert len(seqs) > 10
    for host_run in two_hosts.host_runs.all():
        for stream in ("stdout", "stderr"):
            mine = [c for c in chunks if c["host_run"] == host_run.pk and c["stream"] == stream]
            expected = output(two_hosts, host_run.server, stream)
            assert b"".join(chunk_bytes(c) for c in mine) == expected
    # All at once gives the same.
    assert read_all(api, two_hosts, limit=1000) == chunks


def test_log_pages_per_host(api, two_hosts):
    alpha = two_hosts.host_runs.get(server_name="alpha")
    chunks = read_all(api, two_hosts, host_run=alpha.pk, limit=2)
    assert {chunk["host_run"] for chunk in chunks} == {alpha.pk}
    seqs = [chunk["seq"] for chunk in chunks]
    assert seqs == sorted(seqs)
    stored = b"".join(bytes(chunk.data) for chunk in alpha.chunks.order_by("seq"))
    assert b"".join(chunk_bytes(chunk) for chunk in chunks) == stored
    stdout = [chunk for chunk in chunks if chunk["stream"] == "stdout"]
    assert b"".join(chunk_bytes(chunk) for chunk in stdout) == output(
        two_hosts, alpha.server, "stdout"
    )


def test_raw_log_separates_hosts(api, two_hosts):
    response = api.get(f"/api/v1/executions/{two_hosts.pk}/log/raw/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == (
        f'attachment; filename="execution-{two_hosts.pk}.log"'
    )
    alpha, beta = (two_hosts.host_runs.get(server_name=name) for name in ("alpha", "beta"))
    expected = (
        b"==> alpha <==\n"
        + b"".join(bytes(c.data) for c in alpha.chunks.order_by("seq"))
        + b"\n==> beta <==\n"
        + b"".join(bytes(c.data) for c in beta.chunks.order_by("seq"))
    )
    assert b"".join(response.streaming_content) == expected

    one = api.get(f"/api/v1/executions/{two_hosts.pk}/log/raw/", {"host_run": beta.pk})
    assert one["Content-Disposition"] == (
        f'attachment; filename="execution-{two_hosts.pk}-host-{beta.pk}.log"'
    )
    assert b"".join(one.streaming_content) == b"".join(
        bytes(c.data) for c in beta.chunks.order_by("seq")
    )


def test_binary_output_round_trips_exactly(api, make_server, make_job):
    execution = run(make_job(BINARY_SCRIPT, [make_server(name="only")]))
    assert execution.status == Status.SUCCEEDED
    assert output(execution) == ALL_BYTES

    raw = api.get(f"/api/v1/executions/{execution.pk}/log/raw/")
    assert b"".join(raw.streaming_content) == ALL_BYTES  # one host: no separator line

    chunks = read_all(api, execution)
    assert any("b64" in chunk for chunk in chunks)
    assert b"".join(chunk_bytes(chunk) for chunk in chunks) == ALL_BYTES


def test_log_of_a_queued_execution_is_empty_and_not_complete(api, make_server, make_job):
    execution = start(make_job("echo later", [make_server()]))
    body = api.get(f"/api/v1/executions/{execution.pk}/log/").json()
    assert body == {"chunks": [], "next_after": -1, "complete": False}
    raw = api.get(f"/api/v1/executions/{execution.pk}/log/raw/")
    assert b"".join(raw.streaming_content) == b""


def test_log_of_a_finished_execution_without_output_is_complete(api, make_server, make_job):
    execution = run(make_job("true", [make_server()]))
    body = api.get(f"/api/v1/executions/{execution.pk}/log/").json()
    assert body == {"chunks": [], "next_after": -1, "complete": True}
    assert HostRun.objects.get(execution=execution).status == Status.SUCCEEDED
