"""What a run stores: complete, ordered, byte-exact output per host and stream."""

import base64
import hashlib

import pytest

from executions.models import LogChunk, Status
from executions.tests.helpers import output, run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def test_each_host_gets_its_own_output_and_exit_code(make_server, make_job):
    ok, failing = make_server(name="ok"), make_server(name="failing")
    execution = run(make_job('echo "hello from $(hostname)"', [ok]))
    assert execution.status == Status.SUCCEEDED
    assert execution.summary == "1 succeeded"
    assert output(execution).startswith(b"hello from ")

    job = make_job("echo before; exit 3", [ok, failing])
    execution = run(job)
    assert execution.status == Status.FAILED
    runs = {run.server_name: run for run in execution.host_runs.all()}
    assert {name: (r.status, r.exit_code) for name, r in runs.items()} == {
        "ok": (Status.FAILED, 3),
        "failing": (Status.FAILED, 3),
    }
    assert output(execution, ok) == b"before\n"
    assert output(execution, failing) == b"before\n"
    assert execution.summary == "2 failed"


def test_exit_codes_are_kept_per_host(make_server, make_job, sshd, make_sshd):
    # Three real servers on three ports; the script exits with its server's port mod 256.
    servers = [make_server(sshd)] + [make_server(make_sshd()) for _ in range(2)]
    job = make_job(
        'echo "port ${SSH_CONNECTION##* }"; exit $(( ${SSH_CONNECTION##* } % 256 ))', servers
    )
    execution = run(job)
    for server in servers:
        host_run = execution.host_runs.get(server=server)
        assert host_run.exit_code == server.port % 256
        expected = Status.SUCCEEDED if server.port % 256 == 0 else Status.FAILED
        assert host_run.status == expected
        assert output(execution, server) == f"port {server.port}\n".encode()


def test_stdout_and_stderr_are_stored_apart_in_order(make_server, make_job):
    server = make_server()
    script = "for i in $(seq 1 200); do echo out$i; echo err$i >&2; done"
    execution = run(make_job(script, [server]))
    assert execution.status == Status.SUCCEEDED
    expected_out = "".join(f"out{i}\n" for i in range(1, 201)).encode()
    expected_err = "".join(f"err{i}\n" for i in range(1, 201)).encode()
    assert output(execution, stream="stdout") == expected_out
    assert output(execution, stream="stderr") == expected_err
    seqs = list(LogChunk.objects.filter(execution=execution).values_list("seq", flat=True))
    assert seqs == list(range(len(seqs)))


def test_binary_output_is_stored_byte_exact(make_server, make_job):
    server = make_server()
    script = (
        "python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 64)'\n"
        "printf '\\377\\376 not utf-8 \\303' >&2\n"
    )
    execution = run(make_job(script, [server]))
    assert execution.status == Status.SUCCEEDED
    assert output(execution, stream="stdout") == bytes(range(256)) * 64
    assert output(execution, stream="stderr") == b"\xff\xfe not utf-8 \xc3"


def test_ten_mib_on_both_streams_at_once_arrive_complete(make_server, make_job, settings):
    server = make_server()
    size = 10 * 1024 * 1024
    script = (
        f"head -c {size} /dev/urandom | tee /tmp/tsubame-out-$$ | base64 -w 100 &\n"
        f"head -c {size} /dev/zero | tr '\\0' e >&2\n"
        "wait\n"
        "sha256sum < /tmp/tsubame-out-$$ >&2; rm -f /tmp/tsubame-out-$$\n"
    )
    execution = run(make_job(script, [server]))
    assert execution.status == Status.SUCCEEDED
    stdout = output(execution, stream="stdout")
    stderr = output(execution, stream="stderr")
    assert stderr[:size] == b"e" * size
    raw = base64.b64decode(stdout.replace(b"\n", b""))
    assert len(raw) == size
    assert stderr[size:].split()[0].decode() == hashlib.sha256(raw).hexdigest()
    # Stored as bounded chunks, not one row per line nor one huge value.
    sizes = [
        len(d) for d in LogChunk.objects.filter(execution=execution).values_list("data", flat=True)
    ]
    assert max(sizes) <= settings.OUTPUT_CHUNK_BYTES
    assert len(sizes) < 1000


def test_utf8_text_is_never_cut_inside_a_character(make_server, make_job):
    server = make_server()
    script = (
        "python3 -c \"import sys\nfor i in range(20000): sys.stdout.write('ß€😀' * 7 + '\\n')\""
    )
    execution = run(make_job(script, [server]))
    assert execution.status == Status.SUCCEEDED
    for data in LogChunk.objects.filter(execution=execution).values_list("data", flat=True):
        bytes(data).decode()  # raises if a chunk boundary split a character
    assert output(execution).decode() == ("ß€😀" * 7 + "\n") * 20000


def test_python_interpreter_runs_the_script(make_server, make_job):
    server = make_server()
    job = make_job(
        "import sys\nprint('py', sys.version_info[0])\nsys.exit(7)",
        [server],
        interpreter="/usr/bin/python3",
    )
    execution = run(job)
    assert output(execution) == b"py 3\n"
    assert execution.host_runs.get().exit_code == 7


def test_script_typed_with_crlf_line_ends_runs_as_written(make_server, make_job):
    server = make_server()
    execution = run(make_job('cd /tmp\r\necho "in $(pwd)"\r\n', [server]))
    assert output(execution) == b"in /tmp\n"
    assert execution.status == Status.SUCCEEDED
