"""Connections kept open after a run, for the next run on the same server.

A login (TCP, key exchange, host-key check, authentication) costs both sides tens of
milliseconds of CPU, more than running a short script; opening a session on a connection
that is already up costs a few. So a run's connection stays open, idle, for the
`keep_seconds` the run asks for, and the next run on the same `Target` in this process
takes it. A Target
compares the address, the login, the credentials and the pinned host key, so a server that
was re-keyed or given other credentials never gets a connection made under the old ones.

Each connection serves one run at a time: a fan-out to one sshd opens as many sessions at
once as it did without keeping (MaxSessions is never in play). Only a connection whose run
ended normally is kept. One that the server closed while idle (restarted, timed out) fails
to open its session before anything ran remotely: the run then connects afresh, once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from servers.ssh.errors import ProtocolError
from servers.ssh.remote import RunResult, Stream
from servers.ssh.session import Session, connect
from servers.ssh.transport import Target

# The most idle connections one process keeps: beyond it, the longest unused are closed.
MAX_IDLE = 64
# A server that is up confirms a session within milliseconds; a kept connection that gets
# no answer this long is taken for dead and replaced, rather than waited on for the whole
# connect timeout.
KEPT_OPEN_TIMEOUT_SECONDS = 2.0


class ConnectionPool:
    """Idle authenticated connections of this process, at most `max_idle` of them."""

    def __init__(self, max_idle: int = MAX_IDLE) -> None:
        self.max_idle = max_idle
        self._pid = os.getpid()
        self._idle: list[tuple[float, Target, Session]] = []  # (closes at, target, session)
        self._changed = threading.Condition()
        self._closing = False  # whether a thread closes idle connections when their time is up

    def run(
        self,
        target: Target,
        script: bytes,
        interpreter: str,
        on_output: Callable[[Stream, bytes], None],
        *,
        keep_seconds: float,
        stop: threading.Event,
        environment: Mapping[str, str] | None = None,
        **options: Any,
    ) -> RunResult:
        """`Session.run` on a kept connection to `target`, or on a new one; see there. The
        connection is then kept `keep_seconds` for the next run (0: closed at once).

        Raises what `connect` and `Session.run` raise.
        """

        def run_on(session: Session) -> RunResult:
            return session.run(
                script, interpreter, on_output, stop=stop, environment=environment, **options
            )

        kept = self._take(target)
        if kept is not None:
            try:
                result = run_on(kept)
            except ProtocolError:
                # The command did not start (Session.run raises ProtocolError for nothing
                # else): the server dropped the idle connection. Nothing ran; start afresh.
                kept.close()
            except BaseException:
                kept.close()
                raise
            else:
                self._give_back(target, kept, result, keep_seconds)
                return result
        session = connect(target)
        try:
            result = run_on(session)
        except BaseException:
            session.close()
            raise
        self._give_back(target, session, result, keep_seconds)
        return result

    def close_all(self) -> None:
        with self._changed:
            idle, self._idle = self._idle, []
            self._changed.notify()
        for _, _, session in idle:
            session.close()

    def _take(self, target: Target) -> Session | None:
        with self._changed:
            if self._pid != os.getpid():
                # A forked copy: those connections are the parent's sockets, never ours to
                # use or close.
                self._pid, self._idle, self._closing = os.getpid(), [], False
            index = next((i for i, kept in enumerate(self._idle) if kept[1] == target), None)
            if index is None:
                return None
            session = self._idle.pop(index)[2]
        if not session.is_active():
            session.close()
            return None
        session.open_timeout = min(target.connect_timeout, KEPT_OPEN_TIMEOUT_SECONDS)
        return session

    def _give_back(
        self, target: Target, session: Session, result: RunResult, keep_seconds: float
    ) -> None:
        # A cancelled, timed-out or broken run may leave its connection in any state.
        if keep_seconds <= 0 or result.outcome != "exited" or not session.is_active():
            session.close()
            return
        session.open_timeout = target.connect_timeout
        surplus = []
        with self._changed:
            self._idle.append((time.monotonic() + keep_seconds, target, session))
            if len(self._idle) > self.max_idle:
                # The longest unused go first: they are the closest to closing anyway.
                self._idle.sort(key=lambda kept: kept[0])
                surplus = self._idle[: len(self._idle) - self.max_idle]
                del self._idle[: len(surplus)]
            if not self._closing:
                self._closing = True
                threading.Thread(
                    target=self._close_expired, name="ssh-pool-closer", daemon=True
                ).start()
            self._changed.notify()
        for _, _, extra in surplus:
            extra.close()

    def _close_expired(self) -> None:
        """Close connections whose time is up; the thread ends when none is left idle."""
        while True:
            with self._changed:
                if not self._idle:
                    self._closing = False
                    return
                now = time.monotonic()
                expired = [kept for kept in self._idle if kept[0] <= now]
                self._idle = [kept for kept in self._idle if kept[0] > now]
                if not expired:
                    self._changed.wait(min(kept[0] for kept in self._idle) - now)
            for _, _, session in expired:
                session.close()
