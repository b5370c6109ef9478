"""The serializers of table audits: the MACs budgets to audit, and an audit as it is asked
for (validated by drawing its pools and pricing it) and reported."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webapp.runs.limits import audit_over_limit
from webapp.runs.models import Audit, SearchRun
from webapp.runs.serializers.fields import (
    LIFECYCLE,
    BudgetField,
    PublicErrorMixin,
    requested_by_field,
)
from webapp.runs.tables import accuracy_table

AUDIT_INPUTS = ["budgets", "networks", "epochs", "seeds"]


@extend_schema_field(
    {"type": "array", "items": {"oneOf": [{"type": "number"}, {"type": "string"}]}}
)
class BudgetListField(serializers.Field):
    """MACs budgets: a list of numbers or strings such as ``1.2M``, each given once."""

    def to_internal_value(self, data: Any) -> list[float]:
        if not isinstance(data, list):
            raise serializers.ValidationError(
                f'expected a list of MACs budgets, e.g. ["1.2M", "2M"], got {type(data).__name__}'
            )
        if not data:
            raise serializers.ValidationError("give at least one MACs budget, e.g. 1.2M")
        limit = audit_over_limit("budgets", len(data))
        if limit:
            raise serializers.ValidationError(limit)
        budgets: list[float] = []
        for i, item in enumerate(data):
            try:
                value = BudgetField().to_internal_value(item)
            except serializers.ValidationError as exc:
                raise serializers.ValidationError(f"budget {i + 1}: {exc.detail[0]}") from None
            if value in budgets:
                raise serializers.ValidationError(f"budget {item} is given twice")
            budgets.append(value)
        return budgets

    def to_representation(self, value: list[float]) -> list[float]:
        return value


class AuditSerializer(PublicErrorMixin, serializers.ModelSerializer):
    """A table audit of a succeeded run: what to audit (budgets, networks per budget, epochs,
    seeds) and, once done, the ``ponas.audit`` report in ``results``."""

    error = serializers.SerializerMethodField(help_text="why the audit failed")
    budgets = BudgetListField(help_text='MACs budgets, e.g. ["1.2M", "2M"]')
    networks = serializers.IntegerField(
        default=10, min_value=3, help_text="cost-matched networks drawn per budget"
    )
    epochs = serializers.IntegerField(
        default=3, min_value=1, help_text="from-scratch training epochs"
    )
    seeds = serializers.IntegerField(
        default=1,
        min_value=1,
        help_text="trainings of every network (2 or more: the truth's "
        "own agreement between seeds is reported)",
    )
    requested_by = requested_by_field("who asked for it")
    progress = serializers.FloatField(read_only=True, help_text="trainings done, 0..1")

    class Meta:
        model = Audit
        fields = [
            "id",
            "run",
            *AUDIT_INPUTS,
            "status",
            "progress",
            "trained",
            "total",
            "estimate",
            "pools",
            "results",
            *LIFECYCLE,
            "auto_resumes",
            "requested_by",
        ]
        read_only_fields = [f for f in fields if f not in AUDIT_INPUTS]

    def _limit(self, key: str, value: int) -> int:
        message = audit_over_limit(key, value)
        if message:
            raise serializers.ValidationError(message)
        return value

    def validate_networks(self, value: int) -> int:
        return self._limit("networks", value)

    def validate_epochs(self, value: int) -> int:
        return self._limit("epochs", value)

    def validate_seeds(self, value: int) -> int:
        return self._limit("seeds", value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Draw the pools (a budget with too few cost-matched networks is refused here) and
        price the audit; both go with the validated fields to ``services.start_audit``."""
        from webapp.runs import audits

        run: SearchRun = self.context["run"]
        table = accuracy_table(run)
        try:
            plan = audits.plan(
                table, attrs["budgets"], attrs["networks"], attrs["epochs"], attrs["seeds"]
            )
        except ValueError as exc:
            raise serializers.ValidationError({"budgets": [str(exc)]}) from None
        limit = settings.PONAS_AUDIT_LIMITS["trainings"]
        if len(plan.trainings) > limit:
            raise serializers.ValidationError(
                {
                    "networks": [
                        f"this audit would train {len(plan.trainings):,} networks; this server "
                        f"trains at most {limit:,} per audit (ask for fewer budgets, networks "
                        "or seeds)"
                    ]
                }
            )
        attrs["plan"] = plan
        attrs["estimate"] = audits.estimate(run, plan, attrs["epochs"], attrs["seeds"])
        return attrs
