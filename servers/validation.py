from __future__ import annotations

from django.core.exceptions import ValidationError

from servers import ssh


def validate_one_printable_line(value: str) -> None:
    """Names label output (the raw log's `==> name <==` lines, the live viewer's host
    markers): a newline, a terminal escape or another unprintable character could forge one."""
    if not value.isprintable():
        raise ValidationError(
            "Only printable characters on one line: no newlines, tabs or control characters.",
            code="unprintable",
        )


def private_key_error(key: str, passphrase: str | None) -> str | None:
    """Why this key cannot be used, or None: refused when entered, not at 3 a.m. in a run."""
    try:
        ssh.load_private_key(ssh.Credentials(private_key=key, passphrase=passphrase or None))
    except ssh.CredentialError as exc:
        return str(exc)
    return None
