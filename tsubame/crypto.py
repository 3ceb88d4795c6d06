"""Secrets at rest: an encrypted model field that fails closed.

django-fernet-encrypted-fields derives its key from SECRET_KEY and, when a value cannot be
decrypted, silently returns the ciphertext as if it were the secret. Here the keys are
tsubame's own ENCRYPTION_KEYS (rotatable independently of SECRET_KEY), and an undecryptable
value comes back as `Undecryptable`, which code that uses a secret must refuse.
"""

import functools
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from encrypted_fields.fields import EncryptedTextField


class Undecryptable(str):
    """The stored ciphertext of a secret that no configured key can decrypt.

    It is a str so that loading and re-saving a row keeps the ciphertext unchanged rather
    than destroying the secret; it is never a usable secret.
    """


@functools.cache
def _cipher(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


class SecretTextField(EncryptedTextField):
    @property
    def f(self) -> MultiFernet:
        # Looked up on every use (memoized per key list), so a changed ENCRYPTION_KEYS
        # setting takes effect instead of being frozen at first use.
        return _cipher(tuple(settings.ENCRYPTION_KEYS))

    def to_python(self, value: Any) -> Any:
        if value is None or not isinstance(value, str) or isinstance(value, Undecryptable):
            return value
        if hasattr(self, "_already_decrypted"):
            return value
        try:
            return self.f.decrypt(value.encode()).decode()
        except (InvalidToken, UnicodeError):
            return Undecryptable(value)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, Undecryptable):
            return str(value)
        return super().get_prep_value(value)


def is_usable_secret(value: str | None) -> bool:
    return bool(value) and not isinstance(value, Undecryptable)
