"""The serializer of live workers, and what a user may read of the task each runs."""

from __future__ import annotations

from rest_framework import serializers

from webapp.runs.models import Worker


def shown_task(current_task: str, user) -> str:
    """What ``user`` may read of a worker's current task: staff all of it, anyone else its
    name only (its arguments name other users' runs and builds)."""
    if getattr(user, "is_staff", False):
        return current_task
    return current_task.partition("[")[0].strip()


class WorkerSerializer(serializers.ModelSerializer):
    current_task = serializers.SerializerMethodField(
        help_text="the task it runs (its name; staff also read its id and arguments)"
    )

    def get_current_task(self, worker: Worker) -> str:
        request = self.context.get("request")
        return shown_task(worker.current_task, getattr(request, "user", None))

    class Meta:
        model = Worker
        fields = [
            "name",
            "queues",
            "device",
            "torch_version",
            "current_task",
            "started",
            "last_seen",
        ]
        read_only_fields = fields
