"""Chunk boundaries never split a UTF-8 character, and chunks stay gap-free per execution."""

import threading

import pytest

from executions import services
from executions.models import Execution, HostRun, LogChunk, Status
from executions.output import OutputWriter, incomplete_utf8_tail, utf8_safe_split

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("data", "held"),
    [
        (b"abc", 0),
        ("é".encode()[:1], 1),
        ("€".encode()[:2], 2),
        ("😀".encode()[:3], 3),
        ("😀".encode(), 0),
        (b"x\xff", 0),
        (b"", 0),
    ],
)
def test_incomplete_utf8_tail(data, held):
    assert incomplete_utf8_tail(data) == held


def test_utf8_safe_split_backs_up_to_a_character_start():
    data = "a€b".encode()  # a, 3-byte euro, b
    assert utf8_safe_split(data, 2) == 1
    assert utf8_safe_split(data, 4) == 4
    assert utf8_safe_split(b"\x80" * 10, 5) == 5  # not text: cut where asked
    assert utf8_safe_split(data, 100) == len(data)


@pytest.mark.django_db(transaction=True)
def test_concurrent_hosts_get_gap_free_sequences_and_exact_bytes(settings, team):
    settings.OUTPUT_CHUNK_BYTES = 1000
    execution = Execution.objects.create(
        team=team, job_name="j", script="", interpreter="/bin/sh", max_parallel=4, trigger="system"
    )
    runs = [
        HostRun.objects.create(execution=execution, server_name=f"h{i}", address="a")
        for i in range(4)
    ]
    pieces = ["ünïcödé €😀 line\n".encode()[i % 7 :] for i in range(400)]

    with OutputWriter(execution.pk, queue_items=4) as writer:

        def produce(run):
            for piece in pieces:
                writer.write(run.pk, "stdout", piece)
                writer.write(run.pk, "stderr", piece[:3])
            # Its streams have ended: its end is stored after all of its output.
            end = services.HostEnd(run, Status.SUCCEEDED, exit_code=0)
            writer.call_together(services.finish_host_runs, end, after_output_of=run.pk)

        threads = [threading.Thread(target=produce, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    chunks = list(LogChunk.objects.filter(execution=execution).order_by("seq"))
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert max(len(c.data) for c in chunks) <= 1000
    for run in runs:
        mine = [c for c in chunks if c.host_run_id == run.pk]
        stdout = b"".join(bytes(c.data) for c in mine if c.stream == LogChunk.Stream.STDOUT)
        stderr = b"".join(bytes(c.data) for c in mine if c.stream == LogChunk.Stream.STDERR)
        assert stdout == b"".join(pieces)
        assert stderr == b"".join(p[:3] for p in pieces)
