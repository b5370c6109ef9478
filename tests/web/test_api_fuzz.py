"""Schemathesis against /api/schema/: generated requests (valid and invalid) to every
operation, authenticated; no 5xx, and every response conforms to the schema."""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from knox.models import AuthToken
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.helpers import make_finished_run
from webapp.runs.models import Artifact, Deployment, Status

EXAMPLES = 40  # per operation and mode: the whole test stays well under a minute
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def open_connection(db):
    """What Django's test client does: requests to the WSGI app keep the test's connection
    (and its transaction) open instead of closing it at the end of each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(open_connection):
    from webapp.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def objects(alice, open_connection) -> dict[str, int]:
    """A finished run and a built deployment of alice's, for cases that hit real objects."""
    run = make_finished_run(alice)
    deployment = Deployment.objects.create(
        run=run, choices=run.path, formats=["pt"], status=Status.SUCCEEDED
    )
    deployment.out_dir.mkdir(parents=True)
    (deployment.out_dir / "model.pt").write_bytes(b"weights")
    Artifact.record(deployment.out_dir / "model.pt", "pt", deployment=deployment)
    return {"runs": run.pk, "deployments": deployment.pk}


@pytest.fixture
def token(alice, open_connection):
    return AuthToken.objects.create(user=alice)[1]


def with_real_ids(strategy, path: str, objects: dict[str, int]):
    """Half the cases of an operation on ``{id}`` name an object that exists."""
    kind = path.split("/")[2]
    if "{id}" not in path or kind not in objects:
        return strategy

    def real(case):
        case.path_parameters = {**(case.path_parameters or {}), "id": objects[kind]}
        return case

    return st.one_of(strategy, strategy.map(real))


def fuzz(strategy, headers: dict[str, str], answered: set[tuple[str, int]]):
    """A Hypothesis test: each case is sent to the app and its response checked."""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case):
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        answered.add((case.operation.label, response.status_code))

    return check


@pytest.mark.slow
def test_api_never_errors_and_matches_its_schema(api_schema, token, objects):
    headers = {"Authorization": f"Token {token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # deleting comes last, and signing out (it revokes the token the cases are sent with)
    operations.sort(key=lambda op: (op.path == "/api/auth/logout/", op.method.lower() == "delete"))
    assert len(operations) >= 10
    failures: list[str] = []
    answered: set[tuple[str, int]] = set()

    for operation, mode in itertools.product(operations, MODES):
        strategy = with_real_ids(
            operation.as_strategy(generation_mode=mode), operation.path, objects
        )
        try:
            fuzz(strategy, headers, answered)()
        except Exception as exc:
            failures.append(f"{operation.label} ({mode.value} data): {exc}")
    assert not failures, "\n\n".join(failures)
    # the cases reached real objects, not only 404s
    for label in [
        "GET /api/runs/{id}/preview/",
        "GET /api/runs/{id}/table/",
        "GET /api/deployments/{id}/download/{fmt}/",
    ]:
        assert {code for op, code in answered if op == label} & {200, 201}, label
