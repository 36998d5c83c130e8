"""The generated CRDs: up to date with the models, structural, documented, and shaped as the issue asks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from meson.api import generate
from meson.api.crd import KINDS, build_crds

REPO = Path(__file__).resolve().parents[2]
CRDS = build_crds()


def test_generated_files_are_up_to_date():
    stale = generate.stale_files(REPO)
    assert not stale, "CRDs out of date with meson/api, run `make crds`: " + ", ".join(
        str(p.relative_to(REPO)) for p in stale
    )


def test_check_flag_reports_stale_files(tmp_path, capsys):
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--root", str(tmp_path), "--check"]) == 0
    victim = tmp_path / "helm/meson/crds/meson.dev_queues.yaml"
    victim.write_text(victim.read_text().replace("Fair-share weight", "Weight"))
    (tmp_path / "crds/meson.dev_workflows.yaml").unlink()
    assert generate.main(["--root", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "helm/meson/crds/meson.dev_queues.yaml" in err
    assert "crds/meson.dev_workflows.yaml" in err
    assert "crds/meson.dev_streamjobs.yaml" not in err


def test_chart_copy_is_identical():
    for name in CRDS:
        assert (REPO / "crds" / name).read_text() == (REPO / "helm/meson/crds" / name).read_text()


def _nodes(schema, path="$"):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}[*]")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")


def _schema(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_schema_is_structural(filename):
    allowed_keys = {
        "type", "description", "properties", "additionalProperties", "items", "required", "enum", "default",
        "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
        "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "anyOf", "nullable",
        "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-validations",
        "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-embedded-resource",
    }  # fmt: skip
    for path, node in _nodes(_schema(CRDS[filename])):
        assert set(node) <= allowed_keys, (path, set(node) - allowed_keys)
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert "anyOf" not in node, path
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if (
            node.get("type") == "object"
            and path != "$.metadata"
            and not ({"properties", "additionalProperties"} & set(node))
        ):
            assert node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), path
        for name in node.get("required", []):
            assert name in node["properties"], (path, name)
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"]["required"], path


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_every_field_has_a_description(filename):
    missing = [
        path
        for path, node in _nodes(_schema(CRDS[filename]))
        if not node.get("description") and not path.endswith(("[]", "[*]")) and path not in {"$.metadata"}
    ]
    assert not missing


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_cel_rules_parse(filename):
    import celpy

    env = celpy.Environment()
    rules = [
        rule["rule"]
        for _, node in _nodes(_schema(CRDS[filename]))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert rules
    for rule in rules:
        env.compile(rule)  # the Kubernetes extensions (quantity, isQuantity) parse as ordinary calls


def test_names_categories_columns():
    by_kind = {crd["spec"]["names"]["kind"]: crd for crd in CRDS.values()}
    short = {kind: crd["spec"]["names"]["shortNames"] for kind, crd in by_kind.items()}
    assert short == {
        "Queue": ["mq"],
        "Workflow": ["mwf"],
        "CronWorkflow": ["mcwf"],
        "StreamJob": ["msj"],
        "WorkflowTemplate": ["mwft"],
        "ClusterWorkflowTemplate": ["mcwft"],
    }
    for kind, crd in by_kind.items():
        spec = crd["spec"]
        assert spec["group"] == "meson.dev"
        assert spec["names"]["categories"] == ["meson"]
        assert spec["scope"] == ("Cluster" if kind in ("Queue", "ClusterWorkflowTemplate") else "Namespaced")
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert "status" in version["subresources"]
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert columns[-1] == "Age"
    columns = {
        k: [c["name"] for c in v["spec"]["versions"][0]["additionalPrinterColumns"]]
        for k, v in by_kind.items()
    }
    assert columns["Workflow"][:4] == ["Phase", "Queue", "Priority", "Progress"]
    assert columns["Queue"][:4] == ["Pending", "Admitted", "Weight", "Parent"]
    assert columns["StreamJob"][:4] == ["Phase", "Replicas", "Ready", "Revision"]
    scale = by_kind["StreamJob"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_column_paths_exist():
    for crd in CRDS.values():
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        for column in version["additionalPrinterColumns"]:
            node = schema
            for part in column["jsonPath"].strip(".").split("."):
                if part == "creationTimestamp":
                    break
                node = node["properties"][part]


def test_kinds_match_models():
    assert [k.kind for k in KINDS] == [
        "Queue",
        "Workflow",
        "CronWorkflow",
        "StreamJob",
        "WorkflowTemplate",
        "ClusterWorkflowTemplate",
    ]


def test_files_are_valid_yaml():
    for name in CRDS:
        assert yaml.safe_load((REPO / "crds" / name).read_text())["kind"] == "CustomResourceDefinition"
