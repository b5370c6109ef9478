"""Settings that would take a worker down are refused before the run is queued, and a user's
work stays within their quota and off the bookkeeping queue (issue 17, findings 2 and 4)."""

from __future__ import annotations

import pytest

from tasks.search import check_gpus
from tests.web.helpers import client_for, make_finished_run, make_run
from webapp.runs.models import Deployment, SearchRun, Status

pytestmark = pytest.mark.django_db


def start(client, config=None, **fields):
    return client.post(
        "/api/runs/", {"preset": "digits", "config": config or {}, **fields}, format="json"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"device": "cpu", "ngpu": 1024}, "ngpu=1,024 is above this server's limit of 8"),
        ({"input_size": 4096}, "input_size=4,096 is above this server's limit of 512"),
        ({"num_workers": 256}, "num_workers=256 is above this server's limit of 16"),
        (
            {"feature_cache_mb": 1_000_000_000},
            "feature_cache_mb=1,000,000,000 is above this server's limit of 8,192",
        ),
        ({"batch_size": 65536}, "batch_size=65,536 is above this server's limit of 1,024"),
        ({"epochs": 10_000}, "epochs=10,000 is above this server's limit of 1,000"),
    ],
)
def test_settings_that_would_take_a_worker_down_are_refused(api, config, message):
    response = start(api, config)
    assert response.status_code == 400
    assert response.json() == {"config": [message]}
    assert not SearchRun.objects.exists()


def test_the_limits_are_the_servers_settings(api, settings):
    settings.PONAS_LIMITS = {**settings.PONAS_LIMITS, "ngpu": 2}
    assert start(api, {"ngpu": 3}).json() == {
        "config": ["ngpu=3 is above this server's limit of 2"]
    }
    assert start(api, {"ngpu": 2}).status_code == 201


def test_a_run_whose_data_cannot_fit_in_memory_is_refused_before_it_is_queued(api, settings):
    settings.PONAS_LIMITS = {**settings.PONAS_LIMITS, "input_size": 4096}
    response = start(api, {"input_size": 4096})
    assert response.status_code == 400
    assert response.json() == {
        "config": [
            "input_size=4096: the digits images alone would take 115,008 MB of memory at this "
            "size; this server's limit is 4,096 MB"
        ]
    }
    assert start(api, {"input_size": 224}).status_code == 201  # 344 MB


def test_a_worker_refuses_more_gpus_than_it_sees():
    with pytest.raises(ValueError) as refused:
        check_gpus(4, "auto")
    import torch

    visible = torch.cuda.device_count()
    if visible < 4:
        assert str(refused.value).startswith(f"ngpu=4: this worker sees {visible} GPU")
        assert str(refused.value).endswith("or send the run to a queue whose workers have more")
    check_gpus(1, "auto")  # one process: any worker
    check_gpus(2, "cpu")  # CPU processes (gloo) are bounded by the web limit only


# ---- quotas ---------------------------------------------------------------------------------


def test_a_user_cannot_queue_more_runs_than_the_quota(alice, bob, settings):
    settings.PONAS_MAX_ACTIVE_RUNS = 2
    api = client_for(alice)
    assert start(api).status_code == 201
    assert start(api).status_code == 201
    response = start(api)
    assert response.status_code == 429
    assert response.json() == {
        "error": "you have 2 runs queued or running, the most this server allows one user (2); "
        "wait for one to finish or cancel one"
    }
    assert SearchRun.objects.filter(owner=alice).count() == 2
    assert start(client_for(bob)).status_code == 201  # each user has their own quota
    # a resume counts too
    failed = make_run(alice, Status.FAILED)
    response = api.post(f"/api/runs/{failed.pk}/resume/")
    assert response.status_code == 429
    SearchRun.objects.filter(owner=alice, status=Status.QUEUED).update(status=Status.SUCCEEDED)
    assert api.post(f"/api/runs/{failed.pk}/resume/").status_code == 202


def test_a_user_cannot_build_more_deployments_at_once_than_the_quota(alice, settings):
    settings.PONAS_MAX_ACTIVE_DEPLOYMENTS = 1
    run = make_finished_run(alice)
    api = client_for(alice)
    assert api.post("/api/deployments/", {"run": run.pk}, format="json").status_code == 201
    response = api.post("/api/deployments/", {"run": run.pk}, format="json")
    assert response.status_code == 429
    assert response.json() == {
        "error": "you have 1 deployment building, the most this server allows one user (1); "
        "wait for one to finish or cancel one"
    }
    Deployment.objects.update(status=Status.SUCCEEDED)
    assert api.post("/api/deployments/", {"run": run.pk}, format="json").status_code == 201


def test_a_users_heavy_work_cannot_go_to_the_bookkeeping_queue(alice, api):
    response = start(api, queue="default")
    assert response.status_code == 400
    assert response.json() == {
        "queue": ['the "default" queue is kept for the bookkeeping every run needs; allowed: gpu']
    }
    alice.is_staff = True  # admins may (light runs on a machine without a GPU worker)
    alice.save()
    assert start(api, queue="default").json()["queue"] == "default"
