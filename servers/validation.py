from __future__ import annotations

from servers import ssh


def private_key_error(key: str, passphrase: str | None) -> str | None:
    """Why this key cannot be used, or None: refused when entered, not at 3 a.m. in a run."""
    try:
        ssh.load_private_key(ssh.Credentials(private_key=key, passphrase=passphrase or None))
    except ssh.CredentialError as exc:
        return str(exc)
    return None
