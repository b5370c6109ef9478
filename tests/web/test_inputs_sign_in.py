"""Nobody can lock a user out by guessing from elsewhere (issue 28, item 11): only failed
sign-ins count, per user name and address, with a higher ceiling per user name from any
address; signing in, and GETs of the token endpoint, count against nothing."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PASSWORD = "alice-password-1"


def ask_token(password="wrong", username="alice", address="10.0.0.1"):
    return APIClient().post(
        "/api/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def rates(settings, **scopes: str) -> None:
    """Throttle rates for this test (the others as configured)."""
    rest = settings.REST_FRAMEWORK
    settings.REST_FRAMEWORK = {
        **rest,
        "DEFAULT_THROTTLE_RATES": {**rest["DEFAULT_THROTTLE_RATES"], **scopes},
    }


def test_wrong_passwords_from_other_addresses_do_not_lock_the_user_out(alice):
    for i in range(5):
        assert ask_token(address=f"10.0.1.{i}").status_code == 400
    assert ask_token(password=PASSWORD, address="10.0.2.1").status_code == 200


def test_the_same_wrong_guesses_from_one_address_are_throttled_there_only(alice):
    for _ in range(5):
        assert ask_token(address="10.0.1.1").status_code == 400
    response = ask_token(password=PASSWORD, address="10.0.1.1")
    assert response.status_code == 429
    assert response.json()["error"].startswith("too many sign-in attempts; try again in ")
    assert ask_token(password=PASSWORD, address="10.0.2.1").status_code == 200


def test_guessing_one_name_from_many_addresses_meets_the_per_name_ceiling(alice, settings):
    rates(settings, sign_in_user="8/minute")
    for i in range(8):
        assert ask_token(address=f"10.0.1.{i}").status_code == 400
    response = ask_token(password=PASSWORD, address="10.0.2.1")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert ask_token(username="bob", password="bob-password-1").status_code != 429


def test_signing_in_often_is_never_throttled(alice):
    for _ in range(12):
        assert ask_token(password=PASSWORD).status_code == 200


def test_gets_of_the_token_endpoint_count_against_nothing(alice):
    client = APIClient()
    for _ in range(30):
        assert client.get("/api/auth/token/", REMOTE_ADDR="10.0.0.1").status_code == 405
    assert ask_token(password=PASSWORD).status_code == 200


def test_the_login_page_counts_failures_only(alice):
    for _ in range(8):
        browser = Client()
        response = browser.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
        assert response.status_code == 302
    browser = Client()
    for _ in range(5):
        response = browser.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = browser.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    # the API counts the page's failures too (same name, same address)
    assert ask_token(password=PASSWORD, address="127.0.0.1").status_code == 429
    assert ask_token(password=PASSWORD, address="10.0.2.1").status_code == 200


# ---- signing out revokes the token (issue 28, item 16) ---------------------------------------


def test_logout_revokes_the_token_it_is_made_with_and_no_other(alice):
    first = ask_token(password=PASSWORD).json()["token"]
    second = ask_token(password=PASSWORD).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    response = client.post("/api/auth/logout/")
    assert response.status_code == 204
    assert client.get("/api/runs/").status_code == 401
    assert client.post("/api/auth/logout/").status_code == 401
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert other.get("/api/runs/").status_code == 200


def test_logout_needs_a_token_not_a_browser_session(alice):
    browser = APIClient()
    browser.force_login(alice)
    response = browser.post("/api/auth/logout/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"


def test_ponas_remote_logout_with_the_server_gone_says_the_token_stays_valid(
    tmp_path, monkeypatch, capsys
):
    import socket

    from ponas.cli import main
    from ponas.remote import Session

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "remote.json"
    monkeypatch.setenv("PONAS_REMOTE_CONFIG", str(config))
    url = f"http://127.0.0.1:{port}"
    Session(url, "a-token", "alice", None).save(config)
    assert main(["remote", "logout"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"signed out of {url}: the token is removed from {config}\n")
    assert f"could not revoke it (could not reach {url} (" in out
    assert f"it stays valid on the server; revoke it on {url}/account/tokens/" in out
    assert not config.exists()
