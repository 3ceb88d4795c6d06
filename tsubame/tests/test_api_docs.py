"""The API docs page runs no inline script: the Content-Security-Policy would block it."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_the_docs_page_loads_every_script_from_a_file(client) -> None:
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    html = response.content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts
    assert all("src=" in attributes and not body.strip() for attributes, body in scripts)
    assert "/static/tsubame/api-docs.js" in html
    assert 'data-schema-url="/api/v1/schema/"' in html
