"""Schemathesis against the app's own OpenAPI spec: no generated request gets a server error (5xx).

Requests are generated from the spec (bodies, query and path parameters, including invalid ones) and sent
to the app in-process. Runs that a generated request starts are real but small in number: the app allows
one at a time (others get 429).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from critmin.web.app import Limits, create_app

_FOLDER = tempfile.TemporaryDirectory(prefix="critmin-schemathesis-")  # removed at exit
_STORE = Path(_FOLDER.name) / "store.duckdb"
app = create_app(_STORE, limits=Limits(max_active_runs=1, max_draws=3, max_periods=20))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
    if response.status_code >= 400:
        body = response.json()
        assert "detail" in body
        assert "Traceback" not in response.text
