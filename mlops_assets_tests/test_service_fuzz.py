"""Property-based fuzzing of the served OpenAPI schema: no generated request may make the service answer 5xx."""

import hypothesis
import pytest
import schemathesis

from mlops_assets_tests.service_fixtures import API_KEY, ServedBento

pytestmark = pytest.mark.e2e
# Bounded so the suite stays quick; raise it locally to fuzz harder.
EXAMPLES_PER_OPERATION = 30
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def _operations(served_bento: ServedBento) -> list:
    schema = schemathesis.openapi.from_url(f"{served_bento.url}/docs.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("authenticated", [True, False], ids=["with-key", "without-key"])
def test_generated_requests_never_get_a_server_error(served_bento: ServedBento, authenticated: bool) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"} if authenticated else {}
    operations = _operations(served_bento)
    assert {"/predict", "/predict_image", "/predict_base64"} <= {operation.path for operation in operations}
    calls = 0
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @FUZZ_SETTINGS
        def call_operation(case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=served_bento.url, headers=headers, timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
            if case.method == "POST" and case.path.startswith("/predict") and not authenticated:
                assert response.status_code == 401, (case.path, response.status_code, response.text[:300])

        call_operation()
    assert calls >= len(operations)
