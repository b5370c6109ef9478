"""The API's serializers, one module per resource (``runs``, ``profiles``, ``queries``,
``deployments``, ``workers``, ``audits``) and the fields they share (``fields``); this module
only re-exports them, so ``from webapp.runs.serializers import X`` names every one."""

from webapp.runs.serializers.audits import AUDIT_INPUTS, AuditSerializer, BudgetListField
from webapp.runs.serializers.deployments import DEPLOYMENT_INPUTS, DeploymentSerializer
from webapp.runs.serializers.fields import (
    LIFECYCLE,
    MAX_SAFE_INTEGER,
    BudgetField,
    IdField,
    PublicErrorMixin,
    RunField,
    TeamField,
    allowed,
    field_errors,
    not_your_team,
    requested_by_field,
    storable_number,
    user_queue,
)
from webapp.runs.serializers.profiles import DeviceProfileSerializer, ProfileField, check_profile
from webapp.runs.serializers.queries import (
    BudgetQuerySerializer,
    ParetoQuerySerializer,
    ProfileQuerySerializer,
    SelectionSerializer,
    TableQuerySerializer,
)
from webapp.runs.serializers.runs import (
    PRESETS,
    MetricPointSerializer,
    MetricsQuerySerializer,
    PlanSerializer,
    SearchRunDetailSerializer,
    SearchRunSerializer,
    WaitingSerializer,
)
from webapp.runs.serializers.workers import WorkerSerializer, shown_task

__all__ = [
    "AUDIT_INPUTS",
    "DEPLOYMENT_INPUTS",
    "LIFECYCLE",
    "MAX_SAFE_INTEGER",
    "PRESETS",
    "AuditSerializer",
    "BudgetField",
    "BudgetListField",
    "BudgetQuerySerializer",
    "DeploymentSerializer",
    "DeviceProfileSerializer",
    "IdField",
    "MetricPointSerializer",
    "MetricsQuerySerializer",
    "ParetoQuerySerializer",
    "PlanSerializer",
    "ProfileField",
    "ProfileQuerySerializer",
    "PublicErrorMixin",
    "RunField",
    "SearchRunDetailSerializer",
    "SearchRunSerializer",
    "SelectionSerializer",
    "TableQuerySerializer",
    "TeamField",
    "WaitingSerializer",
    "WorkerSerializer",
    "allowed",
    "check_profile",
    "field_errors",
    "not_your_team",
    "requested_by_field",
    "shown_task",
    "storable_number",
    "user_queue",
]
