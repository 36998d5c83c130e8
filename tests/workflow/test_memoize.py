"""Memoization: a memoized step whose key succeeded within maxAge is Cached and its result reused; the cache
is the namespace's workflow statuses (meson.controllers.memo)."""

from __future__ import annotations

from meson.api.validation import validate_workflow
from meson.controllers.memo import memo_lookup
from tests.workflow.sim import T0, Cluster, Outcome, container, step, workflow


def memo_workflow(name: str, date: str = "2025-06-01", max_age: int = 3600) -> dict:
    extract = step("extract", memoize={"key": "extract-{{ params.date }}", "maxAgeSeconds": max_age})
    use = step("use", ["extract"])
    use["template"] = {"spec": {"containers": [container(args=["{{ steps.extract.outputs.json.rows }}"])]}}
    return workflow([extract, use], name=name, parameters=[{"name": "date", "default": date}])


class Namespace:
    """Workflows of one namespace run one after the other, each planned with the namespace's cache."""

    def __init__(self) -> None:
        self.workflows: dict[tuple[str, str], dict] = {}
        self.now = T0
        self.clusters: dict[str, Cluster] = {}

    def run(self, wf: dict, rows: int = 1) -> Cluster:
        name = wf["metadata"]["name"]
        self.workflows[("ns", name)] = wf
        c = Cluster(
            wf,
            now=self.now,
            script=lambda i, run, attempt, index: Outcome(result=f'{{"rows": {rows}}}'),
            memo=memo_lookup(self.workflows, "ns"),
        )
        c.run()
        self.now = c.now + 10
        return c


def test_second_run_with_the_same_key_is_cached_and_its_output_reused_downstream():
    ns = Namespace()
    first = ns.run(memo_workflow("first"), rows=5)
    assert first.phase("extract") == "Succeeded" and first.status["memo"]["extract"]["key"]
    second = ns.run(memo_workflow("second"), rows=99)
    assert second.phase("extract") == "Cached" and second.status["phase"] == "Succeeded"
    assert second.status["outputs"]["extract"] == '{"rows": 5}'  # the first run's result
    assert [i for i, _, _ in second.launches] == ["use"]  # extract never launched
    use_args = [r.pods[0]["spec"]["containers"][0]["args"] for p in second.plans for r in p.pending]
    assert use_args == [["5"]]
    assert second.status["counts"]["succeeded"] == 2
    assert "cached: same key succeeded at" in second.entry("extract")["message"]
    # A cached step records the original run's time: maxAge counts from that run, not from the cache hit.
    assert second.status["memo"]["extract"] == first.status["memo"]["extract"]


def test_another_key_or_an_entry_older_than_max_age_runs_the_step():
    ns = Namespace()
    ns.run(memo_workflow("first", max_age=60))
    other = ns.run(memo_workflow("other-date", date="2025-06-02", max_age=60))
    assert other.phase("extract") == "Succeeded"
    ns.now += 120
    late = ns.run(memo_workflow("late", max_age=60))
    assert late.phase("extract") == "Succeeded" and late.launches[0][0] == "extract"


def test_restart_from_a_memoized_step_runs_it_again_and_forgets_its_record():
    from meson.workflow_commands import restart_change

    ns = Namespace()
    ns.run(memo_workflow("first"))
    second = ns.run(memo_workflow("second"))
    assert second.phase("extract") == "Cached"
    second.set_spec(**restart_change(second.wf, "extract", {}))
    ns.workflows.clear()  # the cache is gone (the workflows deleted): the step must run
    second.memo = memo_lookup(ns.workflows, "ns")  # the controller makes a lookup per plan
    second.run()
    assert second.phase("extract") == "Succeeded" and second.entry("extract")["run"] == 1


def test_memoize_on_foreach_and_unknown_references_in_the_key_are_refused():
    wf = workflow(
        [
            step("a", foreach={"items": [1]}, memoize={"key": "k", "maxAgeSeconds": 5}),
            step("b", memoize={"key": "{{ params.nope }}-{{ steps.a.outputs.result }}", "maxAgeSeconds": 5}),
        ]
    )
    assert validate_workflow(wf) == [
        "spec.steps[0].memoize: a step with foreach cannot be memoized",
        "spec.steps[1].memoize.key: {{ params.nope }} refers to undefined parameter 'nope'",
        "spec.steps[1].memoize.key: {{ steps.a.outputs.result }} refers to the outputs of step 'a', which is "
        "not upstream of this step",
    ]


def test_meson_workflow_get_shows_a_cached_step_as_cached():
    from meson.views.model import workflow_detail

    ns = Namespace()
    ns.run(memo_workflow("first"))
    second = ns.run(memo_workflow("second"))
    phases = {node.name: node.phase for node in workflow_detail(second.wf).steps}
    assert phases == {"extract": "Cached", "use": "Succeeded"}
