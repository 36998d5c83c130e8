"""The operator starts on a cluster without the WorkflowTemplate CRDs (helm upgrade does not add CRDs)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from meson.adapters import kube
from meson.controllers.handlers import prime_templates
from meson.controllers.templates import Templates


class _Custom:
    def __init__(self, status: int | None) -> None:
        self.status = status

    def list_cluster_custom_object(self, group, version, plural, **_):
        if self.status is not None:
            raise kube.ApiException(status=self.status)
        items = [
            {
                "metadata": {"name": "etl", "namespace": "ns"}
                if plural == "workflowtemplates"
                else {"name": "c"}
            }
        ]
        return SimpleNamespace(data=json.dumps({"items": items}).encode())


def test_templates_are_listed_at_start():
    templates = Templates()
    prime_templates(templates, SimpleNamespace(custom=_Custom(None)))
    assert list(templates.namespaced) == [("ns", "etl")] and list(templates.cluster) == ["c"]


def test_missing_template_crds_do_not_stop_the_start_but_other_errors_do():
    templates = Templates()
    prime_templates(templates, SimpleNamespace(custom=_Custom(404)))
    assert templates.namespaced == {} and templates.cluster == {}
    with pytest.raises(kube.ApiException):
        prime_templates(templates, SimpleNamespace(custom=_Custom(403)))
