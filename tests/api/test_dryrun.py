"""The pod dry run: strict field validation on the wire, the server's messages kept (only the preamble is
trimmed), and each message prefixed with the path of the template it came from."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from meson.adapters import dryrun

# What kube-apiserver v1.36 answers to a strict dry-run create of a pod with misspelt fields.
STRICT_400 = (
    'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
    'unknown field "spec.restartPolicyy", unknown field "spec.containers[0].resorces"'
)
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "w-a-"}, "spec": {"containers": []}}


class _Response:
    def __init__(self, status: int, data: bytes = b"{}") -> None:
        self.status, self.data, self.reason = status, data, "OK"

    def read(self) -> bytes:
        return self.data


def _error(status: int, message: str) -> ApiException:
    exc = ApiException(status=status, reason="Bad Request")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


def _api(monkeypatch: pytest.MonkeyPatch, answer: Any) -> tuple[client.ApiClient, list[str]]:
    """A real ApiClient whose transport records each URL and answers ``answer`` (a response or exception)."""
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:6443"))
    urls: list[str] = []

    def call_api(method: str, url: str, **_: Any) -> _Response:
        urls.append(url)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(api, "call_api", call_api)
    return api, urls


def test_dry_run_is_strict(monkeypatch):
    api, urls = _api(monkeypatch, _Response(201))
    assert dryrun.pod_dry_run(api, "team-a", dict(POD)) is None
    url = urlparse(urls[0])
    assert url.path == "/api/v1/namespaces/team-a/pods"
    assert parse_qs(url.query) == {"dryRun": ["All"], "fieldValidation": ["Strict"]}


def test_unknown_fields_are_a_verdict_in_the_servers_words(monkeypatch):
    api, _ = _api(monkeypatch, _error(400, STRICT_400))
    assert dryrun.pod_dry_run(api, "team-a", dict(POD)) == (
        'strict decoding error: unknown field "spec.restartPolicyy", '
        'unknown field "spec.containers[0].resorces"'
    )


@pytest.mark.parametrize(
    ("message", "trimmed"),
    [
        (STRICT_400, STRICT_400.split("a Pod: ", 1)[1]),
        (
            'Pod "w-a-" is invalid: spec.restartPolicy: Unsupported value: "Sometimes"',
            'spec.restartPolicy: Unsupported value: "Sometimes"',
        ),
        (
            "json: cannot unmarshal string into Go struct field",
            "json: cannot unmarshal string into Go struct field",
        ),
    ],
)
def test_messages_keep_the_servers_text(message, trimmed):
    assert dryrun._body_message(json.dumps({"message": message}), "Bad Request") == trimmed


@pytest.mark.parametrize("status", [403, 404, 500, 503])
def test_inconclusive_failures_let_the_pod_through(monkeypatch, status):
    api, _ = _api(monkeypatch, _error(status, "forbidden or unavailable"))
    assert dryrun.pod_dry_run(api, "team-a", dict(POD)) is None


def _step(name: str, container: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "template": {"spec": {"containers": [{"name": "m", "image": "x", **container}]}}}


def test_messages_carry_the_step_path_for_steps_exit_step_and_cron_templates():
    def strict(namespace: str, pod: dict[str, Any]) -> str | None:
        bad = [k for k in pod["spec"]["containers"][0] if k not in ("name", "image")]
        return f'strict decoding error: unknown field "spec.containers[0].{bad[0]}"' if bad else None

    spec = {
        "steps": [_step("ok", {}), _step("typo", {"resorces": {}})],
        "onExit": {
            "template": {"spec": {"containers": [{"name": "m", "image": "x", "imagePullPolicyy": "x"}]}}
        },
    }
    wf = {"kind": "Workflow", "metadata": {"name": "w"}, "spec": spec}
    assert dryrun.dry_run_pods("Workflow", wf, "team-a", strict) == [
        "spec.steps[1].template: invalid pod: strict decoding error: unknown field "
        '"spec.containers[0].resorces"',
        "spec.onExit.template: invalid pod: strict decoding error: unknown field "
        '"spec.containers[0].imagePullPolicyy"',
    ]
    cron = {
        "kind": "CronWorkflow",
        "metadata": {"name": "c"},
        "spec": {"schedule": "@daily", "workflowTemplate": {"spec": spec}},
    }
    assert dryrun.dry_run_pods("CronWorkflow", cron, "team-a", strict)[0].startswith(
        "spec.workflowTemplate.spec.steps[1].template: invalid pod: strict decoding error"
    )
    job = {
        "kind": "StreamJob",
        "metadata": {"name": "j"},
        "spec": {"template": _step("x", {"portz": []})["template"]},
    }
    assert dryrun.dry_run_pods("StreamJob", job, "team-a", strict) == [
        'spec.template: invalid pod: strict decoding error: unknown field "spec.containers[0].portz"'
    ]


class _Server:
    """Answers dry runs like the API server: a template with an unknown field is invalid; counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def __call__(self, namespace: str, pod: dict[str, Any]) -> str | None:
        self.calls += 1
        if self.down:
            raise dryrun.Inconclusive("503: the server is unavailable")
        return "unknown field" if "resorces" in json.dumps(pod) else None


def _workflow(name: str, resources_key: str = "resources") -> dict[str, Any]:
    container = {"name": "main", "image": "busybox:1.36", resources_key: {"requests": {"cpu": "1"}}}
    return {
        "apiVersion": "meson.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"steps": [{"name": "a", "template": {"spec": {"containers": [container]}}}]},
    }


def test_workflows_made_from_one_template_cost_one_dry_run() -> None:
    server = _Server()
    cache = dryrun.VerdictCache(server)
    for i in range(50):
        assert dryrun.dry_run_pods("Workflow", _workflow(f"wf-{i}"), "team-a", cache) == []
    bad = [
        dryrun.dry_run_pods("Workflow", _workflow(f"bad-{i}", "resorces"), "team-a", cache) for i in range(5)
    ]
    assert server.calls == 2  # one valid template, one invalid: each verdict reused
    assert all(problems == ["spec.steps[0].template: invalid pod: unknown field"] for problems in bad)
    dryrun.dry_run_pods("Workflow", _workflow("other-ns"), "team-b", cache)
    assert server.calls == 3  # another namespace may have other admission rules: its own verdict


def test_inconclusive_answers_are_not_remembered_and_verdicts_expire() -> None:
    now = [0.0]
    server = _Server()
    cache = dryrun.VerdictCache(server, ttl=60, clock=lambda: now[0])
    server.down = True
    assert dryrun.dry_run_pods("Workflow", _workflow("a", "resorces"), "team-a", cache) == []  # let through
    server.down = False
    problems = dryrun.dry_run_pods("Workflow", _workflow("b", "resorces"), "team-a", cache)
    assert problems and server.calls == 2  # asked again once the server answered
    dryrun.dry_run_pods("Workflow", _workflow("c", "resorces"), "team-a", cache)
    assert server.calls == 2
    now[0] = 61
    dryrun.dry_run_pods("Workflow", _workflow("d", "resorces"), "team-a", cache)
    assert server.calls == 3


def test_the_cache_keeps_at_most_size_verdicts() -> None:
    server = _Server()
    cache = dryrun.VerdictCache(server, size=2)
    for image in ("a", "b", "c", "a"):
        wf = _workflow("w")
        wf["spec"]["steps"][0]["template"]["spec"]["containers"][0]["image"] = image
        dryrun.dry_run_pods("Workflow", wf, "team-a", cache)
    assert server.calls == 4  # "a" was pushed out by "c"


def test_label_and_annotation_values_that_pass_the_syntax_checks_share_one_verdict() -> None:
    """Workloads of one template labelled with their own item and runtime: one dry run, not one each."""
    server = _Server()
    cache = dryrun.VerdictCache(server)

    def labelled(name: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
        wf = _workflow(name)
        wf["spec"]["steps"][0]["template"]["metadata"] = {"labels": labels, "annotations": annotations}
        return wf

    for i in range(20):
        wf = labelled(f"wf-{i}", {"item": f"item-{i}"}, {"sim.meson.dev/duration": f"{i}s"})
        assert dryrun.dry_run_pods("Workflow", wf, "team-a", cache) == []
    assert server.calls == 1
    # A value the API server would refuse is not hidden behind a valid one's verdict.
    dryrun.dry_run_pods("Workflow", labelled("bad", {"item": "not a label value"}, {}), "team-a", cache)
    assert server.calls == 2
    # Kubernetes' own annotations have values the server checks: each value is its own key.
    for profile in ("runtime/default", "localhost/x"):
        key = "container.apparmor.security.beta.kubernetes.io/main"
        dryrun.dry_run_pods("Workflow", labelled("aa", {}, {key: profile}), "team-a", cache)
    assert server.calls == 4
