"""The serializers of device profiles: a profile by its id (the latency a budget is in), the
check that it is the run's, and a profile as it is created and listed."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webapp.runs import access, services
from webapp.runs.models import DeviceProfile, SearchRun, Status
from webapp.runs.serializers.fields import (
    IdField,
    PublicErrorMixin,
    field_errors,
    requested_by_field,
    user_queue,
)


@extend_schema_field({"type": "integer", "description": "a device profile id"})
class ProfileField(IdField):
    """A succeeded device profile of a run the requesting user sees (the latency to budget
    in)."""

    default_error_messages = {
        "does_not_exist": "device profile {pk_value} not found (or not measured yet)",
        "incorrect_type": "expected a device profile id (an integer), got {data_type}",
    }

    def get_queryset(self):
        return access.visible_profiles(self.context["request"].user).filter(status=Status.SUCCEEDED)


def check_profile(run: SearchRun, profile: DeviceProfile | None) -> None:
    """A profile given with a run must be one of that run's."""
    with field_errors():
        services.check_profile(run, profile)


class DeviceProfileSerializer(PublicErrorMixin, serializers.ModelSerializer):
    """A device's latency for a run: what to create (a queue), and what its worker measured."""

    error = serializers.SerializerMethodField(help_text="why the timing failed")

    queue = serializers.CharField(
        required=False,
        max_length=16,
        help_text="the Celery queue whose worker times the blocks on its device (default: the run's)",
    )
    requested_by = requested_by_field(
        "who asked for the timing (the run's owner or a member of its team)"
    )

    class Meta:
        model = DeviceProfile
        fields = [
            "id",
            "run",
            "queue",
            "device",
            "status",
            "error",
            "worker",
            "created",
            "started",
            "finished",
            "requested_by",
            "lut",
        ]
        read_only_fields = [f for f in fields if f != "queue"]

    def validate_queue(self, value: str) -> str:
        return user_queue(self.context["request"].user, value)
