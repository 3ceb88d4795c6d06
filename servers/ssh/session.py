"""An authenticated connection that runs scripts, and the connection check built on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from servers.ssh.errors import ConnectTimeout, ProtocolError, SSHError
from servers.ssh.remote import RunResult, Stream, capture_exit_signals, supervise, wrapper_command
from servers.ssh.transport import Target, open_transport


@dataclass(frozen=True)
class ConnectionCheck:
    status: str
    latency_ms: float | None
    message: str


def connect(target: Target) -> Session:
    return Session(open_transport(target.host, target.port, target.connect_timeout, target), target)


def check_connection(target: Target) -> ConnectionCheck:
    """Connect, authenticate and run `true` the way scripts run; latency covers all of it."""
    started = time.monotonic()
    try:
        with connect(target) as session:
            result = session.run(
                b"true", "/bin/sh", _discard, stop=threading.Event(), timeout=target.connect_timeout
            )
    except SSHError as exc:
        return ConnectionCheck(exc.kind, None, str(exc))
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    if result.outcome == "timed_out":
        return ConnectionCheck(ConnectTimeout.kind, None, "`true` did not finish in time")
    if result.exit_code != 0:
        return ConnectionCheck(ProtocolError.kind, latency_ms, f"`true` ended with {result}")
    return ConnectionCheck("ok", latency_ms, f"logged in as {target.username} and ran `true`")


def _discard(stream: Stream, data: bytes) -> None:
    pass


class Session:
    """An authenticated connection; each `run` gets its own channel, so runs may overlap."""

    def __init__(self, transport: paramiko.Transport, target: Target) -> None:
        self._transport = transport
        self._target = target
        self._signals: dict[int, str] = {}
        capture_exit_signals(transport, self._signals)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    def run(
        self,
        script: bytes,
        interpreter: str,
        on_output: Callable[[Stream, bytes], None],
        *,
        stop: threading.Event,
        timeout: float | None = None,
        kill_grace: float = 2.0,
    ) -> RunResult:
        """Run `script` with `interpreter`, passing output to `on_output` as it arrives.

        `on_output` may block: that only slows the remote down. Each stream's bytes arrive in
        order; how stdout and stderr interleave is not preserved (the channel buffers them
        apart). Raises ProtocolError if the command cannot be started.
        """
        command = wrapper_command(len(script), interpreter, kill_grace)
        if stop.is_set():
            return RunResult("cancelled", None)
        channel = self._open(command)
        try:
            outcome = supervise(channel, memoryview(script), on_output, stop, timeout, kill_grace)
            signal = self._signals.get(channel.get_id())
            reported = channel.exit_status >= 0 or signal is not None
            if outcome == "exited" and not reported:
                outcome = "disconnected"
            exit_code = channel.exit_status if channel.exit_status >= 0 else None
            return RunResult(outcome, exit_code, signal)
        finally:
            # Closing sends EOF too, so even if on_output raised the watcher stops the script.
            channel.close()
            self._signals.pop(channel.get_id(), None)

    def _open(self, command: str) -> paramiko.Channel:
        try:
            channel = self._transport.open_session(timeout=self._target.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ProtocolError(f"cannot open a session on {self._target.host}: {exc}") from exc
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise ProtocolError(f"cannot start a command on {self._target.host}: {exc}") from exc
        return channel
