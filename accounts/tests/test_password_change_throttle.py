"""Guessing the current password on the admin's password change counts like a failed login."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from accounts.models import LoginFailure

pytestmark = pytest.mark.django_db

PASSWORD = "pw-right-123!"
NEW = "a-new-pw-456!"


@pytest.fixture(autouse=True)
def small_limits(settings) -> None:
    settings.LOGIN_MAX_FAILURES_PER_USER = 3
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 5
    settings.LOGIN_LOCKOUT_SECONDS = 600


@pytest.fixture
def alice(django_user_model) -> User:
    return django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True)


@pytest.fixture
def session(alice) -> Client:
    """Someone holding alice's session, e.g. at a computer she left unlocked."""
    client = Client(REMOTE_ADDR="10.0.0.1")
    client.force_login(alice)
    return client


def change(client: Client, old: str) -> tuple[bool, list[str]]:
    """Changed?, and the errors on the current password."""
    body = {"old_password": old, "new_password1": NEW, "new_password2": NEW}
    response = client.post(reverse("admin:password_change"), body)
    if response.status_code == 302:
        return True, []
    assert response.status_code == 200
    return False, list(response.context["form"].errors.get("old_password", []))


def test_wrong_current_passwords_lock_the_change_even_with_the_right_one(alice, session):
    for _ in range(3):
        assert change(session, "a-guess") == (
            False,
            ["Your old password was entered incorrectly. Please enter it again."],
        )
    assert change(session, PASSWORD) == (
        False,
        ["Too many failed password attempts. Try again in 10 minutes."],
    )
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    # The guesses count for the login too: one budget per account, whatever the form.
    assert LoginFailure.objects.filter(username="alice", address="10.0.0.1").count() == 3
    login = Client().post(reverse("admin:login"), {"username": "alice", "password": PASSWORD})
    assert login.status_code == 200


def test_the_right_password_below_the_limit_changes_it_and_resets_the_count(alice, session):
    assert not change(session, "a-guess")[0]
    assert change(session, PASSWORD) == (True, [])
    alice.refresh_from_db()
    assert alice.check_password(NEW)
    assert not LoginFailure.objects.filter(username="alice").exists()
