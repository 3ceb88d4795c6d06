"""The job editor's parameters, tags and secret variables, and the run dialog built from them."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from accounts.models import Role
from executions.models import Execution
from jobs.models import Job, SecretVariable
from jobs.parameters import clean_definitions
from servers.models import Server, Tag

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

DEFINITIONS = [
    {"name": "VERSION", "label": "Version", "required": True, "pattern": r"[0-9.]+"},
    {"name": "NOTES", "type": "text", "help": "Why this deploy."},
    {"name": "REPLICAS", "type": "integer", "default": 3, "min": 1, "max": 9},
    {"name": "DRY_RUN", "type": "boolean", "default": True},
    {"name": "ENVIRONMENT", "type": "choice", "choices": ["dev", "prod"], "default": "dev"},
    {"name": "MODULES", "type": "multichoice", "choices": ["api", "web", "cron"]},
    {"name": "TOKEN", "type": "secret"},
]
TYPED_TOKEN = "typed-token-never-shown-again"


def add_server(team, name: str, *tags: str, **fields) -> Server:
    # Port 9 on loopback: nothing here connects anywhere (runs are queued, not run).
    server = Server.objects.create(
        team=team, name=name, host="127.0.0.1", port=9, username="u", **fields
    )
    server.tags.set([Tag.named(tag) for tag in tags])
    return server


@pytest.fixture
def servers(team):
    return [add_server(team, "web-1", "web"), add_server(team, "db-1", "db")]


@pytest.fixture
def job(team, servers):
    job = Job.objects.create(
        team=team, name="deploy", script="true", parameters=clean_definitions(DEFINITIONS)
    )
    job.servers.set(servers[:1])
    return job


def as_member(team, role: Role, make_member) -> Client:
    client = Client()
    client.force_login(make_member(team, role))
    return client


def block(page: str, element_id: str) -> str:
    """The markup of the element with that id, to its end (elements here do not nest their own
    tag name)."""
    start = page.index(f'id="{element_id}"')
    tag = page.rindex("<", 0, start)
    name = re.match(r"<(\w+)", page[tag:]).group(1)
    return page[tag : page.index(f"</{name}>", start)]


def job_form_data(team, **fields) -> dict:
    return {
        "team": team.pk,
        "name": "deploy",
        "enabled": "on",
        "interpreter": "/bin/bash",
        "script": "true",
        "max_parallel": 10,
        "parameters": "[]",
        **fields,
    }


def test_the_job_editor_saves_definitions_in_order_with_tags_and_secret_variables(
    client, make_member, team, servers
):
    variable = SecretVariable.objects.create(team=team, name="DB_PASSWORD", value="pw-db-1234567")
    client.force_login(make_member(team, Role.MANAGER))
    definitions = [{"name": "ZETA"}, {"name": "ALPHA", "type": "integer", "default": 2}]
    response = client.post(
        "/jobs/new/",
        job_form_data(
            team,
            servers=[servers[0].pk],
            target_tags="web, db",
            parameters=json.dumps(definitions),
            secret_variables=[variable.pk],
        ),
    )
    assert response.status_code == 302, response.content.decode()
    job = Job.objects.get(name="deploy")
    assert [p["name"] for p in job.parameters] == ["ZETA", "ALPHA"]
    assert job.parameters[1]["default"] == 2
    assert sorted(tag.name for tag in job.target_tags.all()) == ["db", "web"]
    assert list(job.secret_variables.all()) == [variable]

    # The editor shows them again: the definitions as JSON for parameters.js, the tags, the box.
    page = client.get(f"/jobs/{job.pk}/edit/").content.decode()
    assert 'value="db, web"' in page
    assert re.search(rf'value="{variable.pk}"[^>]*checked', page)
    config = json.loads(block(page, "parameter-editor-config").split(">", 1)[1])
    assert config["applies"]["min"] == ["integer", "number"]
    assert "secret" not in config["applies"]["default"]


def test_a_bad_definition_is_refused_naming_the_parameter_and_nothing_is_saved(
    client, make_member, team, job
):
    client.force_login(make_member(team, Role.MANAGER))
    response = client.post(
        f"/jobs/{job.pk}/edit/",
        job_form_data(team, parameters=json.dumps([{"name": "OK"}, {"name": "PATH"}])),
    )
    assert response.status_code == 200
    errors = block(response.content.decode(), "field-parameters")
    assert "Parameter PATH: PATH is a name the shell or the system relies on" in errors
    job.refresh_from_db()
    assert [p["name"] for p in job.parameters] == [d["name"] for d in DEFINITIONS]


def test_the_job_editor_offers_only_secret_variables_the_user_may_see(
    client, make_member, team, other_team, job
):
    SecretVariable.objects.create(team=team, name="OURS", value="value-of-ours-123")
    theirs = SecretVariable.objects.create(
        team=other_team, name="THEIRS", value="value-of-theirs-123"
    )
    client.force_login(make_member(team, Role.MANAGER))
    page = client.get(f"/jobs/{job.pk}/edit/").content.decode()
    assert "OURS" in page
    assert "THEIRS" not in page
    response = client.post(
        f"/jobs/{job.pk}/edit/", job_form_data(team, secret_variables=[theirs.pk])
    )
    assert response.status_code == 200
    assert "Select a valid choice" in block(response.content.decode(), "field-secret_variables")
    assert not job.secret_variables.exists()


def test_the_run_dialog_has_an_input_of_each_parameters_type_with_its_default(
    client, make_member, team, job
):
    client.force_login(make_member(team, Role.OPERATOR))
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    dialog = block(page, "run-dialog")
    assert '<details id="run-dialog">' in page  # closed until asked for
    assert re.search(r'<input type="text" name="VERSION"', dialog)
    assert 'title="required">*</abbr>' in block(dialog, "parameter-VERSION")
    assert re.search(r'<textarea name="NOTES"', dialog)
    assert "Why this deploy." in block(dialog, "parameter-NOTES")
    assert re.search(r'<input type="number" name="REPLICAS" value="3" step="any"', dialog)
    assert re.search(r'<input type="checkbox" name="DRY_RUN"[^>]* checked', dialog)
    assert re.search(r'<option value="dev" selected>dev</option>', dialog)
    assert 'value="">—</option>' not in block(dialog, "parameter-ENVIRONMENT")  # has a default
    assert len(re.findall(r'<input type="checkbox" name="MODULES"', dialog)) == 3
    assert re.search(r'<input type="password" name="TOKEN"', dialog)

    # Asked for with ?run=1 (where Run leads when values are needed), the dialog is open.
    assert '<details id="run-dialog" open>' in client.get(f"/jobs/{job.pk}/?run=1").content.decode()


def test_a_bad_value_is_a_400_at_its_parameter_keeping_the_others_but_not_the_secret(
    client, make_member, team, job
):
    client.force_login(make_member(team, Role.OPERATOR))
    response = client.post(
        f"/jobs/{job.pk}/run/",
        {
            "chosen_targets": "True",
            "servers": [job.servers.get().pk],
            "VERSION": "one.two",
            "NOTES": "kept for the next try",
            "REPLICAS": "12",
            "TOKEN": TYPED_TOKEN,
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert '<details id="run-dialog" open>' in page
    assert "The value must match the pattern [0-9.]+" in block(page, "parameter-VERSION")
    assert "The value must be at most 9." in block(page, "parameter-REPLICAS")
    assert "errorlist" not in block(page, "parameter-NOTES")
    assert "kept for the next try" in block(page, "parameter-NOTES")
    assert TYPED_TOKEN not in page
    assert not Execution.objects.exists()


def test_a_valid_run_starts_with_the_values_typed(client, make_member, team, job):
    client.force_login(make_member(team, Role.OPERATOR))
    response = client.post(
        f"/jobs/{job.pk}/run/",
        {
            "chosen_targets": "True",
            "servers": [job.servers.get().pk],
            "VERSION": "1.2",
            "NOTES": "line one\r\nline two",
            "REPLICAS": "4",
            "ENVIRONMENT": "prod",
            "MODULES": ["web", "api"],
            "TOKEN": TYPED_TOKEN,
        },
    )
    execution = Execution.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/executions/{execution.pk}/"
    assert execution.parameters == {
        "VERSION": "1.2",
        "NOTES": "line one\nline two",
        "REPLICAS": 4,
        "DRY_RUN": False,  # unticked: a value, not the default
        "ENVIRONMENT": "prod",
        "MODULES": ["web", "api"],
        "TOKEN": None,
    }
    page = client.get(response["Location"]).content.decode()
    assert TYPED_TOKEN not in page
    assert "<dt>TOKEN</dt><dd>(secret)</dd>" in block(page, "execution-parameters")


def test_run_asks_first_when_a_value_is_needed(client, make_member, team, servers):
    client.force_login(make_member(team, Role.OPERATOR))
    job = Job.objects.create(team=team, name="asks", script="true")
    job.servers.set(servers)
    cases = [
        ([{"name": "OPTIONAL", "default": "x"}], False),
        ([{"name": "NEEDED", "required": True}], True),
        ([{"name": "NEEDED", "required": True, "default": "x"}], False),
        ([{"name": "TOKEN", "type": "secret"}], True),
    ]
    for definitions, asks in cases:
        job.parameters = clean_definitions(definitions)
        job.save()
        for url in ("/jobs/", f"/jobs/{job.pk}/"):
            page = client.get(url).content.decode()
            link = f'href="/jobs/{job.pk}/?run=1#run-dialog"'
            assert (link in page) == asks, (definitions, url)
            assert (f'action="/jobs/{job.pk}/run/" class="inline"' in page) == (not asks)


def test_the_plain_run_button_runs_the_jobs_own_targets_and_defaults(
    client, make_member, team, job, servers
):
    job.parameters = clean_definitions(
        [
            {"name": "DRY_RUN", "type": "boolean", "default": True},
            {"name": "FORCE", "type": "boolean"},
            {"name": "REPLICAS", "type": "integer", "default": 3},
        ]
    )
    job.save()
    job.target_tags.set([Tag.named("db")])
    tagged_later = add_server(team, "db-2", "db")  # tags resolve when the run starts
    client.force_login(make_member(team, Role.OPERATOR))
    response = client.post(f"/jobs/{job.pk}/run/")
    assert response.status_code == 302
    execution = Execution.objects.get()
    assert sorted(run.server_name for run in execution.host_runs.all()) == [
        "db-1",
        tagged_later.name,
        "web-1",
    ]
    assert execution.target_tags == ["db"]
    # Defaults, not the values of an untouched form (an unticked box would be false).
    assert execution.parameters == {"DRY_RUN": True, "REPLICAS": 3}


def test_a_plain_run_that_cannot_start_leads_to_the_dialog_saying_why(
    client, make_member, team, job
):
    job.enabled = False
    job.save()
    client.force_login(make_member(team, Role.OPERATOR))
    response = client.post(f"/jobs/{job.pk}/run/", follow=True)
    assert response.redirect_chain == [(f"/jobs/{job.pk}/?run=1#run-dialog", 302)]
    page = response.content.decode()
    assert "Not started: job &#x27;deploy&#x27; is disabled" in page
    assert '<details id="run-dialog" open>' in page
    assert not Execution.objects.exists()


def test_the_run_dialog_runs_the_ticked_tags_and_shows_where_they_lead(
    client, make_member, team, job
):
    add_server(
        team,
        "db-2",
        "db",
        last_check_status="unreachable",
        last_check_message="connection refused by 127.0.0.1",
    )
    job.target_tags.set([Tag.named("web")])
    client.force_login(make_member(team, Role.OPERATOR))
    tags = block(client.get(f"/jobs/{job.pk}/").content.decode(), "run-tags")
    assert re.search(r'name="tags" value="web"[^>]*checked', tags)
    assert re.search(r'name="tags" value="db"(?![^>]*checked)', tags)
    # Where the ticked tags lead is shown, the others' servers are listed hidden (for the script).
    (web,) = re.findall(r'<li data-tags="web ">(.*?)</li>', tags, re.S)
    assert "web-1" in web
    (db2,) = re.findall(r'<li data-tags="db " hidden>((?:(?!</li>).)*db-2.*?)</li>', tags, re.S)
    assert "unreachable" in db2
    assert "connection refused by 127.0.0.1" in db2

    response = client.post(
        f"/jobs/{job.pk}/run/",
        {"chosen_targets": "True", "tags": ["db"], "VERSION": "1", "TOKEN": TYPED_TOKEN},
    )
    assert response.status_code == 302
    execution = Execution.objects.get()
    assert sorted(run.server_name for run in execution.host_runs.all()) == ["db-1", "db-2"]
    assert execution.target_tags == ["db"]


def test_a_run_that_cannot_start_says_why_in_the_dialog(client, make_member, team, job):
    client.force_login(make_member(team, Role.OPERATOR))
    response = client.post(
        f"/jobs/{job.pk}/run/", {"chosen_targets": "True", "VERSION": "1", "TOKEN": "x"}
    )
    assert response.status_code == 400
    assert "job &#x27;deploy&#x27; has no target servers" in block(
        response.content.decode(), "run-dialog"
    )
    assert not Execution.objects.exists()


def test_a_viewer_cannot_run_and_is_offered_no_dialog(client, make_member, team, job):
    client.force_login(make_member(team, Role.VIEWER))
    assert 'id="run-dialog"' not in client.get(f"/jobs/{job.pk}/").content.decode()
    response = client.post(f"/jobs/{job.pk}/run/", {"VERSION": "1", "TOKEN": "x"})
    assert response.status_code == 403
    assert not Execution.objects.exists()
