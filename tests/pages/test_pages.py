"""The dashboard pages without a browser: sign-in, owner scoping, the new-search form."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.web.helpers import make_finished_run, make_run
from webapp.pages.markdown import render_markdown
from webapp.runs.models import Artifact, Dataset, Deployment, SearchRun, Status

pytestmark = pytest.mark.django_db

TINY = {"epochs": 2, "finetune_steps": 3, "suffix_samples": 1, "bn_batches": 1, "eval_batches": 1}


def form_data(**changes) -> dict:
    """What the form posts for a digits search with the preset's defaults, plus changes."""
    from webapp.pages.forms import preset_defaults

    data = {"name": "", "preset": "digits", **preset_defaults("digits"), **changes}
    return {k: "" if v is None else v for k, v in data.items()}


def post(client: Client, url: str, data: dict):
    """A form post the way a browser sends it: with the CSRF token of the page."""
    page = client.get(url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def field_errors(response, name: str) -> list[str]:
    return list(response.context["form"].errors.get(name, []))


# ---- sign-in ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/runs/new/", "/runs/1/", "/deployments/", "/deployments/1/"])
def test_anonymous_visitor_is_sent_to_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_user_signs_in_and_lands_on_the_runs_list(client, alice):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_says_so_on_the_login_page(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_user_signs_out_with_a_post(browser):
    page = browser.get("/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())[1]
    response = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    assert browser.get("/").status_code == 302


# ---- owner scoping ------------------------------------------------------------------------


def test_runs_list_shows_only_the_users_own_runs(browser, alice, bob):
    make_run(alice, name="alice's search")
    make_run(bob, name="bob's search")
    html = browser.get("/").content.decode()
    assert "alice&#x27;s search" in html
    assert "bob&#x27;s search" not in html


def test_runs_list_filters_by_status_and_pages(browser, alice):
    for i in range(25):
        make_run(alice, Status.SUCCEEDED, name=f"done {i}")
    make_run(alice, Status.FAILED, name="broken")
    response = browser.get("/?status=failed")
    assert [r.name for r in response.context["page"]] == ["broken"]
    first = browser.get("/?status=succeeded")
    assert len(first.context["page"]) == 20
    assert "Page 1 of 2" in first.content.decode()
    second = browser.get("/?status=succeeded&page=2")
    assert len(second.context["page"]) == 5
    assert browser.get("/?status=bogus").context["status"] == ""


def test_user_cannot_open_another_users_run(browser, bob):
    run = make_finished_run(bob)
    assert browser.get(f"/runs/{run.pk}/").status_code == 404


def test_user_cannot_open_another_users_deployment(browser, bob):
    run = make_finished_run(bob)
    deployment = Deployment.objects.create(run=run, choices=run.path, formats=["pt"])
    assert browser.get(f"/deployments/{deployment.pk}/").status_code == 404
    assert browser.get("/deployments/").context["page"].paginator.count == 0


# ---- the new-search form ------------------------------------------------------------------


def test_new_search_form_is_prefilled_with_the_presets_defaults(browser):
    form = browser.get("/runs/new/?preset=cifar10").context["form"]
    assert form["preset"].value() == "cifar10"
    assert form["epochs"].value() == 100
    assert form["dataset"].value() == "cifar10"
    assert browser.get("/runs/new/").context["form"]["epochs"].value() == 60


def test_a_setting_ponas_rejects_is_shown_next_to_that_field(browser):
    response = post(browser, "/runs/new/", form_data(epochs=0))
    assert response.status_code == 200
    assert field_errors(response, "epochs") == ["epochs must be at least 1, got 0"]
    assert '<span class="field-error" role="alert">epochs must be at least 1, got 0</span>' in (
        response.content.decode()
    )
    assert not SearchRun.objects.exists()


def test_a_learning_rate_out_of_range_is_shown_next_to_it(browser):
    response = post(browser, "/runs/new/", form_data(lr=20))
    assert field_errors(response, "lr") == ["lr must be in (0, 10), got 20.0"]


def test_an_input_size_the_space_cannot_take_is_shown_next_to_it(browser):
    response = post(browser, "/runs/new/", form_data(input_size=-3))
    assert field_errors(response, "input_size") == ["input_size must be positive, got -3"]


def test_a_value_of_the_wrong_type_is_shown_next_to_the_field(browser):
    response = post(browser, "/runs/new/", form_data(batch_size="many"))
    assert field_errors(response, "batch_size") == ["Enter a whole number."]


def test_a_dataset_that_is_not_registered_for_the_user_is_refused(browser):
    response = post(browser, "/runs/new/", form_data(preset="cifar10", dataset="cifar10"))
    assert field_errors(response, "dataset") == [
        '"cifar10" is not a dataset available to you (an admin registers datasets); '
        "available: digits, shapes"
    ]
    assert "dataset_dir" not in response.content.decode()  # no server folder is asked for


def test_a_dataset_the_space_cannot_read_is_refused(browser, alice, settings, tmp_path):
    settings.PONAS_DATA_ROOTS = [tmp_path]
    cifar = Dataset.objects.create(name="team-cifar", kind="cifar10", root=str(tmp_path / "c"))
    cifar.users.add(alice)
    response = post(browser, "/runs/new/", form_data(dataset="team-cifar"))
    assert field_errors(response, "dataset") == [
        "team-cifar images have 3 channels; the digits space takes 1: choose a preset made for them"
    ]


def test_starting_a_search_creates_a_queued_run_with_only_the_changed_settings(browser, alice):
    response = post(browser, "/runs/new/", form_data(name="tiny", **TINY))
    run = SearchRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert (run.owner, run.name, run.preset, run.status) == (alice, "tiny", "digits", "queued")
    assert run.config == TINY
    assert run.queue == "gpu"  # the default: heavy work goes to the GPU workers


def test_a_search_scored_by_likelihood_stores_that_setting(browser, alice):
    post(browser, "/runs/new/", form_data(name="soft", score="likelihood", **TINY))
    assert SearchRun.objects.get().config == {**TINY, "score": "likelihood"}


def test_an_unknown_entry_score_is_refused_next_to_its_field(browser):
    response = post(browser, "/runs/new/", form_data(score="loss"))
    assert response.status_code == 200
    assert "Select a valid choice. loss is not one of the available choices." in (
        response.content.decode()
    )
    assert not SearchRun.objects.exists()


def test_staff_can_start_a_search_on_the_default_queue(browser, alice):
    alice.is_staff = True
    alice.save()
    post(browser, "/runs/new/", form_data(name="light", queue="default", **TINY))
    assert SearchRun.objects.get().queue == "default"


def test_a_user_cannot_send_a_search_to_the_default_queue(browser):
    response = post(browser, "/runs/new/", form_data(name="heavy", queue="default", **TINY))
    assert field_errors(response, "queue") == [
        "Select a valid choice. default is not one of the available choices."
    ]
    assert not SearchRun.objects.exists()


# ---- run and deployment pages -------------------------------------------------------------


def test_succeeded_run_page_has_the_heatmap_and_the_deploy_panel(browser, alice):
    run = make_finished_run(alice)
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="heatmap"' in html
    assert 'id="pareto-chart"' in html
    assert f'href="/api/runs/{run.pk}/table/?format=csv"' in html


def test_deploy_panel_checks_current_formats_and_offers_torchscript_as_legacy(browser, alice):
    run = make_finished_run(alice)
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    boxes = re.findall(r'<input type="checkbox" name="formats" value="(\w+)"( checked)?>', html)
    assert boxes == [
        ("pt", " checked"),
        ("pt2", " checked"),
        ("onnx", " checked"),
        ("torchscript", ""),
    ]
    assert 'value="torchscript"> torchscript <span class="muted small">(legacy)</span>' in html


def test_queued_run_page_has_no_heatmap_yet_and_can_be_cancelled(browser, alice):
    run = make_run(alice)
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    assert 'id="heatmap"' not in html
    assert 'data-action="cancel"' in html
    assert 'data-action="delete"' not in html


def test_failed_run_page_shows_the_whole_error_and_offers_resume(browser, alice):
    error = "layer 3, candidate e6_k5 failed: " + "x" * 3000
    run = make_run(alice, Status.FAILED, error=error)
    html = browser.get(f"/runs/{run.pk}/").content.decode()
    assert error in html
    assert 'data-action="resume"' in html


def test_deployment_page_shows_costs_architecture_model_card_and_downloads(
    browser, alice, settings
):
    run = make_finished_run(alice)
    deployment = Deployment.objects.create(
        run=run,
        choices=run.path,
        formats=["pt", "onnx"],
        status=Status.SUCCEEDED,
        predicted_score=5.4321,
        cost={"macs": 1_234_567, "params": 45_678},
        measured_accuracy=0.9312,
    )
    out = deployment.out_dir
    out.mkdir(parents=True)
    (out / "model.pt").write_bytes(b"weights")
    (out / "model_card.md").write_text("# Card\n\n## Cost\n\n- MACs: 1.23M\n\n<script>x</script>\n")
    Artifact.record(out / "model.pt", "pt", deployment=deployment)
    Artifact.record(out / "model_card.md", "model_card", deployment=deployment)
    html = browser.get(f"/deployments/{deployment.pk}/").content.decode()
    assert "1.23M MACs" in html and "45.7K params" in html and "93.12%" in html
    assert all(f'<span class="arch-name">{c}</span>' in html for c in run.path)
    assert "<h3>Cost</h3>" in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert f'href="/api/deployments/{deployment.pk}/download/pt/"' in html
    assert f'href="/api/deployments/{deployment.pk}/download/onnx/"' not in html  # not built


def test_pages_load_nothing_from_other_hosts(browser, alice):
    run = make_finished_run(alice)
    for url in ["/", "/runs/new/", f"/runs/{run.pk}/", "/deployments/", "/api/docs/"]:
        html = browser.get(url).content.decode()
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', html), url


# ---- the model card renderer --------------------------------------------------------------


def test_model_card_markdown_renders_headings_lists_and_tables_and_escapes_html():
    html = render_markdown(
        "# Title\n\nSome *text* with `code`.\n\n- one\n- **two**\n\n"
        "| layer | block |\n|---:|---|\n| 0 | `e6_k5` |\n\n<b>raw</b>"
    )
    assert "<h2>Title</h2>" in html
    assert "<ul><li>one</li><li><strong>two</strong></li></ul>" in html
    assert '<th style="text-align:right">layer</th>' in html
    assert '<td style="text-align:left"><code>e6_k5</code></td>' in html
    assert "&lt;b&gt;raw&lt;/b&gt;" in html
