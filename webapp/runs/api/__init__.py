"""The REST API (DESIGN.md "REST API"): runs, their tables, budget previews, Pareto frontiers,
deployments and their downloads. Views stay thin: serializers validate, ``services`` changes
state (and sends the workers their tasks), ``ponas`` answers the questions. Every query is
scoped to what the requesting user sees (their runs and their teams', ``access.py``); a
team member who may not manage a run gets 403, anyone else 404. Reads change nothing.

One module per resource (``runs``, ``deployments``, ``workers``, ``audits``); this module only
re-exports their viewsets and filters, which ``webapp/runs/urls.py`` routes."""

from webapp.api import LIST_ERRORS
from webapp.runs.api.audits import AuditViewSet
from webapp.runs.api.deployments import (
    CONTENT_TYPE,
    SUFFIXES,
    DeploymentFilter,
    DeploymentViewSet,
    seen_runs,
)
from webapp.runs.api.runs import NoTable, RunFilter, RunViewSet
from webapp.runs.api.workers import WorkerViewSet

__all__ = [
    "CONTENT_TYPE",
    "LIST_ERRORS",
    "SUFFIXES",
    "AuditViewSet",
    "DeploymentFilter",
    "DeploymentViewSet",
    "NoTable",
    "RunFilter",
    "RunViewSet",
    "WorkerViewSet",
    "seen_runs",
]
