"""Signing in and API tokens: sign-in attempts are throttled per user and per address (DRF's
throttling, on the token endpoint, the login page and the admin login alike); API tokens are
django-rest-knox tokens (stored as hashes, expiring), revoked on the Tokens page and all at
once when the user's password changes."""

from __future__ import annotations

import hashlib
from functools import wraps

from django.contrib.auth import get_user_model
from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.http import HttpResponse
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.throttling import SimpleRateThrottle


class SignInThrottle(SimpleRateThrottle):
    """Counts sign-in attempts (POSTs) in the cache; a subclass says what it counts by."""

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def get_cache_key(self, request, view) -> str | None:
        ident = self.ident(request)
        if ident is None:
            return None
        digest = hashlib.sha256(ident.encode()).hexdigest()  # any length, any character
        return self.cache_format % {"scope": self.scope, "ident": digest}


class SignInUserThrottle(SignInThrottle):
    """Attempts for one username, from any address (``PONAS_SIGN_IN_RATE_USER``)."""

    scope = "sign_in_user"

    def ident(self, request) -> str | None:
        data = getattr(request, "data", None)
        if data is None:  # a Django request (the login pages)
            data = request.POST
        username = data.get("username") if hasattr(data, "get") else None
        return str(username).strip().lower() if username else None


class SignInAddressThrottle(SignInThrottle):
    """Attempts from one address, for any username (``PONAS_SIGN_IN_RATE_ADDRESS``)."""

    scope = "sign_in_address"

    def ident(self, request) -> str | None:
        return self.get_ident(request)


SIGN_IN_THROTTLES = (SignInAddressThrottle, SignInUserThrottle)


def too_many_attempts(wait: float | None) -> tuple[str, int]:
    """The message a throttled sign-in reads, and the seconds in its Retry-After header."""
    seconds = max(1, round(wait or 1))
    return f"too many sign-in attempts; try again in {seconds} s", seconds


def throttled_sign_in(view):
    """A sign-in view (the login page, the admin login) whose POSTs count against the same
    throttles as ``POST /api/auth/token/``: 429 with Retry-After once a limit is reached."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method == "POST":
            for throttle in (cls() for cls in SIGN_IN_THROTTLES):
                if not throttle.allow_request(request, None):
                    message, seconds = too_many_attempts(throttle.wait())
                    response = HttpResponse(message, status=429, content_type="text/plain")
                    response["Retry-After"] = str(seconds)
                    return response
        return view(request, *args, **kwargs)

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
