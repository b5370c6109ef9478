"""The serializers of the questions asked of a run's stored table: ``?profile=`` (its latency),
the budgets of ``preview`` and the network it answers, the cost kind of ``pareto``, the format
of ``table``."""

from __future__ import annotations

from rest_framework import serializers

from ponas.table import COST_KINDS
from webapp.runs.serializers.fields import BudgetField
from webapp.runs.serializers.profiles import ProfileField


class ProfileQuerySerializer(serializers.Serializer):
    profile = ProfileField(
        required=False, help_text="a device profile of this run: its latency as latency_ms"
    )


class BudgetQuerySerializer(ProfileQuerySerializer):
    """Query of ``preview``: any of the three budgets (none gives the best path)."""

    max_macs = BudgetField(required=False)
    max_params = BudgetField(required=False)
    max_latency_ms = BudgetField(required=False)

    def budgets(self) -> dict[str, float]:
        return {k.removeprefix("max_"): v for k, v in self.validated_data.items() if k != "profile"}


class ParetoQuerySerializer(ProfileQuerySerializer):
    cost = serializers.ChoiceField(
        choices=list(COST_KINDS),
        default="macs",
        error_messages={
            "invalid_choice": f'"{{input}}" is not a cost kind; allowed: {", ".join(COST_KINDS)}'
        },
    )


class TableQuerySerializer(ProfileQuerySerializer):
    format = serializers.ChoiceField(
        choices=["json", "csv"],
        default="json",
        error_messages={"invalid_choice": '"{input}" is not a table format; allowed: json, csv'},
    )


class SelectionSerializer(serializers.Serializer):
    """A chosen network: what ``ponas deploy --json`` prints."""

    choices = serializers.ListField(child=serializers.CharField())
    score = serializers.FloatField(
        help_text="sum over layers of A[l][c_l]: a score that ranks the networks of this "
        "table, not a test accuracy"
    )
    score_stderr = serializers.FloatField(
        allow_null=True,
        help_text="standard error of score: sqrt of the sum of the chosen entries' squared "
        "standard errors; null when the table does not record all of them",
    )
    loss = serializers.FloatField(help_text="sum over layers of max A[l] - A[l][c_l]")
    cost = serializers.DictField(child=serializers.FloatField())
