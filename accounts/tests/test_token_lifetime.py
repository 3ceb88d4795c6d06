"""Every API token expires, at most API_TOKEN_MAX_DAYS after it is made, and a token made
with a token never outlives it: a stolen token cannot be renewed for ever."""

from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role

pytestmark = pytest.mark.django_db

# Time passes between computing an expected expiry and the server computing its own.
SLACK = timedelta(minutes=1)


@pytest.fixture
def alice(make_member, team) -> User:
    return make_member(team, Role.VIEWER, "alice")


@pytest.fixture(autouse=True)
def thirty_days(settings) -> None:
    settings.API_TOKEN_MAX_DAYS = 30


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def session(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def ends_about(expires_at: datetime | str, expected: datetime) -> bool:
    if isinstance(expires_at, str):
        expires_at = datetime.fromisoformat(expires_at)
    return abs(expires_at - expected) < SLACK


def test_api_token_without_expiry_gets_the_longest_lifetime(alice):
    created = session(alice).post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert created.status_code == 201
    assert ends_about(created.json()["expires_at"], timezone.now() + timedelta(days=30))


def test_api_refuses_an_expiry_past_the_longest_lifetime(alice):
    late = (timezone.now() + timedelta(days=31)).isoformat()
    body = {"name": "ci", "expires_at": late}
    response = session(alice).post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400
    (message,) = response.json()["errors"]["expires_at"]
    assert message.startswith("A token may be valid for at most 30 days: choose an expiry no later")
    assert not ApiToken.objects.exists()


def test_api_refuses_an_expiry_in_the_past(alice):
    past = (timezone.now() - timedelta(minutes=5)).isoformat()
    body = {"name": "ci", "expires_at": past}
    response = session(alice).post("/api/v1/tokens/", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"expires_at": ["The expiry must be in the future."]}


def test_a_token_cannot_make_a_token_that_outlives_it(alice):
    parent, secret = ApiToken.issue(alice, "parent", expires_at=timezone.now() + timedelta(hours=2))
    api = bearer(secret)

    later = (parent.expires_at + timedelta(minutes=1)).isoformat()
    refused = api.post("/api/v1/tokens/", {"name": "child", "expires_at": later}, format="json")
    assert refused.status_code == 400
    (message,) = refused.json()["errors"]["expires_at"]
    assert message.startswith("A token cannot outlive the token used to create it")

    default = api.post("/api/v1/tokens/", {"name": "child"}, format="json")
    assert default.status_code == 201
    assert ApiToken.objects.get(name="child").expires_at == parent.expires_at

    sooner = (parent.expires_at - timedelta(minutes=1)).isoformat()
    allowed = api.post("/api/v1/tokens/", {"name": "sooner", "expires_at": sooner}, format="json")
    assert allowed.status_code == 201


def test_ui_refuses_more_days_than_allowed_and_defaults_to_the_most(client: Client, alice):
    client.force_login(alice)
    url = reverse("token-list")
    refused = client.post(url, {"name": "laptop", "expires_in_days": 31})
    assert refused.status_code == 200
    assert "A token may be valid for at most 30 days: choose" in refused.content.decode()
    assert not ApiToken.objects.exists()

    client.post(url, {"name": "laptop", "expires_in_days": ""})
    token = ApiToken.objects.get()
    assert ends_about(token.expires_at, timezone.now() + timedelta(days=30))


def test_admin_refuses_an_expiry_past_the_longest_lifetime(client: Client, alice):
    client.force_login(alice)
    url = reverse("admin:accounts_apitoken_add")
    late = timezone.now() + timedelta(days=40)
    form = {"name": "late", "expires_at_0": f"{late:%Y-%m-%d}", "expires_at_1": "00:00:00"}
    refused = client.post(url, form)
    assert refused.status_code == 200
    assert "A token may be valid for at most 30 days" in refused.content.decode()
    assert not ApiToken.objects.exists()

    assert client.post(url, {"name": "default", "expires_at": ""}).status_code == 302
    token = ApiToken.objects.get()
    assert ends_about(token.expires_at, timezone.now() + timedelta(days=30))


def test_command_refuses_more_days_than_allowed_and_defaults_to_the_most(alice):
    with pytest.raises(CommandError, match="at most 30 days: choose"):
        call_command("create_api_token", "alice", "--expires-days", "31", stdout=StringIO())
    call_command("create_api_token", "alice", stdout=StringIO())
    token = ApiToken.objects.get()
    assert ends_about(token.expires_at, timezone.now() + timedelta(days=30))


RULE = "A token may be valid for at most 30 days: choose an expiry no later than "


def refusal_by_ui(alice: User) -> str:
    client = Client()
    client.force_login(alice)
    refused = client.post(reverse("token-list"), {"name": "laptop", "expires_in_days": 31})
    return " ".join(refused.context["form"].errors["expires_in_days"])


def refusal_by_api(alice: User) -> str:
    late = (timezone.now() + timedelta(days=31)).isoformat()
    body = {"name": "ci", "expires_at": late}
    return " ".join(
        session(alice).post("/api/v1/tokens/", body, format="json").json()["errors"]["expires_at"]
    )


def refusal_by_admin(alice: User) -> str:
    client = Client()
    client.force_login(alice)
    late = timezone.now() + timedelta(days=31)
    form = {"name": "late", "expires_at_0": f"{late:%Y-%m-%d}", "expires_at_1": f"{late:%H:%M:%S}"}
    refused = client.post(reverse("admin:accounts_apitoken_add"), form)
    return " ".join(refused.context["adminform"].form.errors["expires_at"])


def refusal_by_command(alice: User) -> str:
    with pytest.raises(CommandError) as refused:
        call_command("create_api_token", "alice", "--expires-days", "31", stdout=StringIO())
    return str(refused.value)


@pytest.mark.parametrize(
    "refusal", [refusal_by_ui, refusal_by_api, refusal_by_admin, refusal_by_command]
)
def test_every_face_refuses_a_long_lifetime_with_the_one_rule(alice, refusal):
    assert refusal(alice).startswith(RULE)
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("days", ["0", "-1"])
def test_command_refuses_a_lifetime_that_is_over_before_it_starts(alice, days):
    with pytest.raises(CommandError, match=r"^The expiry must be in the future\.$"):
        call_command("create_api_token", "alice", f"--expires-days={days}", stdout=StringIO())
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (10**20, RULE),
        (999999999, RULE),
        (0, "The expiry must be in the future."),
        (-(10**20), "The expiry must be in the future."),
    ],
)
def test_ui_and_command_refuse_lifetimes_past_any_calendar_by_the_rule(alice, days, message):
    client = Client()
    client.force_login(alice)
    refused = client.post(reverse("token-list"), {"name": "laptop", "expires_in_days": days})
    assert refused.context["form"].errors["expires_in_days"][0].startswith(message)
    with pytest.raises(CommandError) as command:
        call_command("create_api_token", "alice", f"--expires-days={days}", stdout=StringIO())
    assert str(command.value).startswith(message)
    assert not ApiToken.objects.exists()
