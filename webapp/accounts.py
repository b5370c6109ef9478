"""Signing in and API tokens: failed sign-ins are throttled (DRF's rate format, counted in the
cache, on the token endpoint, the login page and the admin login alike) per user name and
address, with a higher ceiling per user name from any address and one per address for any
name; API tokens are django-rest-knox tokens (stored as hashes, expiring), revoked on the
Tokens page, with ``POST /api/auth/logout/`` (``ponas remote logout``), and all at once when
the user's password changes.

Only failures count: a user who signs in often is never throttled, and someone who guesses
from other addresses does not lock the user out of theirs (until the per-name ceiling)."""

from __future__ import annotations

import hashlib
from functools import wraps

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.http import HttpResponse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class SignInThrottle(SimpleRateThrottle):
    """Counts failed sign-ins in the cache; a subclass says what it counts by. :meth:`full`
    asks before an attempt, :meth:`count_failure` counts one that failed."""

    def get_rate(self) -> str:
        # read when used, not when the class is defined: settings can change (tests do)
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def get_cache_key(self, request, view=None) -> str | None:
        ident = self.ident(request)
        if ident is None:
            return None
        digest = hashlib.sha256(ident.encode()).hexdigest()  # any length, any character
        return self.cache_format % {"scope": self.scope, "ident": digest}

    def full(self, request) -> bool:
        """Whether this many failures already happened within the period (:meth:`wait` then
        says how long until the oldest ages out)."""
        self.key = self.get_cache_key(request)
        self.history, self.now = [], self.timer()
        if self.key is None:
            return False
        self.history = self.cache.get(self.key, [])
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests

    def count_failure(self, request) -> None:
        key = self.get_cache_key(request)
        if key is None:
            return
        now = self.timer()
        history = [t for t in self.cache.get(key, []) if t > now - self.duration]
        self.cache.set(key, [now, *history][: self.num_requests], self.duration)


def _username(request) -> str | None:
    data = getattr(request, "data", None)
    if data is None:  # a Django request (the login pages)
        data = request.POST
    username = data.get("username") if hasattr(data, "get") else None
    return str(username).strip().lower() if username else None


class SignInUserAddressThrottle(SignInThrottle):
    """Failures for one user name from one address (``PONAS_SIGN_IN_RATE_USER_ADDRESS``)."""

    scope = "sign_in_user_address"

    def ident(self, request) -> str | None:
        username = _username(request)
        return None if username is None else f"{username}\0{self.get_ident(request)}"


class SignInUserThrottle(SignInThrottle):
    """Failures for one user name from any address (``PONAS_SIGN_IN_RATE_USER``): the
    ceiling on guessing one user's password from many addresses, higher than the one above."""

    scope = "sign_in_user"

    def ident(self, request) -> str | None:
        return _username(request)


class SignInAddressThrottle(SignInThrottle):
    """Failures from one address, for any user name (``PONAS_SIGN_IN_RATE_ADDRESS``)."""

    scope = "sign_in_address"

    def ident(self, request) -> str | None:
        return self.get_ident(request)


SIGN_IN_THROTTLES = (SignInAddressThrottle, SignInUserAddressThrottle, SignInUserThrottle)


def too_many_attempts(wait: float | None) -> tuple[str, int]:
    """The message a throttled sign-in reads, and the seconds in its Retry-After header."""
    seconds = max(1, round(wait or 1))
    return f"too many sign-in attempts; try again in {seconds} s", seconds


def sign_in_refused(request) -> float | None:
    """None when ``request`` may try to sign in; else the seconds to wait (a limit of failed
    sign-ins for its user name, address, or the pair is reached)."""
    for throttle in (cls() for cls in SIGN_IN_THROTTLES):
        if throttle.full(request):
            return throttle.wait() or 1.0
    return None


def count_failed_sign_in(request) -> None:
    """Count a sign-in that failed (wrong password, unknown user, a field missing)."""
    for throttle in (cls() for cls in SIGN_IN_THROTTLES):
        throttle.count_failure(request)


def throttled_sign_in(view):
    """A sign-in view (the login page, the admin login) whose failed POSTs count against the
    same limits as ``POST /api/auth/token/``: 429 with Retry-After once one is reached. A
    sign-in that succeeds redirects; any other answer to a POST is a failure."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "POST":
            return view(request, *args, **kwargs)
        wait = sign_in_refused(request)
        if wait is not None:
            message, seconds = too_many_attempts(wait)
            response = HttpResponse(message, status=429, content_type="text/plain")
            response["Retry-After"] = str(seconds)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code not in (301, 302, 303):
            count_failed_sign_in(request)
        return response

    return wrapper


def issue_token(user) -> tuple[AuthToken, str]:
    """A new API token for ``user`` (the instance and the token text, shown once); their
    expired tokens are removed on the way."""
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return AuthToken.objects.create(user=user)


@receiver(pre_save, sender=get_user_model())
def _revoke_tokens_on_password_change(sender, instance, raw=False, **kwargs) -> None:
    """A new password revokes every API token of the user (their sessions end too: Django
    checks the password hash in each session)."""
    if raw or instance.pk is None:
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        AuthToken.objects.filter(user_id=instance.pk).delete()
