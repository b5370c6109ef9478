"""The serializer of deployments: what a client asks for (a run, budgets, a profile, fine-tune
epochs, formats), validated by choosing the network (``services.choose_network``), and the
build's result with its download links."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.reverse import reverse

from ponas.files import DEFAULT_FORMATS
from ponas.table import COST_KINDS
from webapp.runs import services
from webapp.runs.models import FORMATS, Deployment, SearchRun, Status
from webapp.runs.serializers.fields import (
    LIFECYCLE,
    BudgetField,
    PublicErrorMixin,
    RunField,
    allowed,
    field_errors,
    requested_by_field,
)
from webapp.runs.serializers.profiles import ProfileField

# What a client sends for a deployment; the rest is the build's result.
DEPLOYMENT_INPUTS = ("run", "max_macs", "max_params", "max_latency_ms", "profile")
DEPLOYMENT_INPUTS += ("finetune_epochs", "formats")


class DeploymentSerializer(PublicErrorMixin, serializers.ModelSerializer):
    error = serializers.SerializerMethodField(help_text="why the build failed")
    run = RunField()
    max_macs = BudgetField(required=False, allow_null=True)
    max_params = BudgetField(required=False, allow_null=True)
    max_latency_ms = BudgetField(required=False, allow_null=True)
    profile = ProfileField(
        required=False,
        allow_null=True,
        help_text="a device profile of the run: max_latency_ms is that device's latency",
    )
    finetune_epochs = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=100
    )
    formats = serializers.MultipleChoiceField(
        choices=FORMATS,
        required=False,
        allow_empty=False,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a format; allowed: {allowed(FORMATS)}',
            "not_a_list": f"expected a list of formats ({allowed(FORMATS)}), got {{input_type}}",
            "empty": f"give at least one format: {allowed(FORMATS)}",
        },
    )
    downloads = serializers.SerializerMethodField()
    requested_by = requested_by_field(
        "who asked for the build (the run's owner or a member of its team)"
    )

    class Meta:
        model = Deployment
        fields = [
            "id",
            "run",
            "max_macs",
            "max_params",
            "max_latency_ms",
            "profile",
            "finetune_epochs",
            "formats",
            "queue",
            "status",
            "choices",
            "predicted_score",
            "score_stderr",
            "cost",
            "measured_accuracy",
            "metrics",
            *LIFECYCLE,
            "auto_resumes",
            "downloads",
            "requested_by",
        ]
        read_only_fields = [f for f in fields if f not in DEPLOYMENT_INPUTS]

    def to_representation(self, instance: Deployment) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["formats"] = [f for f in FORMATS if f in instance.formats]
        return data

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
    def get_downloads(self, deployment: Deployment) -> dict[str, str]:
        if deployment.status != Status.SUCCEEDED:
            return {}
        request = self.context.get("request")
        return {
            fmt: reverse("deployment-download", args=[deployment.pk, fmt], request=request)
            for fmt in FORMATS
            if fmt in deployment.formats
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        run: SearchRun = attrs["run"]
        attrs["formats"] = [f for f in FORMATS if f in attrs.get("formats", DEFAULT_FORMATS)]
        budgets = {
            kind: attrs[f"max_{kind}"]
            for kind in COST_KINDS
            if attrs.get(f"max_{kind}") is not None
        }
        with field_errors():
            selection = services.choose_network(run, attrs.get("profile"), budgets)
        attrs["choices"] = selection.choices
        attrs["predicted_score"] = selection.score
        attrs["score_stderr"] = selection.score_stderr
        attrs["cost"] = selection.cost
        return attrs
