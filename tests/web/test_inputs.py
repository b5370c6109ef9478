"""No input reaches a 500 (issue 28, item 6): ids that are digits to ``str.isdigit`` but not to
``int``, ids of thousands of digits, budgets past Decimal's exponent, JSON nested deeper than
Python recurses, bodies over the size limit; each gets one line of JSON 400 that says why, on
every JSON endpoint, the unauthenticated sign-in included. A fuzz test sends such values to
every field and query parameter."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from tests.web.helpers import client_for
from webapp.api import MAX_MESSAGE
from webapp.parsers import MAX_JSON_DEPTH
from webapp.runs.serializers import storable_number

pytestmark = pytest.mark.django_db

UNICODE_DIGITS = ["²", "٣", "①", "１２"]  # isdigit() says yes, int() says no (or not ASCII)
LONG_ID = "9" * 5000  # int() refuses more than 4300 digits
DEEP_ERROR = {
    "error": f"JSON parse error - arrays and objects nested more than {MAX_JSON_DEPTH} levels "
    "deep (the most this API reads)"
}
TOO_BIG = {"error": "the request body is larger than this server takes (2.5 MB)"}


def nested(depth: int, leaf=1) -> str:
    """A JSON text of ``depth`` nested arrays around ``leaf``."""
    return "[" * depth + json.dumps(leaf) + "]" * depth


def one_line_json_400(response) -> dict:
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert "\n" not in json.dumps(body)
    return body


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_an_id_of_unicode_digits_is_a_400_not_a_500(api, finished_run, digits):
    response = api.post("/api/deployments/", {"run": digits}, format="json")
    assert one_line_json_400(response) == {"run": ["expected a run id (an integer), got str"]}
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "profile": digits}, format="json"
    )
    assert one_line_json_400(response) == {
        "profile": ["expected a device profile id (an integer), got str"]
    }
    for view in ["preview", "pareto", "table"]:
        response = api.get(f"/api/runs/{finished_run.pk}/{view}/", {"profile": digits})
        assert one_line_json_400(response) == {
            "profile": ["expected a device profile id (an integer), got str"]
        }


def test_an_id_of_five_thousand_digits_is_a_400_not_a_500(api, finished_run):
    response = api.post("/api/deployments/", {"run": LONG_ID}, format="json")
    assert one_line_json_400(response) == {"run": ["run (huge id) not found"]}
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "profile": LONG_ID}, format="json"
    )
    expected = {"profile": ["device profile (huge id) not found (or not measured yet)"]}
    assert one_line_json_400(response) == expected
    response = api.get(f"/api/runs/{finished_run.pk}/preview/", {"profile": LONG_ID})
    assert one_line_json_400(response) == expected
    response = api.get(f"/api/runs/{LONG_ID}/")
    assert (response.status_code, response.json()) == (404, {"error": "run (huge id) not found"})


@pytest.mark.parametrize("budget", ["1e9999999", "1e999999999999", "5e9999999M"])
def test_a_budget_past_decimals_exponent_is_a_400_not_a_500(api, finished_run, budget):
    message = [f"invalid budget '{budget}': the number is too large"]
    response = api.get(f"/api/runs/{finished_run.pk}/preview/", {"max_macs": budget})
    assert one_line_json_400(response) == {"max_macs": message}
    response = api.post(
        "/api/deployments/", {"run": finished_run.pk, "max_macs": budget}, format="json"
    )
    assert one_line_json_400(response) == {"max_macs": message}


def json_operations(client, run_id: int) -> list[tuple[str, str]]:
    """(method, path) of every operation of the OpenAPI schema that takes a JSON body, with
    ``{id}`` a run of the user's: new endpoints are covered without a change here."""
    answer = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(answer.content)
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body:
                for name in ("{id}", "{run_pk}"):
                    path = path.replace(name, str(run_id))
                found.append((method.upper(), path))
    return found


def test_every_json_endpoint_refuses_a_body_nested_deeper_than_python_recurses(api, finished_run):
    operations = json_operations(api, finished_run.pk)
    assert ("POST", "/api/auth/token/") in operations and len(operations) >= 5
    anonymous = APIClient()
    for method, path in operations:
        for depth in [MAX_JSON_DEPTH + 1, 500, 5000]:
            for client in [api, anonymous] if path == "/api/auth/token/" else [api]:
                response = client.generic(method, path, nested(depth), "application/json")
                if "{" in path:  # another object's id (an audit's, a profile's): none exists
                    assert response.status_code == 404, (method, path, depth)
                    assert response["Content-Type"] == "application/json"
                    continue
                assert one_line_json_400(response) == DEEP_ERROR, (method, path, depth)
    # nesting up to the bound is read (and refused, or not, for what it says)
    config = json.loads(nested(MAX_JSON_DEPTH - 2))
    response = api.post("/api/runs/", {"preset": "digits", "config": {"epochs": config}}, "json")
    assert response.status_code == 400
    assert list(response.json()) == ["config"]


def test_a_config_nested_500_deep_is_a_400(api):
    body = '{"preset": "digits", "config": {"epochs": ' + nested(500) + "}}"
    response = api.post("/api/runs/", body, content_type="application/json")
    assert one_line_json_400(response) == DEEP_ERROR


def test_numbers_are_checked_however_deep_they_nest():
    deep: object = 2**60
    for _ in range(5000):  # deeper than Python recurses
        deep = [{"a": deep}]
    assert storable_number(deep) is False
    assert storable_number([[1.5, {"x": [2]}], True]) is True


@pytest.mark.parametrize("path", ["/api/runs/", "/api/deployments/", "/api/auth/token/"])
def test_a_30_megabyte_body_is_a_json_400(api, path):
    body = b'{"name": "' + b"x" * 30_000_000 + b'"}'
    response = api.post(path, body, content_type="application/json")
    assert one_line_json_400(response) == TOO_BIG
    anonymous = APIClient().post(path, body, content_type="application/json")
    assert anonymous.status_code in (400, 401)
    assert anonymous["Content-Type"] == "application/json"


def test_long_values_nested_in_lists_are_refused_and_not_echoed_back(api, finished_run):
    long = "x" * 2_000_000
    response = api.post(
        "/api/runs/", {"preset": "digits", "config": {"epochs": [[long]]}}, format="json"
    )
    assert one_line_json_400(response) == {
        "config": ["epochs: at most 200 characters, got 2,000,000"]
    }
    for body in [
        {"run": finished_run.pk, "formats": [long]},
        {"run": finished_run.pk, "max_macs": [long]},
        {"run": [long]},
    ]:
        response = api.post("/api/deployments/", body, format="json")
        assert response.status_code == 400
        assert len(response.content) < 2 * MAX_MESSAGE, body.keys()
    response = api.get(f"/api/runs/{finished_run.pk}/preview/", {"max_params": long})
    (message,) = one_line_json_400(response)["max_params"]
    assert len(message) == MAX_MESSAGE and message.endswith("...")


# ---- the fuzz test --------------------------------------------------------------------------

NASTY = st.one_of(
    st.sampled_from(
        [
            *UNICODE_DIGITS,
            LONG_ID,
            "1e9999999",
            "-1e9999999",
            "1e-9999999",
            "NaN",
            "Infinity",
            "0",
            "-0",
            " 12 ",
            "\x00",
            "x" * 300_000,
            10**400,
            -(2**63),
            2**63,
            1.5,
            1e308,
            True,
            None,
            [],
            {},
        ]
    ),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=10,
    ),
)

BODIES = {
    "/api/deployments/": [
        "run",
        "profile",
        "max_macs",
        "max_params",
        "max_latency_ms",
        "finetune_epochs",
        "formats",
    ],
    "/api/runs/": ["name", "preset", "config", "queue", "team"],
    "/api/runs/plan/": ["preset", "config", "images_per_s"],
    "/api/runs/{id}/profiles/": ["queue"],
    "/api/auth/token/": ["username", "password"],
}
QUERIES = {
    "/api/runs/{id}/preview/": ["profile", "max_macs", "max_params", "max_latency_ms"],
    "/api/runs/{id}/pareto/": ["profile", "cost"],
    "/api/runs/{id}/table/": ["profile", "format"],
    "/api/runs/{id}/": ["since"],
    "/api/runs/": ["status", "preset", "team", "page", "page_size"],
    "/api/deployments/": ["status", "run", "page", "page_size"],
}


def as_json(value) -> str:
    """JSON text of ``value``; an integer past Python's str() limit written out digit by
    digit (a client in another language sends it)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        return "-" * (value < 0) + "9" * 400
    return json.dumps(value, allow_nan=True)


@pytest.mark.slow
def test_nasty_values_in_any_field_or_query_never_reach_a_500(api, alice, finished_run):
    """Hypothesis puts the values that broke the server before (and random ones) into every
    field of every JSON body and every query parameter: the answer is never a 5xx, always
    JSON, one line, and bounded."""
    run = finished_run.pk
    anonymous = APIClient()
    answered: dict[str, set[int]] = {}

    @given(
        target=st.sampled_from(
            [("body", p, f) for p, fields in BODIES.items() for f in fields]
            + [("query", p, f) for p, fields in QUERIES.items() for f in fields]
        ),
        value=NASTY,
        others=st.dictionaries(st.sampled_from(["run", "preset", "max_macs"]), NASTY, max_size=2),
    )
    @hypothesis_settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(target, value, others):
        kind, path, field = target
        path = path.replace("{id}", str(run))
        client = anonymous if path == "/api/auth/token/" else api
        if kind == "body":
            fields = {"run": run, "preset": "digits", **others, field: value}
            body = "{" + ", ".join(f"{json.dumps(k)}: {as_json(v)}" for k, v in fields.items())
            response = client.post(path, body + "}", content_type="application/json")
        else:
            text = value if isinstance(value, str) else as_json(value)
            response = client.get(path, {field: text})
        assert response.status_code < 500, (path, field, repr(value)[:80])
        assert response["Content-Type"] == "application/json", (path, field)
        assert len(response.content) < 20_000, (path, field, len(response.content))
        json.loads(response.content)
        answered.setdefault(path, set()).add(response.status_code)

    check()
    assert all(codes & {400} for path, codes in answered.items() if "token" not in path)
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2_621_440  # TOO_BIG's figure


# ---- item 12: deleting a run a worker writes to ----------------------------------------------


def test_deleting_a_run_while_a_worker_holds_its_lease_is_a_409(api, finished_run):
    from webapp.runs import leases
    from webapp.runs.models import SearchRun

    finished_run.out_dir.mkdir(parents=True, exist_ok=True)
    (finished_run.out_dir / "being-written.tmp").write_bytes(b"half a checkpoint")
    key = f"run {finished_run.pk} layer 2 e3_k3"
    holding = leases.take(key, "w1@node", "task-1", "a candidate", run=finished_run)
    assert holding is not None
    response = api.delete(f"/api/runs/{finished_run.pk}/")
    assert response.status_code == 409
    assert response.json() == {
        "error": f'run {finished_run.pk} is still being written by a worker ("{key}"); '
        "delete it once that work has stopped"
    }
    assert SearchRun.objects.filter(pk=finished_run.pk).exists()
    assert (finished_run.out_dir / "being-written.tmp").exists()
    holding.release()
    assert api.delete(f"/api/runs/{finished_run.pk}/").status_code == 204


def test_a_dead_workers_lease_does_not_block_deleting(api, finished_run):
    from tests.web.helpers import hold_lease

    hold_lease(finished_run, seconds_ago=settings.PONAS_HEARTBEAT_TIMEOUT + 60)
    assert api.delete(f"/api/runs/{finished_run.pk}/").status_code == 204


# ---- item 16: deployments keep the score's standard error ------------------------------------


def test_a_deployment_keeps_its_scores_standard_error_and_the_list_shows_it(alice):
    from django.test import Client

    from ponas.space import load_space
    from ponas.table import AccuracyTable
    from tests.web.helpers import digits_table, make_run
    from webapp.runs.models import Deployment, Stage, Status
    from webapp.runs.tables import store_table

    table = digits_table()
    stderr = [[None if a is None else 0.01 for a in row] for row in table.accuracy]
    space = load_space("digits")
    table = AccuracyTable.build(space, table.accuracy, table.path, table.meta, stderr=stderr)
    run = make_run(alice, Status.SUCCEEDED, stage=Stage.DONE, progress=1.0)
    store_table(run, table)
    response = client_for(alice).post("/api/deployments/", {"run": run.pk}, format="json")
    assert response.status_code == 201, response.content
    expected = table.score_stderr(table.path)
    assert expected is not None
    assert response.json()["score_stderr"] == pytest.approx(expected)
    assert Deployment.objects.get().score_stderr == pytest.approx(expected)
    listed = client_for(alice).get("/api/deployments/").json()["results"][0]
    assert listed["score_stderr"] == pytest.approx(expected)
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/deployments/").content.decode()
    assert f"± {expected:.3f}" in page
