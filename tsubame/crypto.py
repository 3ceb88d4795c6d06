"""Secrets at rest: an encrypted model field that fails closed, and key rotation.

Values are encrypted with tsubame's own ENCRYPTION_KEYS (Fernet, newest first: the first
encrypts, all decrypt), rotatable independently of SECRET_KEY. A value no configured key can
decrypt comes back as `Undecryptable`, which code that uses a secret must refuse.

The field decrypts only where values come from the database (`from_db_value`) and encrypts
only where they go to it (`get_prep_value`); it keeps no state of its own, because one field
object serves every thread (a library field we used before set a flag on it while cleaning,
and other threads then read the ciphertext as if it were the secret).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import models, transaction


class Undecryptable(str):
    """The stored ciphertext of a secret that no configured key can decrypt.

    It is a str so that loading and re-saving a row keeps the ciphertext unchanged rather
    than destroying the secret; it is never a usable secret.
    """


@functools.cache
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def cipher() -> MultiFernet:
    # Looked up on every use (memoized per key list), so a changed ENCRYPTION_KEYS setting
    # takes effect instead of being frozen at first use.
    return _cipher(tuple(settings.ENCRYPTION_KEYS))


def decrypt(ciphertext: str) -> str:
    """The plaintext, or `Undecryptable` when no configured key decrypts it."""
    try:
        return cipher().decrypt(ciphertext.encode()).decode()
    except (InvalidToken, UnicodeError):
        return Undecryptable(ciphertext)


class SecretTextField(models.TextField):
    """Text encrypted at rest; model instances hold the plaintext."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return None if value is None else decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if isinstance(value, Undecryptable):
            return str(value)  # re-saved as it was: the secret is kept for its key's return
        if not value:
            return None  # "not set" is stored as NULL, never as an encrypted empty string
        return cipher().encrypt(value.encode()).decode()


def is_usable_secret(value: str | None) -> bool:
    return bool(value) and not isinstance(value, Undecryptable)


class RotationError(Exception):
    pass


def secret_fields() -> Iterator[tuple[type[models.Model], list[SecretTextField]]]:
    """Every model that stores secrets, with its secret fields (a proxy shares its table)."""
    for model in apps.get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, SecretTextField)]
        if fields and not model._meta.proxy:
            yield model, fields


def rotate_keys() -> dict[str, int]:
    """Re-encrypt every stored secret with the newest key; the number of rows per model.

    All or nothing: one value that no configured key decrypts raises RotationError and
    changes nothing, so no secret is ever lost to a rotation.
    """
    counts: dict[str, int] = {}
    with transaction.atomic():
        for model, fields in secret_fields():
            names = [field.name for field in fields]
            label = model._meta.label
            counts[label] = 0
            rows = model._base_manager.select_for_update().only(*names).order_by("pk")
            for row in rows.iterator():
                secrets = {name: getattr(row, name) for name in names}
                for name, value in secrets.items():
                    if isinstance(value, Undecryptable):
                        raise RotationError(
                            f"{label} {row.pk}: the stored {name} cannot be decrypted with any "
                            "key in ENCRYPTION_KEYS; nothing was changed"
                        )
                if any(value is not None for value in secrets.values()):
                    # update() encrypts with the newest key and, unlike save(), leaves
                    # timestamps and signals alone: the secrets themselves do not change.
                    model._base_manager.filter(pk=row.pk).update(**secrets)
                    counts[label] += 1
    return counts
