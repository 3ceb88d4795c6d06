"""Every page has the favicon and the script that tells the server the browser's time zone,
both static files (the CSP allows no inline script)."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["tsubame/favicon.svg", "tsubame/timezone.js"])
def test_every_page_links_the_static_file(client, path):
    page = client.get("/login/").content.decode()
    assert f'"/static/{path}"' in page
    assert finders.find(path), path


def test_favicon_ico_leads_to_the_icon(client):
    # Asked for by browsers on pages without a <link rel="icon">: the API's JSON, for one.
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("/tsubame/favicon.svg")
