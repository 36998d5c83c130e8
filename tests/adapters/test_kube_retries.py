"""API errors are retried with backoff when transient, and never turned into lost or duplicated work."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from meson.adapters import kube


class Flaky:
    """An API method that fails with the given statuses, then returns "ok"."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.calls = 0
        self.headers = headers

    def __call__(self, *args, **kwargs) -> str:
        self.calls += 1
        if self.statuses:
            e = ApiException(status=self.statuses.pop(0), reason="injected")
            e.headers = self.headers
            raise e
        return "ok"


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "_sleep", lambda _seconds: None)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_errors_are_retried_until_success(status: int) -> None:
    fn = Flaky(status, status)
    assert kube.call(fn) == "ok"
    assert fn.calls == 3


def test_too_many_requests_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    fn = Flaky(429, headers={"Retry-After": "7"})
    monkeypatch.setattr(kube, "_sleep", waits.append)
    assert kube.call(fn) == "ok"
    assert waits == [7.0]


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_permanent_errors_are_not_retried(status: int) -> None:
    fn = Flaky(status)
    with pytest.raises(ApiException):
        kube.call(fn)
    assert fn.calls == 1


def test_create_of_an_existing_deterministic_name_counts_as_done() -> None:
    fn = Flaky(503, 409)
    assert kube.create(fn) is None  # retried the 503, then found it already there: nothing duplicated
    assert fn.calls == 2


def test_delete_of_a_missing_object_counts_as_done() -> None:
    assert kube.delete(Flaky(404)) is False
    assert kube.delete(Flaky(500)) is True


def test_retries_give_up_eventually_and_say_so() -> None:
    fn = Flaky(*([503] * 50))
    with pytest.raises(ApiException) as info:
        kube.call(fn)
    assert info.value.status == 503
    assert fn.calls == 12
