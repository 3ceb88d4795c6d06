"""What can go wrong talking to a server; every message is meant for a person."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from servers.ssh.keys import HostKey


class SSHError(Exception):
    kind: ClassVar[str] = "protocol"


class Unreachable(SSHError):
    kind = "unreachable"


class ConnectTimeout(SSHError):
    kind = "timeout"


class HostKeyUnknown(SSHError):
    kind = "host_key_unknown"

    def __init__(self, offered: HostKey) -> None:
        super().__init__(f"host key not trusted yet: server offers {offered.fingerprint}")
        self.offered = offered


class HostKeyChanged(SSHError):
    kind = "host_key_changed"

    def __init__(self, expected: HostKey, offered: HostKey) -> None:
        super().__init__(
            f"host key changed: expected {expected.fingerprint}, got {offered.fingerprint}"
        )
        self.expected = expected
        self.offered = offered


class AuthFailed(SSHError):
    kind = "auth_failed"


class CredentialError(SSHError):
    kind = "credential_error"


class ProtocolError(SSHError):
    kind = "protocol"


class Dropped(Exception):
    """The server hung up during the handshake, as sshd does past MaxStartups: retryable."""
