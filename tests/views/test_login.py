"""Logging in and out; nothing is visible without it."""

from __future__ import annotations

import pytest

from tests.conftest import OVERVIEW_URL, PASSWORD

pytestmark = pytest.mark.django_db


def test_it_shows_the_login_page(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert "Log in" in response.text
    assert "AI Gateway spend" in response.text


def test_it_shows_the_demo_logins_in_demo_mode(client):
    response = client.get("/accounts/login/")
    assert "Demo logins" in response.text
    assert "demo-lead-2026" in response.text
    assert "built-in Cloudflare simulator" in response.text


def test_it_hides_the_demo_logins_outside_demo_mode(client, settings):
    settings.DEMO_MODE = False
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    assert "Demo logins" not in response.text
    assert "demo-lead-2026" not in response.text
    assert "simulator" not in response.text


def test_it_logs_in_and_lands_on_the_overview(client, lead):
    response = client.post(
        "/accounts/login/", {"username": "lena", "password": PASSWORD}, follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == OVERVIEW_URL
    assert "Credit balance" in response.text
    assert "lena" in response.text


def test_it_returns_to_the_page_asked_for(client, lead):
    response = client.post(
        f"/accounts/login/?next={OVERVIEW_URL}",
        {"username": "lena", "password": PASSWORD, "next": OVERVIEW_URL},
    )
    assert response.status_code == 302
    assert response["Location"] == OVERVIEW_URL


def test_it_refuses_a_wrong_password(client, lead):
    response = client.post("/accounts/login/", {"username": "lena", "password": "guess"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.text
    assert "_auth_user_id" not in client.session


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get(OVERVIEW_URL)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={OVERVIEW_URL}"


def test_it_sends_anonymous_visitors_to_login_for_a_fragment_too(client):
    response = client.get(OVERVIEW_URL, {"partial": "balance-card"}, headers={"HX-Request": "true"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_sends_anonymous_visitors_from_the_home_page_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_it_logs_out_with_a_post(lead_client):
    response = lead_client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert lead_client.get(OVERVIEW_URL).status_code == 302


def test_it_does_not_log_out_on_a_get(lead_client):
    assert lead_client.get("/accounts/logout/").status_code == 405
    assert lead_client.get(OVERVIEW_URL).status_code == 200


def test_it_renders_the_login_page_under_a_strict_csp(client):
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy
    assert "script-src 'self'" in policy
    assert " style=" not in response.text
    assert "<script>" not in response.text
