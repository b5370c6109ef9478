"""Redraws through the API: stage 2 again on a succeeded run's supernet with another seed
(a new run whose source is that run), the refusals (a run without a table or checkpoint,
someone else's run, a member who does not manage it, a bad seed or setting, the quota), the
source's delete while a redraw runs, and the noise endpoint's answers before it has one."""

from __future__ import annotations

import pytest

from ponas import noise
from tests.web.helpers import client_for, make_finished_run, make_run, make_team
from webapp.runs.models import SearchRun, Status

pytestmark = pytest.mark.django_db


def with_checkpoint(run: SearchRun) -> SearchRun:
    """The run as a search leaves it: a stage-1 checkpoint in its folder (its content is the
    worker's business; the API only asks that it is there)."""
    run.stage1_checkpoint.parent.mkdir(parents=True, exist_ok=True)
    run.stage1_checkpoint.write_bytes(b"stage 1")
    return run


@pytest.fixture
def source(alice) -> SearchRun:
    run = with_checkpoint(make_finished_run(alice))  # its table was drawn with seed 0
    run.config = {"epochs": 2, "eval_batches": 2}
    run.save(update_fields=["config"])
    return run


def redraw_url(run, what: str = "redraw") -> str:
    return f"/api/runs/{run.pk}/{what}/"


def test_a_redraw_is_a_new_run_of_the_same_settings_with_another_stage2_seed(
    api, source, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(
            redraw_url(source), {"stage2_seed": 3, "eval_batches": 4}, format="json"
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["source_run"] == source.pk and body["id"] != source.pk
    assert body["status"] == "queued" and body["preset"] == source.preset
    assert body["config"] == {"epochs": 2, "eval_batches": 4, "stage2_seed": 3}
    assert body["queue"] == source.queue and "stage 2 again (seed 3)" in body["name"]
    assert len(callbacks) == 1  # its search is queued once the transaction commits
    # the source lists it; the redraw names its source
    assert api.get(f"/api/runs/{source.pk}/").json()["redraws"] == [body["id"]]
    assert api.get(f"/api/runs/{body['id']}/").json()["source_run"] == source.pk


def test_without_a_seed_a_redraw_takes_the_smallest_not_drawn_yet(api, source):
    seeds = []
    for _ in range(2):
        response = api.post(redraw_url(source), {}, format="json")
        assert response.status_code == 201, response.json()
        seeds.append(response.json()["config"]["stage2_seed"])
    assert seeds == [1, 2]  # 0 is the source's own (its search seed)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"stage2_seed": 0}, "stage2_seed", "drew from seed 0"),
        ({"stage2_seed": -1}, "stage2_seed", "greater than or equal to 0"),
        ({"stage2_seed": "x"}, "stage2_seed", "valid integer"),
        ({"stage2_seed": 1, "eval_batches": 0}, "eval_batches", "at least 1"),
        ({"stage2_seed": 1, "score": "loss"}, "score", "not a valid choice"),
        ({"stage2_seed": 1, "epochs": 9}, "non_field_errors", "stage-2 settings only"),
    ],
)
def test_a_bad_seed_or_setting_is_a_400_naming_it(api, source, body, field, says):
    response = api.post(redraw_url(source), body, format="json")
    assert response.status_code == 400, response.json()
    assert says in str(response.json()[field])
    assert not SearchRun.objects.filter(source_run=source).exists()


def test_a_run_that_has_not_succeeded_or_lost_its_checkpoint_is_refused(api, alice, source):
    running = with_checkpoint(make_run(alice, Status.RUNNING))
    response = api.post(redraw_url(running), {"stage2_seed": 1}, format="json")
    assert response.status_code == 409
    assert "no accuracy table yet" in response.json()["error"]
    source.stage1_checkpoint.unlink()
    response = api.post(redraw_url(source), {"stage2_seed": 1}, format="json")
    assert response.status_code == 409
    assert "no stage-1 checkpoint" in response.json()["error"]
    assert not SearchRun.objects.exclude(pk__in=[running.pk, source.pk]).exists()


def test_someone_elses_run_is_not_found_and_a_member_may_not_redraw(alice, bob, source):
    assert client_for(bob).post(redraw_url(source), {"stage2_seed": 1}).status_code == 404
    source.team = make_team("lab", members=[bob])
    source.save(update_fields=["team"])
    response = client_for(bob).post(redraw_url(source), {"stage2_seed": 1}, format="json")
    assert response.status_code == 403
    assert not SearchRun.objects.filter(source_run=source).exists()


def test_redraws_count_in_the_quota_of_runs(api, alice, source, settings):
    settings.PONAS_MAX_ACTIVE_RUNS = 1
    make_run(alice, Status.RUNNING)
    response = api.post(redraw_url(source), {"stage2_seed": 1}, format="json")
    assert response.status_code == 429


def test_a_source_is_not_deleted_while_a_redraw_of_it_runs(api, source):
    redraw = api.post(redraw_url(source), {"stage2_seed": 1}, format="json").json()
    response = api.delete(f"/api/runs/{source.pk}/")
    assert response.status_code == 409
    assert f"run {redraw['id']}" in response.json()["error"]
    SearchRun.objects.filter(pk=redraw["id"]).update(status=Status.CANCELLED)
    assert api.delete(f"/api/runs/{source.pk}/").status_code == 204
    assert SearchRun.objects.get(pk=redraw["id"]).source_run is None


def test_the_noise_endpoint_answers_once_a_redraw_has_succeeded(api, alice, source):
    assert api.get(redraw_url(source, "noise")).status_code == 404  # not a redraw
    assert "is not a redraw" in api.get(redraw_url(source, "noise")).json()["error"]
    redraw = SearchRun.objects.get(
        pk=api.post(redraw_url(source), {"stage2_seed": 1}, format="json").json()["id"]
    )
    response = api.get(redraw_url(redraw, "noise"))
    assert response.status_code == 409 and "once it has succeeded" in response.json()["error"]
    # what its worker writes when it succeeds
    other = make_finished_run(alice, seed=1)
    from webapp.runs.tables import accuracy_table

    doc = noise.measure(accuracy_table(source), accuracy_table(other))
    redraw.out_dir.mkdir(parents=True, exist_ok=True)
    noise.save(doc, redraw.noise_file)
    SearchRun.objects.filter(pk=redraw.pk).update(status=Status.SUCCEEDED)
    response = api.get(redraw_url(redraw, "noise"))
    assert response.status_code == 200
    assert response.json()["format"] == noise.NOISE_FORMAT
    assert len(response.json()["layers"]) == len(doc["layers"])
