"""API errors: what is retried (with a delay) and what is final."""

from __future__ import annotations

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from embedding_operator.kube import _retry_or_raise


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 0])
def test_transient_api_errors_are_retried_with_backoff(status: int) -> None:
    error = _retry_or_raise(ApiException(status=status, reason="flaky"), "creating RayJob x")
    assert isinstance(error, kopf.TemporaryError)
    assert error.delay and error.delay > 0


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_api_errors_are_permanent(status: int) -> None:
    with pytest.raises(kopf.PermanentError, match=str(status)):
        _retry_or_raise(ApiException(status=status, reason="no"), "creating RayJob x")
