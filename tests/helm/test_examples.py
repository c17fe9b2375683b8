"""Every manifest in examples/ validates.

OriginClusters are checked against the openAPIV3Schema of the generated CRD
(crds/), made strict the way the API server's strict field validation is
(`kubectl apply` rejects unknown fields); built-in kinds (the HPA) are checked
with kubernetes-validate for Kubernetes 1.30 and the newest version it knows.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema
import pytest

from conftest import EXAMPLES, K8S_VERSIONS, k8s_validate, load_yaml_docs, origincluster_crd

GROUP_VERSION = "origincluster.dev/v1alpha1"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def to_json_schema(node: Any) -> Any:
    """Kubernetes structural OpenAPI v3 schema -> strict JSON schema.

    nullable -> null allowed; int-or-string -> integer|string; objects with
    fixed properties and no additionalProperties/preserve-unknown-fields reject
    unknown keys (the API server would prune or, with strict field validation,
    refuse them).
    """
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if k not in ("x-kubernetes-validations",)}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        t = out["type"]
        out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def resource_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    (v,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema = to_json_schema(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
    props = schema.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {  # the API server's ObjectMeta, the parts examples use
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "maxLength": 52,  # StatefulSet pod names + "-peers" etc.
                     "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    schema["additionalProperties"] = False
    return schema


@pytest.fixture(scope="module")
def oc_validator() -> jsonschema.protocols.Validator:
    crd = origincluster_crd()
    assert crd is not None, ("crds/ has no OriginCluster CRD; "
                             "generate it: cargo run -p origin-operator --bin crdgen")
    schema = resource_schema(crd, "v1alpha1")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _docs() -> list[tuple[str, int, dict[str, Any]]]:
    return [(p.name, i, d) for p in EXAMPLE_FILES for i, d in enumerate(load_yaml_docs(p))]


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert {"minimal.yaml", "loadbalancer-perpod.yaml", "hpa.yaml"} <= names, names


@pytest.mark.parametrize("name,index,doc", _docs(),
                         ids=lambda x: x if isinstance(x, str) else None)
def test_example_validates(name: str, index: int, doc: dict[str, Any], request) -> None:
    assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{name}[{index}]"
    if doc["kind"] == "OriginCluster":
        assert doc["apiVersion"] == GROUP_VERSION
        validator = request.getfixturevalue("oc_validator")
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{name}[{index}]: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)
    else:
        for version in K8S_VERSIONS:
            k8s_validate(doc, version)


def test_minimal_is_minimal() -> None:
    (doc,) = load_yaml_docs(EXAMPLES / "minimal.yaml")
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert doc["apiVersion"] == GROUP_VERSION and doc["kind"] == "OriginCluster"
    assert set(doc["metadata"]) == {"name"}
    assert doc["spec"]["replicas"] == 3
    assert set(doc["spec"]) <= {"replicas", "image"}, "minimal means minimal"


def test_loadbalancer_perpod() -> None:
    (doc,) = load_yaml_docs(EXAMPLES / "loadbalancer-perpod.yaml")
    assert doc["spec"]["service"]["type"] == "LoadBalancer"
    assert doc["spec"]["advertise"] == "PerPodService"


def test_hpa_targets_the_origincluster_scale_subresource() -> None:
    docs = load_yaml_docs(EXAMPLES / "hpa.yaml")
    (oc,) = [d for d in docs if d["kind"] == "OriginCluster"]
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": GROUP_VERSION,
                                             "kind": "OriginCluster",
                                             "name": oc["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] <= oc["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    crd = origincluster_crd()
    if crd is not None:
        (v,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
        assert v.get("subresources", {}).get("scale"), "CRD has no scale subresource for the HPA"


def test_notes_example_validates(oc_validator) -> None:
    """The OriginCluster that NOTES.txt tells the user to apply is valid."""
    from conftest import render
    import textwrap
    import yaml
    for values in ({}, {"image": {"repository": "reg.example/x/origin-operator", "tag": "1.2.3"}}):
        notes = render(values).notes
        m = re.search(r"cat <<'YAML'.*?\n(.*?)\n\s*YAML\n", notes, re.S)
        assert m, notes
        doc = yaml.safe_load(textwrap.dedent(m.group(1)))
        assert not list(oc_validator.iter_errors(doc)), doc
        assert doc["metadata"]["name"] in notes.split("YAML")[-1]  # the follow-up commands
    assert doc["spec"]["image"] == "reg.example/x/origin:1.2.3"


def test_schema_check_rejects_bad_resources(oc_validator) -> None:
    """Guards the guard: typos, wrong types and bad enums must fail."""
    (good,) = load_yaml_docs(EXAMPLES / "loadbalancer-perpod.yaml")
    assert not list(oc_validator.iter_errors(good))
    bad_cases = []
    d = copy.deepcopy(good); d["spec"]["replica"] = 3; bad_cases.append(d)  # noqa: E702
    d = copy.deepcopy(good); d["spec"]["replicas"] = "three"; bad_cases.append(d)  # noqa: E702
    d = copy.deepcopy(good); d["spec"]["service"]["type"] = "Ingress"; bad_cases.append(d)  # noqa: E702
    d = copy.deepcopy(good); d["spec"]["advertise"] = "PodName"; bad_cases.append(d)  # noqa: E702
    d = copy.deepcopy(good); d["spec"]["service"]["typ"] = "NodePort"; bad_cases.append(d)  # noqa: E702
    d = copy.deepcopy(good); d["metadata"]["name"] = "Live_Public"; bad_cases.append(d)  # noqa: E702
    for bad in bad_cases:
        assert list(oc_validator.iter_errors(bad)), f"accepted invalid resource: {bad['spec']}"
