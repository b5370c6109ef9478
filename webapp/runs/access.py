"""Who may see and who may manage a run: the one place pages, the API and the serializers ask.

A run is seen by its owner and, when it belongs to a team, by every member of that team: they
open it, read its table, preview and Pareto frontier, deploy from it, measure device profiles
and download what its deployments built (deployments and profiles belong to their run). Only
the owner and the team's admins cancel, resume or delete it. To anyone else the run and
everything under it does not exist (404, the same answer as a missing id).
"""

from __future__ import annotations

from django.db.models import QuerySet

from webapp.runs.models import Audit, Deployment, DeviceProfile, Membership, SearchRun, Team


class Forbidden(Exception):
    """The user sees the object but may not make this change (the API answers 403)."""


def teams_of(user) -> QuerySet[Team]:
    """The teams ``user`` is a member (or an admin) of."""
    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user)


def visible_runs(user) -> QuerySet[SearchRun]:
    """The runs ``user`` sees: their own and their teams' (each once)."""
    if not user.is_authenticated:
        return SearchRun.objects.none()
    # a subquery, not a join on the memberships: a run of a team of several is listed once
    teams = Membership.objects.filter(user=user).values("team_id")
    return SearchRun.objects.filter(owner=user) | SearchRun.objects.filter(team__in=teams)


def visible_deployments(user) -> QuerySet[Deployment]:
    """The deployments of the runs ``user`` sees, whoever of the team made them."""
    return Deployment.objects.filter(run__in=visible_runs(user))


def visible_profiles(user) -> QuerySet[DeviceProfile]:
    """The device profiles of the runs ``user`` sees."""
    return DeviceProfile.objects.filter(run__in=visible_runs(user))


def visible_audits(user) -> QuerySet[Audit]:
    """The table audits of the runs ``user`` sees, whoever of the team asked for them."""
    return Audit.objects.filter(run__in=visible_runs(user))


def require_cancel_audit(user, audit: Audit) -> None:
    """Raise :class:`Forbidden` unless ``user`` may cancel ``audit`` (one they see): who asked
    for it, the run's owner or an admin of its team."""
    if audit.requested_by_id == user.pk or can_manage(user, audit.run):
        return
    who = audit.requested_by.get_username() if audit.requested_by else "someone else"
    raise Forbidden(
        f"audit {audit.pk} was asked for by {who}: only they, the run's owner or an admin of "
        "its team may cancel it"
    )


def can_manage(user, run: SearchRun) -> bool:
    """Whether ``user`` may cancel, resume or delete ``run``: its owner, or an admin of its
    team."""
    if not user.is_authenticated:
        return False
    if run.owner_id == user.pk:
        return True
    return (
        run.team_id is not None
        and Membership.objects.filter(
            team_id=run.team_id, user=user, role=Membership.Role.ADMIN
        ).exists()
    )


def require_manage(user, run: SearchRun, verb: str) -> None:
    """Raise :class:`Forbidden` unless ``user`` may ``verb`` (cancel, resume, delete) the run
    they see."""
    if not can_manage(user, run):
        raise Forbidden(
            f"run {run.pk} belongs to {run.owner.get_username()} and is shared with team "
            f'"{run.team.name}": only its owner or an admin of the team may {verb} it'
        )
