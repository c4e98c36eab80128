"""Property-based requests from ``/api/openapi.json`` (Schemathesis) against the ASGI app on a SQLite store.

Every operation is called with generated valid (positive) and invalid (negative) inputs and an admin token;
each response must not be a server error and must conform to the document: its status code is one the
operation lists, its content type the one listed for that code, its body valid against the listed schema.
The figures (requests made, failures) are printed (``-s``), in the run's closing summary and in a JUnit report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskstore.web import create_app

from .conftest import ADMIN, SUMMARY, bearer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 30  # per operation and mode: 20 operations x 2 modes x 30 = 1,200 requests
EXCLUDED = {"/api/v1/events"}  # an endless stream


def _bounded(case: Any) -> None:
    """A valid claim may wait up to 60 s on an empty queue: cut the wait, keep the request valid."""
    body = case.body
    if case.operation.path == "/api/v1/claims" and isinstance(body, dict):
        wait = body.get("block_for")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and 0.05 < wait <= 60:
            body["block_for"] = 0.05


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], counts: Counter[str], failures: list[str]
) -> None:
    """Up to ``MAX_EXAMPLES`` generated requests to one operation; each check failure is collected."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure here is reproducible
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        _bounded(case)
        response = case.call(headers=headers)
        counts["requests"] += 1
        counts[f"status {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, FailureGroup) as exc:  # one failed check, or several
            failures.append(f"{operation.label} [{mode.value}]: {exc}"[:2000])

    call()


def test_the_api_conforms_to_its_openapi_document(
    sqlite_url: str, record_testsuite_property: Callable[[str, object], None]
) -> None:
    app = create_app(sqlite_url, tokens=[ADMIN])
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        if result.ok().path not in EXCLUDED:
            operations.append(result.ok())
    assert len(operations) >= 20
    try:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, bearer(ADMIN), counts, failures)
    finally:
        asgi.shutdown_lifespans()  # closes the store the app opened
    summary = f"schemathesis: requests made {counts['requests']}, failures {len(failures)}"
    statuses = ", ".join(f"{k.split()[1]}: {v}" for k, v in sorted(counts.items()) if k.startswith("status"))
    line = f"{summary} ({len(operations)} operations; statuses {statuses})"
    print(f"\n{line}")
    SUMMARY.append(line)
    record_testsuite_property("schemathesis_requests", counts["requests"])  # in --junitxml reports
    record_testsuite_property("schemathesis_failures", len(failures))
    assert not failures, "\n\n".join(failures[:10])
    assert counts["requests"] > 500
