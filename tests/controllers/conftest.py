from __future__ import annotations

from collections.abc import Iterator

import pytest

from meson.adapters import kube


@pytest.fixture(autouse=True)
def instant_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Retries of the API client do not sleep; a stopped loop elsewhere (kube.stop_retrying is global)
    does not stop this test's retries."""
    monkeypatch.setattr(kube, "_sleep", lambda _seconds: None)
    kube._stopping.clear()
    yield
    kube._stopping.clear()
