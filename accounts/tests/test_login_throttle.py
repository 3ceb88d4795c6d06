"""Password guessing is locked out per username and per client address (the admin login)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import LoginFailure

pytestmark = pytest.mark.django_db

PASSWORD = "pw-right-123!"


@pytest.fixture(autouse=True)
def small_limits(settings) -> None:
    settings.LOGIN_MAX_FAILURES_PER_USER = 3
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 5
    settings.LOGIN_LOCKOUT_SECONDS = 600


@pytest.fixture
def alice(django_user_model) -> User:
    return django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True)


def log_in(username: str, password: str, address: str = "10.0.0.1") -> tuple[bool, list[str]]:
    """Logged in?, and the form's errors. A fresh client each time, like a new guess."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        reverse("admin:login"),
        {"username": username, "password": password, "next": reverse("admin:index")},
    )
    if response.status_code == 302:
        return True, []
    return False, list(response.context["form"].non_field_errors())


def fail(username: str, times: int, address: str = "10.0.0.1") -> None:
    for _ in range(times):
        ok, errors = log_in(username, "wrong-password", address)
        assert not ok
        assert "Too many" not in " ".join(errors)


def test_username_is_locked_after_too_many_failures_even_with_the_right_password(alice):
    fail("alice", 3)
    assert log_in("alice", PASSWORD) == (
        False,
        ["Too many failed logins. Try again in 10 minutes."],
    )
    # From any address, and whatever the case of the name.
    assert log_in("ALICE", PASSWORD, "10.9.9.9")[0] is False
    assert LoginFailure.objects.filter(username="alice").count() == 3  # refusals add none


def test_failures_below_the_limit_do_not_lock(alice):
    fail("alice", 2)
    assert log_in("alice", PASSWORD) == (True, [])


def test_a_success_resets_the_usernames_count(alice):
    fail("alice", 2)
    assert log_in("alice", PASSWORD)[0]
    assert not LoginFailure.objects.filter(username="alice").exists()
    fail("alice", 2)
    assert log_in("alice", PASSWORD)[0]


def test_address_is_locked_after_failures_for_different_usernames(alice, django_user_model):
    django_user_model.objects.create_user("bob", password=PASSWORD, is_staff=True)
    for name in ("u1", "u2", "u3", "u4", "u5"):
        fail(name, 1, address="10.6.6.6")
    ok, errors = log_in("bob", PASSWORD, "10.6.6.6")
    assert not ok
    assert errors == ["Too many failed logins. Try again in 10 minutes."]
    # The same person from elsewhere is not affected.
    assert log_in("bob", PASSWORD, "10.7.7.7") == (True, [])


def test_lock_ends_when_the_failures_leave_the_window(alice):
    fail("alice", 3)
    window = timedelta(seconds=600)
    # The oldest failure that counts leaves the window in 90 s: rounded up, 2 minutes.
    LoginFailure.objects.update(at=timezone.now() - window + timedelta(seconds=90))
    assert log_in("alice", PASSWORD) == (False, ["Too many failed logins. Try again in 2 minutes."])
    LoginFailure.objects.update(at=timezone.now() - window + timedelta(seconds=30))
    assert log_in("alice", PASSWORD) == (False, ["Too many failed logins. Try again in 1 minute."])
    LoginFailure.objects.update(at=timezone.now() - window - timedelta(seconds=1))
    assert log_in("alice", PASSWORD) == (True, [])


def test_lock_lasts_until_the_oldest_counted_failure_expires(alice):
    fail("alice", 3)
    now = timezone.now()
    # Only the latest three count: an ancient fourth does not shorten or lengthen the lock.
    first, second, third = LoginFailure.objects.order_by("at")
    LoginFailure.objects.create(username="alice", at=now - timedelta(days=1))
    LoginFailure.objects.filter(pk=first.pk).update(at=now - timedelta(seconds=300))
    LoginFailure.objects.filter(pk__in=[second.pk, third.pk]).update(at=now)
    assert log_in("alice", PASSWORD)[1] == ["Too many failed logins. Try again in 5 minutes."]
