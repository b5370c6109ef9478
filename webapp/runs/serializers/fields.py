"""The fields and checks every resource's serializer shares: the lifecycle fields, who asked,
teams and queues a user may use, budgets, ids of what the user sees, and numbers a database
holds exactly."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ponas.units import parse_budget
from webapp.runs import access, datasets, services
from webapp.runs.models import SearchRun, Team


def allowed(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(values)


# JSON numbers every database and client holds exactly: integers up to 2**53, finite floats.
MAX_SAFE_INTEGER = 2**53


def storable_number(value: Any) -> bool:
    """Whether every number in ``value`` (nested lists and objects too) is one a database and
    a client hold exactly. Walked without recursion: no nesting makes it raise."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and abs(item) > MAX_SAFE_INTEGER:
            return False
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return True


# What runs and deployments both report of their life: why it failed, when, on which worker.
LIFECYCLE = ["error", "created", "started", "finished", "worker", "heartbeat"]


class PublicErrorMixin:
    """``error`` as its user may read it: no server path, no worker host (datasets.py)."""

    def get_error(self, obj) -> str:
        if not obj.error:
            return ""
        run = obj if isinstance(obj, SearchRun) else obj.run
        return datasets.public_text(obj.error, run, obj.worker)


def requested_by_field(help_text: str) -> serializers.SlugRelatedField:
    """``requested_by``: the user name of who asked for a build, profile or audit (null once
    that user is deleted)."""
    return serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text=help_text
    )


@contextmanager
def field_errors() -> Iterator[None]:
    """A :class:`services.Refused` raised inside as DRF's ``{field: [message]}`` (a 400)."""
    try:
        yield
    except services.Refused as exc:
        raise serializers.ValidationError({exc.field: [str(exc)]}) from None


def user_queue(user, value: str) -> str:
    """A queue ``user`` may send heavy work to (staff: any)."""
    if value not in settings.PONAS_USER_QUEUES and not user.is_staff:
        raise serializers.ValidationError(
            f'the "{value}" queue is kept for the bookkeeping every run needs; '
            f"allowed: {allowed(settings.PONAS_USER_QUEUES)}"
        )
    return value


@extend_schema_field({"type": "string", "nullable": True, "example": "vision"})
class TeamField(serializers.Field):
    """A team by its name, one the requesting user is a member of; null (or empty): none, the
    run is private to its owner."""

    def to_internal_value(self, data: Any) -> Team | None:
        if data == "":
            return None
        if not isinstance(data, str):
            raise serializers.ValidationError(
                f"expected a team's name (a string), got {type(data).__name__}"
            )
        # matched here, not in a query: any string (a NUL too) is a name that is not theirs
        teams = {team.name: team for team in access.teams_of(self.context["request"].user)}
        if data not in teams:
            raise serializers.ValidationError(not_your_team(list(teams), data))
        return teams[data]

    def to_representation(self, value: Team) -> str:
        return value.name


def not_your_team(mine: list[str], name: str) -> str:
    """Why a user in the teams ``mine`` may not share a run with the team ``name`` (one they
    are not a member of; a team that does not exist reads the same)."""
    yours = f"your teams: {allowed(mine)}" if mine else "you are a member of no team"
    return f'you are not a member of a team named "{name:.100}"; {yours}'


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string"}], "example": "300M"})
class BudgetField(serializers.Field):
    """A budget: a positive number, or a string such as ``300M``, ``5.1m``, ``2e6``."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, int) and not isinstance(data, bool) and abs(data) > 1e300:
            # float() of an integer this long overflows; say so as parse_budget does
            raise serializers.ValidationError(
                f"invalid budget {str(data)[:4]}...: the number is too large"
            )
        try:
            return parse_budget(data)
        except (TypeError, ValueError, OverflowError) as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: float) -> float:
        return value


_DIGITS = re.compile(r"[0-9]+", re.ASCII)


class IdField(serializers.PrimaryKeyRelatedField):
    """An object by its id: an integer (or its digits), as ``does_not_exist`` when no database
    column could hold it."""

    def to_internal_value(self, data: Any):
        # an id is an integer (or its ASCII digits: "²" is a digit to str.isdigit, not to
        # int): 1.5 is not run 1, and a number no database column holds is no run at all
        if isinstance(data, str) and _DIGITS.fullmatch(data.strip()):
            if len(data.strip()) > 20:  # int() of thousands of digits is refused (or slow)
                self.fail("does_not_exist", pk_value="(huge id)")
            data = int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if not 0 < data < 2**63:
            self.fail("does_not_exist", pk_value=data if abs(data) < 10**20 else "(huge id)")
        return super().to_internal_value(data)


class RunField(IdField):
    """A run the requesting user sees: theirs or their team's (any other run is "not found",
    like a missing one)."""

    default_error_messages = {
        "required": "this field is required: the id of a succeeded run",
        "does_not_exist": "run {pk_value} not found",
        "incorrect_type": "expected a run id (an integer), got {data_type}",
    }

    def get_queryset(self):
        return access.visible_runs(self.context["request"].user)
