"""The SSH layer: connect with a pinned host key, run a script, stream its output, stop it.

Imports nothing from Django so it can be tested against a real sshd on its own.

Host keys are checked right after key exchange, before any credential is even parsed: an
unknown or changed key never sees a password or a signature.

Stopping a remote command: OpenSSH ignores "signal" requests without a pty, and closing the
channel does not kill a command that runs without one. What does hold (checked on OpenSSH
9.2) is that sshd runs each no-pty command as `$SHELL -c COMMAND` in a new session, so the
shell we exec is session and process-group leader and everything the script starts shares its
group. `run` sends `exec /bin/sh -c '<wrapper>'`, writes exactly len(script) bytes to stdin and
keeps stdin open. The wrapper copies those bytes into a private temp file, starts a watcher
that blocks reading the rest of stdin, and runs `interpreter tmpfile` with stdin at /dev/null.
Stdin reaches EOF when we cancel (`shutdown_write`), when the channel closes (even if our
caller raised), or when the TCP connection dies (our process was killed): the watcher then
sends TERM to its process group (`kill 0`), waits the grace period and sends KILL. On a normal
exit the wrapper kills the watcher first, so daemons the script started on purpose survive.
Processes that leave the group (setsid, a new session) escape this, as they would a Ctrl-C.

A connection lost while a command runs gives outcome "disconnected", not an exception: the
output so far was delivered and the caller records a result either way. Failing to start the
command at all raises ProtocolError.
"""

from servers.ssh.errors import (
    AuthFailed,
    ConnectTimeout,
    CredentialError,
    HostKeyChanged,
    HostKeyUnknown,
    ProtocolError,
    SSHError,
    Unreachable,
)
from servers.ssh.keys import Credentials, HostKey, load_private_key
from servers.ssh.remote import EXIT_DRAIN_SECONDS, INTERPRETER_PATTERN, RunResult, Stream
from servers.ssh.session import ConnectionCheck, Session, check_connection, connect
from servers.ssh.transport import Target, fetch_host_key

__all__ = [
    "EXIT_DRAIN_SECONDS",
    "INTERPRETER_PATTERN",
    "AuthFailed",
    "ConnectTimeout",
    "ConnectionCheck",
    "CredentialError",
    "Credentials",
    "HostKey",
    "HostKeyChanged",
    "HostKeyUnknown",
    "ProtocolError",
    "RunResult",
    "SSHError",
    "Session",
    "Stream",
    "Target",
    "Unreachable",
    "check_connection",
    "connect",
    "fetch_host_key",
    "load_private_key",
]
