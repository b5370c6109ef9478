"""Two changes at nearly the same moment have one defined outcome (issue 17, finding 8)."""

from __future__ import annotations

import pytest

import tasks.search
from tests.conftest import TINY
from tests.web.helpers import client_for, make_finished_run, make_run
from webapp.runs import services
from webapp.runs.models import Deployment, SearchRun, Status

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [Status.QUEUED, Status.RUNNING])
def test_a_run_cannot_be_deleted_while_its_deployment_builds(
    alice, status, django_capture_on_commit_callbacks
):
    run = make_finished_run(alice)
    run.out_dir.mkdir(parents=True)
    deployment = Deployment.objects.create(run=run, choices=run.path, status=status)
    api = client_for(alice)
    response = api.delete(f"/api/runs/{run.pk}/")
    assert response.status_code == 409
    assert response.json() == {
        "error": f"run {run.pk} has a deployment building (deployment {deployment.pk}, "
        f"{status}); delete the run once it has finished"
    }
    assert run.out_dir.exists() and SearchRun.objects.filter(pk=run.pk).exists()
    Deployment.objects.filter(pk=deployment.pk).update(status=Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/runs/{run.pk}/").status_code == 204
    assert not run.out_dir.exists()


def test_a_search_task_does_not_start_a_run_cancelled_a_moment_before(alice, monkeypatch):
    run = make_run(alice, config=TINY)
    seen = SearchRun.objects.get(pk=run.pk)  # what the task read: queued, not cancelled

    def live_until_then(run_id, attempt):
        monkeypatch.undo()  # later reads see the database as it is
        return seen if run_id == run.pk else None

    services.cancel_run(run)  # ... and then the user cancelled it
    monkeypatch.setattr(tasks.search, "_live_run", live_until_then)
    tasks.search.run_search.apply((run.pk, run.attempt))
    run.refresh_from_db()
    assert (run.status, run.stage, run.started) == (Status.CANCELLED, "queued", None)
    assert not (run.out_dir / "checkpoints").exists()  # no training happened
