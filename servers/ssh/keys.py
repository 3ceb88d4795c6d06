"""Host keys (what we pin) and credentials (what we offer), and parsing private keys."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass, field

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from servers.ssh.errors import CredentialError

_KEY_CLASSES: tuple[tuple[type, type[paramiko.PKey]], ...] = (
    (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
    (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
    (rsa.RSAPrivateKey, paramiko.RSAKey),
)


@dataclass(frozen=True)
class HostKey:
    key_type: str
    key_base64: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.key_base64)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @classmethod
    def from_pkey(cls, key: paramiko.PKey) -> HostKey:
        return cls(key.get_name(), key.get_base64())


@dataclass(frozen=True)
class Credentials:
    # Kept out of repr so a traceback, a debug page or an error reporter never shows them.
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)
    passphrase: str | None = field(default=None, repr=False)


def load_private_key(credentials: Credentials) -> paramiko.PKey:
    """Parse a private key in any common format; CredentialError says what is wrong with it."""
    text = (credentials.private_key or "").strip() + "\n"
    passphrase = credentials.passphrase.encode() if credentials.passphrase else None
    load = (
        serialization.load_ssh_private_key
        if "BEGIN OPENSSH PRIVATE KEY" in text
        else serialization.load_pem_private_key
    )
    try:
        try:
            loaded = load(text.encode(), passphrase)
        except TypeError as exc:
            if passphrase is None:
                raise CredentialError(
                    "the private key is encrypted: a passphrase is needed"
                ) from exc
            # A passphrase stored alongside an unencrypted key is harmless: ignore it.
            loaded = load(text.encode(), None)
    except ValueError as exc:
        if passphrase is not None and ("password" in str(exc) or "checksum" in str(exc)):
            raise CredentialError("wrong passphrase for the private key") from exc
        raise CredentialError(f"cannot parse the private key: {exc}") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise CredentialError(f"cannot parse the private key: {exc}") from exc
    # cryptography reads every format (OpenSSH, PKCS#1, PKCS#8, encrypted or not); paramiko's
    # key classes all read unencrypted OpenSSH format, so hand them that.
    for crypto_class, key_class in _KEY_CLASSES:
        if isinstance(loaded, crypto_class):
            openssh = loaded.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            try:
                return key_class.from_private_key(io.StringIO(openssh.decode()))
            except paramiko.SSHException as exc:
                raise CredentialError(f"unsupported private key: {exc}") from exc
    raise CredentialError(f"unsupported private key type: {type(loaded).__name__}")
