"""stdout and stderr keep the order in which the server sent them, across both streams."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from servers import ssh
from servers.tests.arrivals import Pieces, stream_switches

if TYPE_CHECKING:
    from collections.abc import Iterator

    from servers.tests.sshd import LocalSshd

pytest_plugins = ["servers.tests.sshd"]

pytestmark = pytest.mark.timeout(180)

# 200 lines 1 ms apart, odd ones on stdout, even ones on stderr, each flushed as written.
ALTERNATING = (
    "import sys, time\n"
    "for i in range(1, 201):\n"
    "    out, label = (sys.stdout, 'out') if i % 2 else (sys.stderr, 'err')\n"
    "    out.write(f'{i}-{label}\\n')\n"
    "    out.flush()\n"
    "    time.sleep(0.001)\n"
)
EXPECTED = [
    ("stdout" if i % 2 else "stderr", f"{i}-{'out' if i % 2 else 'err'}") for i in range(1, 201)
]


@pytest.fixture
def session(prompt_sshd: LocalSshd, arrivals: Pieces) -> Iterator[ssh.Session]:
    with ssh.connect(prompt_sshd.target()) as opened:
        yield opened


def assert_arrival_order(
    kept: list[tuple[ssh.Stream, str]], arrived: list[tuple[ssh.Stream, str]]
) -> None:
    """What was kept is what sshd sent, line for line and stream for stream.

    Not necessarily the order written: a busy sshd reads a command's stdout pipe, then its
    stderr pipe, and sends lines written 1 ms apart out of order itself. Each stream on its
    own is always in order, and the streams must really interleave for the test to mean
    anything (reading one buffer, then the other, keeps 1 switch).
    """
    assert sorted(arrived) == sorted(EXPECTED)
    for stream in ("stdout", "stderr"):
        assert [line for s, line in arrived if s == stream] == [
            line for s, line in EXPECTED if s == stream
        ]
    assert stream_switches(arrived) >= 10, f"sshd sent the streams in blocks: {arrived}"
    assert kept == arrived


def test_alternating_lines_1_ms_apart_are_kept_in_arrival_order(
    session: ssh.Session, arrivals: Pieces
) -> None:
    for _run in range(3):
        arrivals.clear()
        pieces = Pieces()
        result = session.run(
            ALTERNATING.encode(), "/usr/bin/python3", pieces, stop=threading.Event()
        )
        assert result == ssh.RunResult("exited", 0)
        assert_arrival_order(pieces.lines(), arrivals.lines())
