"""Estimates and minimum runtimes of requests, as the loop hands them to the core."""

from __future__ import annotations

from types import SimpleNamespace

from meson.controllers.estimates import Policies
from meson.core.estimate import DEFAULT_SECONDS
from meson.workflow import LABEL_CRONWORKFLOW, InstanceRequest, PodObservation


def request(key: str, step: str) -> InstanceRequest:
    return InstanceRequest(key, key.rsplit("/", 1)[1], step, None, 1, 1, 1, False, {"cpu": 100}, 0.0)


def finished(name: str, instance: str, seconds: float) -> PodObservation:
    return PodObservation(name, instance, 1, 1, "Succeeded", "n1", 0, None, 0.0, 100.0, 100.0 + seconds)


def nightly(name: str, steps: list[dict]) -> dict:
    meta = {"name": name, "labels": {LABEL_CRONWORKFLOW: "nightly"}}
    return {"metadata": meta, "spec": {"steps": steps}}


def test_a_declared_duration_and_a_step_minimum_runtime_reach_the_workload() -> None:
    wf = {"metadata": {"name": "etl"}, "spec": {"steps": [
        {"name": "load", "expectedDurationSeconds": 90, "preemption": {"minRuntimeSeconds": 30}},
    ]}}  # fmt: skip
    store = SimpleNamespace(workflows={("ns", "etl"): wf}, streamjobs={})
    est, least = Policies(store).of(request("ns/etl/load", "load"))
    assert (est.seconds, est.source, least) == (90, "declared", 30)


def test_runs_of_a_cron_teach_the_next_run_its_steps_runtime_foreach_items_included() -> None:
    store = SimpleNamespace(workflows={}, streamjobs={})
    policies = Policies(store)
    steps = [{"name": "train"}, {"name": "shard", "foreach": {"items": [1, 2]}}]
    for day, secs in enumerate((100, 120, 110)):
        name = f"nightly-{day}"
        wf = store.workflows[("ns", name)] = nightly(name, steps)
        pods = [finished(f"{name}-train", "train", secs), finished(f"{name}-shard-1", "shard-1", secs / 10)]
        policies.learn(("ns", name), wf, pods)
        policies.learn(("ns", name), wf, pods)  # seen again next cycle: counted once
    store.workflows[("ns", "nightly-3")] = nightly("nightly-3", steps)
    train, _ = policies.of(request("ns/nightly-3/train", "train"))
    shard, _ = policies.of(request("ns/nightly-3/shard-0", "shard"))
    assert (train.seconds, train.source) == (120, "history")
    assert (shard.seconds, shard.source) == (12, "history")
    # Another workflow's step of the same name has no history of its own.
    store.workflows[("ns", "adhoc")] = {"metadata": {"name": "adhoc"}, "spec": {"steps": steps}}
    assert policies.of(request("ns/adhoc/train", "train"))[0].seconds == DEFAULT_SECONDS


def test_a_stream_job_replica_uses_the_job_s_declared_duration() -> None:
    job = {"metadata": {"name": "enrich"}, "spec": {"expectedDurationSeconds": 600}}
    store = SimpleNamespace(workflows={}, streamjobs={("ns", "enrich"): job})
    est, least = Policies(store).of(request("ns/enrich/0", "rev1"))
    assert (est.seconds, least) == (600, 0.0)
