"""The web app's models, one module per kind of row, re-exported here: ``from
webapp.runs.models import SearchRun`` is how everything imports them.

- ``base``: the lifecycle every job-like row shares (status, timestamps, worker, heartbeat)
  and its status changes, as conditional UPDATEs in one place;
- ``teams``: teams and their members; ``runs``: searches, their curves and accuracy tables;
- ``builds``: device profiles, deployments and artifacts; ``audits``: table audits;
- ``fleet``: leases and workers; ``dataset``: registered datasets.
"""

from ponas.files import FORMATS as FORMATS  # re-exported: the web app's formats are ponas's
from webapp.runs.models.audits import Audit, AuditNetwork
from webapp.runs.models.base import ACTIVE, LAST_SIGN, Job, JobQuerySet, Lifecycle, Status
from webapp.runs.models.builds import Artifact, Deployment, DeviceProfile
from webapp.runs.models.dataset import Dataset
from webapp.runs.models.fleet import Lease, Worker
from webapp.runs.models.runs import STAGE1_SHARE, MetricPoint, Queue, SearchRun, Stage, TableEntry
from webapp.runs.models.teams import Membership, Team

__all__ = [
    "ACTIVE",
    "FORMATS",
    "LAST_SIGN",
    "STAGE1_SHARE",
    "Artifact",
    "Audit",
    "AuditNetwork",
    "Dataset",
    "Deployment",
    "DeviceProfile",
    "Job",
    "JobQuerySet",
    "Lease",
    "Lifecycle",
    "Membership",
    "MetricPoint",
    "Queue",
    "SearchRun",
    "Stage",
    "Status",
    "TableEntry",
    "Team",
    "Worker",
]
