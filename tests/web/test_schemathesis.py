"""Property-based conformance of the whole API against its own OpenAPI document.

The operations are driven with Hypothesis directly: schemathesis's lazy pytest
fixture loader does not run under pytest 9.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance, ignored_auth, negative_data_rejection, response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection, ignored_auth]


@pytest.fixture
def settings_overrides(stripe_stub):
    # Limits would turn most generated requests into 429s and hide the behaviour under test;
    # billing talks to the Stripe stub, which knows the plans' prices.
    stripe_stub.add_price("price_pro_monthly")
    stripe_stub.add_price("price_team_monthly")
    return {"ratelimit_enabled": False, "stripe_api_base": stripe_stub.url}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_the_document(app, auth_headers, mode):
    schema = schemathesis.openapi.from_wsgi("/api/v2/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    if mode is GenerationMode.NEGATIVE:
        # Invalid input needs an input to be invalid: parameters or a body.
        operations = [op for op in operations if op.definition.raw.get("parameters") or op.definition.raw.get("requestBody")]

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers=auth_headers, checks=CHECKS)

        check()
