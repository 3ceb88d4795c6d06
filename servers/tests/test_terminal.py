"""Running a script under a pseudo-terminal: one merged stream in exact order, the script
delivered unchanged, and every way of stopping it still stops its whole process group."""

from __future__ import annotations

import hashlib
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from servers import ssh
from servers.ssh import remote
from servers.tests import test_ssh
from servers.tests.test_ssh import Output, pids_tagged, run, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers.tests.sshd import LocalSshd

pytest_plugins = ["servers.tests.sshd"]

pytestmark = pytest.mark.timeout(180)

token = test_ssh.token  # tags remote processes and kills what is left of them


@pytest.fixture
def session(sshd: LocalSshd) -> Iterator[ssh.Session]:
    with ssh.connect(sshd.target()) as opened:
        yield opened


def test_script_runs_on_a_terminal_of_a_sensible_size(session: ssh.Session) -> None:
    script = "test -t 1 && echo tty; echo $TERM; stty size </dev/tty; echo to-stderr >&2"
    result, output = run(session, script, terminal=True)
    assert result == ssh.RunResult("exited", 0)
    # One stream, as a terminal shows it: stderr is in it and a newline is CR LF.
    assert output.stdout == b"tty\r\nxterm-256color\r\n40 120\r\nto-stderr\r\n"
    assert output.stderr == b""


def test_order_is_exact_with_no_delay_at_all_between_lines(session: ssh.Session) -> None:
    # Without a terminal sshd reads the two pipes in turn and reorders these.
    script = (
        "import sys\n"
        "for i in range(1, 201):\n"
        "    out, label = (sys.stdout, 'out') if i % 2 else (sys.stderr, 'err')\n"
        "    out.write(f'{i}-{label}\\n')\n"
        "    out.flush()\n"
    )
    expected = "".join(f"{i}-{'out' if i % 2 else 'err'}\r\n" for i in range(1, 201)).encode()
    for _attempt in range(5):
        result, output = run(session, script, "/usr/bin/python3", terminal=True)
        assert result == ssh.RunResult("exited", 0)
        assert output.stdout == expected


def test_script_arrives_unchanged_and_is_not_echoed(session: ssh.Session) -> None:
    # Every byte a line discipline acts on (^C ^D ^Z ^S ^Q ^V ^U ^W, CR, DEL, NUL), and a
    # line far past a terminal's 4096-byte canonical limit, after the part that runs.
    tail = bytes(range(256)) * 8 + b"\r\r\n" + b"x" * 20_000 + b"\x03\x04\x1a"
    script = b'sha256sum <"$0"; exit 0\n' + tail
    result, output = run(session, script, "/bin/sh", terminal=True)
    assert result == ssh.RunResult("exited", 0)
    assert output.stdout == f"{hashlib.sha256(script).hexdigest()}  -\r\n".encode()


def stubborn_tree(token: str) -> str:
    """A child that ignores TERM and HUP, under a script that dies of TERM at once."""
    return f'(trap "" TERM HUP; exec -a {token}-stubborn sleep 1000) &\necho started\nwait\n'


@pytest.mark.parametrize("terminal", [False, True], ids=["no-terminal", "terminal"])
def test_cancel_kills_a_child_that_ignores_term_and_hup(
    session: ssh.Session, token: str, terminal: bool
) -> None:
    # Under a terminal the script's death hangs it up and HUPs the group, the watcher with it.
    stop = threading.Event()
    output = Output()
    results: list[ssh.RunResult] = []
    thread = threading.Thread(
        target=lambda: results.append(
            session.run(
                stubborn_tree(token).encode(),
                "/bin/bash",
                output,
                stop=stop,
                kill_grace=0.5,
                terminal=terminal,
            )
        )
    )
    thread.start()
    output.wait_for(b"started")
    wait_until(lambda: bool(pids_tagged(token)), 5, "the stubborn child runs")
    stop.set()
    thread.join(10)
    assert [result.outcome for result in results] == ["cancelled"]
    wait_until(lambda: not pids_tagged(token), 5, "the stubborn child is killed")


def test_silent_client_rule_stops_the_script_under_a_terminal(
    session: ssh.Session, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that stays connected but sends nothing, as in a partition.
    monkeypatch.setattr(remote.Heartbeat, "start", lambda beats: None)
    script = f"(exec -a {token} sleep 1000) &\necho started\nwait\n"
    result, output = run(session, script, heartbeat=0.2, kill_grace=0.5, terminal=True)
    assert result == ssh.RunResult("exited", 143)
    assert output.stdout.startswith(b"started")
    wait_until(lambda: not pids_tagged(token), 5, "the script's child is stopped")


class StopAfter(threading.Event):
    """Set once it has been asked `calls` times: a cancel that lands at a chosen step."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def is_set(self) -> bool:
        self.calls -= 1
        return self.calls < 0 or super().is_set()


def scripts_holding(token: str) -> list[Path]:
    found = []
    for path in Path("/tmp").glob("tmp.*"):
        try:
            if token.encode() in path.read_bytes():
                found.append(path)
        except OSError:
            continue  # someone else's, gone meanwhile
    return found


@pytest.mark.parametrize("terminal", [False, True], ids=["no-terminal", "terminal"])
def test_cancel_while_the_script_is_sent_runs_nothing_and_leaves_nothing(
    session: ssh.Session, token: str, terminal: bool
) -> None:
    script = f"echo {token} ran\n".encode() + b"#" * (1_000_000 + uuid.uuid4().int % 10**6)
    # Asked before opening the channel, then once per 32 KiB block: stops after two blocks.
    result, output = run(session, script, stop=StopAfter(3), terminal=terminal)
    assert (result, output.stdout) == (ssh.RunResult("cancelled", None), b"")
    # The wrapper's command line names the size it waits for, unique to this script.
    wait_until(lambda: not pids_tagged(f"head -c {len(script)} "), 5, "the wrapper ends")
    assert scripts_holding(token) == []


def test_server_that_refuses_a_terminal_is_a_protocol_error(make_sshd) -> None:
    with ssh.connect(make_sshd(extra_config={"PermitTTY": "no"}).target()) as refusing:
        with pytest.raises(ssh.ProtocolError, match="pseudo-terminal"):
            run(refusing, "echo never", terminal=True)
        # The connection is still good for runs without one.
        assert run(refusing, "echo fine")[1].stdout == b"fine\n"
