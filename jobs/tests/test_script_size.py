"""One limit for a job's script (JOB_SCRIPT_MAX_BYTES), refused with the same message by the
UI, the admin and the API; the UI keeps what was typed."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken, Role
from jobs.models import Job

pytestmark = pytest.mark.django_db

LIMIT = 1000
TOO_LARGE = "echo é\n" * 126  # 1008 bytes of UTF-8 (126 * 8): "é" is two
MESSAGE = f"This script is 1,008 bytes; a job's script can be at most {LIMIT:,} bytes."


@pytest.fixture(autouse=True)
def limit(settings) -> None:
    settings.JOB_SCRIPT_MAX_BYTES = LIMIT


def form_fields(team, script: str) -> dict[str, object]:
    return {
        "team": team.pk,
        "name": "big",
        "interpreter": "/bin/bash",
        "script": script,
        "max_parallel": 10,
        "enabled": "on",
    }


@pytest.mark.parametrize("face", ["ui", "admin"])
def test_the_forms_refuse_a_script_over_the_limit_and_keep_it(
    client, make_member, superuser, team, face
) -> None:
    if face == "ui":
        client.force_login(make_member(team, Role.MANAGER))
        url = reverse("job-add")
    else:
        client.force_login(superuser)
        url = reverse("admin:jobs_job_add")
    response = client.post(url, form_fields(team, TOO_LARGE))
    assert response.status_code == 200
    form = response.context["form"] if face == "ui" else response.context["adminform"].form
    assert form.errors["script"] == [MESSAGE]
    assert form["script"].value() == TOO_LARGE
    assert not Job.objects.exists()


def test_the_api_refuses_a_script_over_the_limit_with_the_same_message(make_member, team) -> None:
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(make_member(team, Role.MANAGER), 't')[1]}"
    )
    body = {"team": team.pk, "name": "big", "script": TOO_LARGE}
    response = api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"script": [MESSAGE]}
    fits = api.post("/api/v1/jobs/", body | {"script": "x" * LIMIT}, format="json")
    assert fits.status_code == 201, fits.json()


def test_line_ends_are_counted_as_stored(client, make_member, team) -> None:
    # A browser sends CRLF; the job stores LF, and the limit is on what is stored.
    client.force_login(make_member(team, Role.MANAGER))
    script = "x" * (LIMIT - 10) + "\n" * 10
    response = client.post(reverse("job-add"), form_fields(team, script.replace("\n", "\r\n")))
    assert response.status_code == 302
    assert Job.objects.get().script == script


def test_a_form_body_past_djangos_default_limit_gets_the_form_not_a_bare_400(
    client, make_member, team
) -> None:
    # Django's own default (DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) answered this with "Bad
    # Request (400)" and the form was lost.
    client.force_login(make_member(team, Role.MANAGER))
    script = "x" * (3 * 1024 * 1024)
    response = client.post(reverse("job-add"), form_fields(team, script))
    assert response.status_code == 200
    assert response.context["form"].errors["script"] == [
        f"This script is {len(script):,} bytes; a job's script can be at most {LIMIT:,} bytes."
    ]


def test_django_reads_form_bodies_as_large_as_the_web_server_does() -> None:
    from tsubame import settings as defaults

    assert defaults.DATA_UPLOAD_MAX_MEMORY_SIZE == defaults.HTTP_MAX_BODY_BYTES
    assert defaults.HTTP_MAX_BODY_BYTES > 3 * defaults.JOB_SCRIPT_MAX_BYTES
