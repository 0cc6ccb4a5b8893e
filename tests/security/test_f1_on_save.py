"""F1 on save: a webhook URL that could only be refused when sending (an internal address
written as itself) is refused when an admin saves it, unless allow-listed with it."""

from __future__ import annotations

import pytest

from helpdesk.models import ConfigChange
from helpdesk.outbound import url_problem


@pytest.fixture
def helpdesk_bundled_plugins() -> list[str]:
    return ["webhook"]


ON_SAVE = ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/", "http://localhost/",
           "http://[::1]/", "http://0x7f000001/", "http://2130706433/", "http://10.0.0.1/",
           "http://api.localhost/"]


@pytest.mark.parametrize("url", ON_SAVE)
def test_f1_a_webhook_url_on_an_internal_address_is_refused_when_saved(login, personas, url):
    admin = login(personas.admin)
    answer = admin.post("/admin/channels/webhook", {"webhook.urls": f"https://hooks.example.com/in\n{url}"})
    assert answer.status_code == 422 and "allow-list" in answer.get_data(as_text=True)
    assert ConfigChange.select().where(ConfigChange.key == "webhook.urls").count() == 0
    # Allow-listed with it (host or network), it is saved.
    host = url.split("//")[1].split("/")[0].rsplit(":", 1)[0] if "[" not in url else "::1"
    allowed = admin.post("/admin/channels/webhook", {"webhook.urls": url, "webhook.allow_private": host})
    assert allowed.status_code == 303, host


@pytest.mark.parametrize("url", ["https://hooks.example.com/in", "http://93.184.215.14:8080/x",
                                 "https://[2606:4700::1111]/"])
def test_f1_a_public_url_has_no_problem_on_save(url):
    assert url_problem(url) is None
