"""Host keys (what we pin) and credentials (what we offer), and parsing private keys."""

from __future__ import annotations

import base64
import hashlib
import io
import re
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

# The messages below are shown as they are wherever a key is entered (form, admin, API):
# what was pasted and what to do, never the parsing library's own words.
ENCRYPTED = "this key is encrypted: give its passphrase"
WRONG_PASSPHRASE = "wrong passphrase for this key"
DAMAGED = (
    "this private key cannot be read: it is incomplete or damaged; paste the whole file, "
    "from its -----BEGIN line to its -----END line"
)
UNSUPPORTED = "this kind of private key is not supported: use an Ed25519, ECDSA or RSA key"
# How public keys begin: OpenSSH's one-line format (the .pub file), PEM and RFC 4716.
_PUBLIC_KEY_STARTS = (
    "ssh-",
    "ecdsa-sha2-",
    "sk-",
    "-----BEGIN PUBLIC KEY-----",
    "-----BEGIN RSA PUBLIC KEY-----",
    "---- BEGIN SSH2 PUBLIC KEY ----",
)
_PRIVATE_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


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


def _not_a_private_key(text: str) -> str | None:
    """What a pasted text is instead of a private key, in words; None if it looks like one."""
    if text.startswith(_PUBLIC_KEY_STARTS):
        return "this is a public key: paste the private key (the file without .pub)"
    if text.startswith("PuTTY-User-Key-File-"):
        return (
            "this is a PuTTY key: export it in OpenSSH format "
            "(PuTTYgen: Conversions, Export OpenSSH key) and paste that"
        )
    if "-----BEGIN CERTIFICATE-----" in text:
        return "this is a certificate, not a private key: paste the private key"
    if not _PRIVATE_KEY_BEGIN.search(text):
        return (
            "this is not a private key: paste the whole key file, from its "
            "-----BEGIN ... PRIVATE KEY----- line to its -----END line"
        )
    return None


def load_private_key(credentials: Credentials) -> paramiko.PKey:
    """Parse a private key in any common format; CredentialError says what is wrong with it."""
    text = (credentials.private_key or "").strip() + "\n"
    if problem := _not_a_private_key(text):
        raise CredentialError(problem)
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
                raise CredentialError(ENCRYPTED) from exc
            # A passphrase stored alongside an unencrypted key is harmless: ignore it.
            loaded = load(text.encode(), None)
    except ValueError as exc:
        # A wrong passphrase on a legacy encrypted PEM key decrypts to junk, and about one time
        # in 256 that junk has valid padding and fails later, as if the key were damaged.
        encrypted = "ENCRYPTED" in text or "password" in str(exc) or "checksum" in str(exc)
        if passphrase is not None and encrypted:
            raise CredentialError(WRONG_PASSPHRASE) from exc
        raise CredentialError(DAMAGED) from exc
    except TypeError as exc:
        raise CredentialError(DAMAGED) from exc
    except UnsupportedAlgorithm as exc:
        raise CredentialError(UNSUPPORTED) from exc
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
                raise CredentialError(UNSUPPORTED) from exc
    raise CredentialError(UNSUPPORTED)
