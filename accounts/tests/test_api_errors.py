"""Bad input gets a 4xx with a JSON message that says what is wrong; never a 500."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from executions import services
from executions.models import Execution, Trigger
from jobs.models import Job
from servers.models import Server

pytestmark = pytest.mark.django_db

HUGE = 10**20  # past 64 bits


@pytest.fixture
def api(make_member, team) -> APIClient:
    client = APIClient()
    user = make_member(team, Role.MANAGER)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'errors')[1]}")
    return client


@pytest.fixture
def job(team) -> Job:
    server = Server.objects.create(team=team, name="web", host="h", username="u")
    job = Job.objects.create(team=team, name="deploy", script="true")
    job.servers.set([server])
    return job


@pytest.fixture
def execution(job) -> Execution:
    return services.start_execution(job, trigger=Trigger.API)


def errors_of(response, status: int = 400) -> dict[str, list[str]]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["detail"] == "The request is not valid."
    return body["errors"]


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/servers/", {"colour": "blue"}, "colour"),
        ("/api/v1/jobs/", {"scirpt": "true"}, "scirpt"),
        ("/api/v1/tokens/", {"name": "ci", "token": "my-own-choice"}, "token"),
    ],
)
def test_unknown_fields_are_refused_by_name(api, team, url, body, field):
    errors = errors_of(api.post(url, {"team": team.pk, "name": "n"} | body, format="json"))
    assert errors[field] == ["Unknown field."]


def test_unknown_fields_are_refused_in_updates_and_actions(api, job, team):
    errors = errors_of(api.patch(f"/api/v1/jobs/{job.pk}/", {"scirpt": "x"}, format="json"))
    assert errors == {"scirpt": ["Unknown field."]}
    errors = errors_of(api.post(f"/api/v1/jobs/{job.pk}/run/", {"server": [1]}, format="json"))
    assert errors == {"server": ["Unknown field."]}
    members = f"/api/v1/teams/{team.pk}/members/"
    errors = errors_of(
        api.post(members, {"user": "x", "role": "viewer", "admin": True}, format="json")
    )
    assert errors["admin"] == ["Unknown field."]
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/servers/", {"port": "twenty-two"}, "port"),
        ("/api/v1/servers/", {"port": 70000}, "port"),
        ("/api/v1/servers/", {"port": 1.5}, "port"),
        ("/api/v1/servers/", {"team": "ops"}, "team"),
        ("/api/v1/servers/", {"team": HUGE}, "team"),
        ("/api/v1/servers/", {"tags": "web"}, "tags"),
        ("/api/v1/servers/", {"auth_method": "telepathy"}, "auth_method"),
        ("/api/v1/servers/", {"private_key": "not a key"}, "private_key"),
        ("/api/v1/servers/", {"host": "a\x00b"}, "host"),
        ("/api/v1/jobs/", {"servers": 1}, "servers"),
        ("/api/v1/jobs/", {"servers": ["x"]}, "servers"),
        ("/api/v1/jobs/", {"enabled": "maybe"}, "enabled"),
        ("/api/v1/jobs/", {"timeout_seconds": 0}, "timeout_seconds"),
        ("/api/v1/jobs/", {"max_parallel": HUGE}, "max_parallel"),
        ("/api/v1/jobs/", {"interpreter": "bash"}, "interpreter"),
        ("/api/v1/jobs/", {"name": ["a", "list"]}, "name"),
        ("/api/v1/jobs/", {"name": "x" * 101}, "name"),
        ("/api/v1/tokens/", {"expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_wrong_types_and_values_are_a_400_naming_the_field(api, team, url, body, field):
    valid = {
        "/api/v1/servers/": {"team": team.pk, "name": "n", "host": "h", "username": "u"},
        "/api/v1/jobs/": {"team": team.pk, "name": "n", "script": "true"},
        "/api/v1/tokens/": {"name": "n"},
    }[url]
    assert list(errors_of(api.post(url, valid | body, format="json"))) == [field]
    assert not Server.objects.filter(name="n").exists()
    assert not Job.objects.filter(name="n").exists()


def test_numbers_json_cannot_hold_are_a_400(api, team):
    raw = f'{{"team": {team.pk}, "name": "n", "host": "h", "username": "u", "port": 1e400}}'
    response = api.post("/api/v1/servers/", raw, content_type="application/json")
    assert list(errors_of(response)) == ["port"]


@pytest.mark.parametrize("body", [[1, 2], "just a string", 42, None, True])
def test_a_body_that_is_not_an_object_is_a_400(api, job, body):
    response = api.post(
        f"/api/v1/jobs/{job.pk}/run/", json.dumps(body), content_type="application/json"
    )
    errors = errors_of(response)
    assert list(errors) == ["non_field_errors"]
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "raw", [b'{"name": "x",', b"\xff\xfe not utf-8", b'{"name": NaN}', b"{'name': 'x'}"]
)
def test_malformed_json_is_a_400(api, raw):
    response = api.post("/api/v1/tokens/", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000,  # past Python's recursion limit while parsing
        '{"name": ' + "[" * 900 + "]" * 900 + "}",  # parses, then validation walks it
    ],
)
def test_deeply_nested_json_is_a_400(api, raw):
    response = api.post("/api/v1/tokens/", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - nested deeper than 32 levels."}


def test_other_media_types_are_a_415(api):
    response = api.post(
        "/api/v1/tokens/", "name=x", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    assert response.json() == {
        "detail": 'Unsupported media type "application/x-www-form-urlencoded" in request.'
    }


def test_body_over_the_limit_is_a_413(api, team, settings):
    settings.API_MAX_BODY_BYTES = 1000
    body = {"team": team.pk, "name": "big", "script": "x" * 1000}
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1000 bytes."}
    assert not Job.objects.filter(name="big").exists()
    fits = api.post("/api/v1/jobs/", body | {"script": "x" * 800}, format="json")
    assert fits.status_code == 201


def test_body_over_the_limit_is_a_413_also_past_djangos_form_limit(api, team, settings):
    settings.API_MAX_BODY_BYTES = 3 * 1024 * 1024  # above DATA_UPLOAD_MAX_MEMORY_SIZE
    body = {"team": team.pk, "name": "big", "script": "x" * (4 * 1024 * 1024)}
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The request body is larger than {3 * 1024 * 1024} bytes."
    }


def test_body_larger_than_djangos_form_limit_fits_under_the_api_limit(api, team, settings):
    # Django refuses form bodies past DATA_UPLOAD_MAX_MEMORY_SIZE; the API reads JSON itself,
    # up to API_MAX_BODY_BYTES (5 MB by default).
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 512 * 1024  # below the script limit
    script = "echo " + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = api.post(
        "/api/v1/jobs/", {"team": team.pk, "name": "big", "script": script}, format="json"
    )
    assert response.status_code == 201
    assert Job.objects.get(name="big").script == script


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/servers/abc/",
        "/api/v1/servers/999999/",
        f"/api/v1/servers/{HUGE}/",
        "/api/v1/servers/-1/",
        "/api/v1/jobs/1.5/",
        "/api/v1/executions/abc/log/",
        "/api/v1/executions/999999/log/raw/",
        "/api/v1/teams/abc/members/",
        "/api/v1/no-such-thing/",
    ],
)
def test_invalid_ids_and_unknown_urls_are_a_json_404(api, url):
    response = api.get(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]


def test_unsupported_method_is_a_json_405(api, execution):
    response = api.put(f"/api/v1/executions/{execution.pk}/", {}, format="json")
    assert response.status_code == 405
    assert response.json() == {"detail": 'Method "PUT" not allowed.'}


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/executions/", {"job": HUGE}, "job"),
        ("/api/v1/executions/", {"team": HUGE}, "team"),
        ("/api/v1/executions/", {"created_after": "1e10"}, "created_after"),
    ],
)
def test_out_of_range_filters_are_a_400(api, url, params, field):
    assert field in errors_of(api.get(url, params))


@pytest.mark.parametrize(
    ("url", "params"),
    [
        ("/api/v1/executions/", {"server": HUGE}),
        ("/api/v1/jobs/", {"server": -HUGE}),
        ("/api/v1/audit/", {"at_after": "9999-12-31T23:59:59-10:00"}),
        ("/api/v1/executions/", {"created_before": "0001-01-01T00:00:00+10:00"}),
    ],
)
def test_filters_past_what_the_database_compares_are_not_a_500(api, url, params):
    response = api.get(url, params)
    # SQLite cannot compare them (400); PostgreSQL can, and finds nothing.
    if response.status_code == 200:
        assert response.json()["results"] == []
    else:
        assert response.status_code == 400
        assert "out of range" in str(response.json()["errors"])


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/servers/", {"tags": ["a\x00b"]}, "tags"),
        ("/api/v1/servers/", {"name": "a\x00b"}, "name"),
        ("/api/v1/teams/{team}/members/", {"user": "a\x00b", "role": "viewer"}, "user"),
        ("/api/v1/teams/{team}/members/", {"user": "root", "role": "a\x00b"}, "role"),
    ],
)
def test_nul_characters_are_a_400_before_any_lookup(api, team, url, body, field):
    # PostgreSQL cannot even compare text with NUL in it.
    response = api.post(url.format(team=team.pk), body, format="json")
    assert errors_of(response)[field] == ["Null characters are not allowed."]


def test_nul_in_a_username_in_the_path_is_a_404(api, team):
    response = api.delete(f"/api/v1/teams/{team.pk}/members/a%00b/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


def test_time_zone_offsets_the_database_cannot_compare_are_not_a_500(api):
    response = api.get("/api/v1/executions/", {"created_after": "2030-01-01T00:00:00+20:47"})
    # SQLite compares it in UTC; PostgreSQL refuses offsets past 16 hours.
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert "out of range" in str(errors_of(response))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "x"}, "after"),
        ({"after": -2}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 100_000}, "limit"),
        ({"host_run": "abc"}, "host_run"),
        ({"tail": 1}, "tail"),
    ],
)
def test_bad_log_query_parameters_are_a_400(api, execution, params, field):
    response = api.get(f"/api/v1/executions/{execution.pk}/log/", params)
    assert field in errors_of(response)


def test_bad_raw_log_host_run_is_a_400(api, execution):
    response = api.get(f"/api/v1/executions/{execution.pk}/log/raw/", {"host_run": "abc"})
    assert errors_of(response) == {"host_run": ["A valid integer is required."]}


def test_log_of_a_host_run_of_another_execution_is_a_404(api, job, execution):
    other = services.start_execution(job, trigger=Trigger.API)
    foreign = other.host_runs.get().pk
    for url in (
        f"/api/v1/executions/{execution.pk}/log/",
        f"/api/v1/executions/{execution.pk}/log/raw/",
    ):
        response = api.get(url, {"host_run": foreign})
        assert response.status_code == 404
        assert response.json() == {"detail": "No such host run in this execution."}
