"""Passwords cannot be guessed at speed, and API tokens are stored hashed, expire and can be
revoked (issue 17, finding 5)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ALICE = {"username": "alice", "password": "alice-password-1"}


def ask_token(password="wrong", username="alice", address="10.0.0.1"):
    return APIClient().post(
        "/api/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def assert_throttled(response):
    assert response.status_code == 429
    seconds = int(response["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


def test_guessing_a_users_password_from_one_address_is_throttled(alice):
    for _ in range(5):
        assert ask_token().status_code == 400
    response = ask_token(password=ALICE["password"])
    seconds = assert_throttled(response)
    assert response.json() == {"error": f"too many sign-in attempts; try again in {seconds} s"}
    # the user, from their own address, still signs in (issue 28, item 11)
    assert ask_token(password=ALICE["password"], address="10.0.0.99").status_code == 200


def test_guessing_from_one_address_is_throttled_whatever_the_username(alice):
    for i in range(20):
        assert ask_token(username=f"user{i}").status_code == 400
    assert_throttled(ask_token(username="alice", password=ALICE["password"]))
    # a forged X-Forwarded-For does not make a new address
    response = APIClient().post(
        "/api/auth/token/",
        ALICE,
        format="json",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="1.2.3.4",
    )
    assert_throttled(response)
    assert ask_token(password=ALICE["password"], address="10.0.0.2").status_code == 200


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_the_login_pages_are_throttled_too(alice, url):
    browser = Client()
    for _ in range(5):
        response = browser.post(url, {"username": "alice", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    response = browser.post(url, ALICE)
    seconds = assert_throttled(response)
    assert response.content.decode() == f"too many sign-in attempts; try again in {seconds} s"


def test_a_script_still_gets_a_token_with_a_username_and_password(alice):
    response = ask_token(password=ALICE["password"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiry"}
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get("/api/runs/").status_code == 200


def test_tokens_are_stored_hashed(alice):
    token = ask_token(password=ALICE["password"]).json()["token"]
    stored = AuthToken.objects.get(user=alice)
    assert token not in (stored.digest, stored.token_key)
    assert len(stored.digest) == 128  # sha512


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_token_expires(alice):
    token = ask_token(password=ALICE["password"]).json()["token"]
    stored = AuthToken.objects.get(user=alice)
    assert timedelta(days=29) < stored.expiry - timezone.now() <= timedelta(days=30)
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    assert token_client(token).get("/api/runs/").status_code == 401


def test_changing_the_password_revokes_every_token(alice):
    tokens = [ask_token(password=ALICE["password"]).json()["token"] for _ in range(2)]
    alice.first_name = "Alice"  # other changes keep them
    alice.save()
    assert token_client(tokens[0]).get("/api/runs/").status_code == 200
    alice.set_password("a-new-password-2")
    alice.save()
    for token in tokens:
        response = token_client(token).get("/api/runs/")
        assert response.status_code == 401
        assert response.json() == {"error": "Invalid token."}


def test_a_user_sees_and_revokes_their_tokens_on_a_page(alice, bob):
    kept = ask_token(password=ALICE["password"]).json()["token"]
    revoked = ask_token(password=ALICE["password"], address="10.0.0.2").json()["token"]
    ask_token(username="bob", password="bob-password-1", address="10.0.0.3")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    page = browser.get("/account/tokens/").content.decode()
    assert page.count('class="token-key"') == 2  # alice's two, not bob's
    assert f'<code class="token-key">{revoked[:8]}…</code>' in page and revoked not in page
    digest = AuthToken.objects.get(token_key=revoked[:15]).digest
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    response = browser.post("/account/tokens/", {"revoke": digest, "csrfmiddlewaretoken": csrf})
    assert response.status_code == 302
    assert "1 token revoked" in browser.get(response["Location"]).content.decode()
    assert token_client(revoked).get("/api/runs/").status_code == 401
    assert token_client(kept).get("/api/runs/").status_code == 200
    browser.post("/account/tokens/", {"revoke": "all", "csrfmiddlewaretoken": csrf})
    assert token_client(kept).get("/api/runs/").status_code == 401
    assert AuthToken.objects.filter(user__username="bob").count() == 1
