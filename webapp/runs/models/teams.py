"""Teams: people who share their searches, and their members' roles (who may do what with
a team's runs is answered in ``webapp/runs/access.py``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Team(models.Model):
    """People who share their searches: every member sees a team run, picks budgets from its
    table and deploys from it; its owner and the team's admins manage it (``access.py``)."""

    name = models.CharField(max_length=100, unique=True, help_text="what users choose (team)")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user in a team, as a member (sees and deploys the team's runs) or an admin (also
    cancels, resumes and deletes them)."""

    class Role(models.TextChoices):
        MEMBER = "member", "member: sees the team's runs and deploys from them"
        ADMIN = "admin", "admin: also cancels, resumes and deletes them"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        ordering = ["team", "user"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"
