from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """The production algorithm with one iteration: hashes made in tests stay valid for the
    app processes that browser tests start (the iteration count travels in the hash)."""

    iterations = 1
