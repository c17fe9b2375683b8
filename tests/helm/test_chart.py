"""Offline checks of charts/origin-cluster-operator with the real Helm v4 engine.

Run: scripts/helm-env.sh && .venv-helm/bin/pytest -q tests/helm
"""

from __future__ import annotations

import filecmp
import json
import os
import pathlib
import re
import shutil
import subprocess
from typing import Any, Iterable

import helm_python as helm
import pytest
import yaml

from conftest import (CHART, CHART_CRDS, K8S_VERSIONS, NAMESPACE, RELEASE, ROOT, TOP_CRDS,
                      Rendered, crd_files, k8s_validate, load_yaml_docs, render)

FULLNAME = f"{RELEASE}-origin-cluster-operator"

# Value sets that must render and produce valid manifests.
OVERRIDES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespace-scope": {"rbac": {"scope": "namespace"}},
    "namespace-scope-other-ns": {"rbac": {"scope": "namespace", "namespace": "media"}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True,
                                                      "labels": {"release": "prometheus"}}}},
    "leader-election-2-replicas": {"replicaCount": 2, "leaderElection": {"enabled": True}},
    "no-rbac-existing-sa": {"rbac": {"create": False},
                            "serviceAccount": {"create": False, "name": "ops-sa"}},
    "everything": {
        "replicaCount": 3,
        "leaderElection": {"enabled": True},
        "rbac": {"scope": "namespace", "namespace": "streams"},
        "image": {"repository": "registry.example:5000/media/origin-operator",
                  "digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
        "logLevel": "info,origin_operator=debug",
        "logFormat": "text",
        "extraArgs": ["--some-flag"],
        "extraEnv": [{"name": "EXTRA", "value": "1"}],
        "metrics": {"port": 9090, "service": {"port": 9191, "annotations": {"a": "b"}},
                    "serviceMonitor": {"enabled": True, "interval": "15s", "scrapeTimeout": "5s"}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": 1, "memory": "512Mi"}},
        "podAnnotations": {"x": "y"},
        "podLabels": {"team": "media"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "media",
                         "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "terminationGracePeriodSeconds": 60,
    },
}

# Values the schema must reject, with a fragment of the expected message.
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "scope-enum": ({"rbac": {"scope": "cluster-wide"}}, "/rbac/scope"),
    "two-replicas-without-leader-election": ({"replicaCount": 2}, "/leaderElection/enabled"),
    "negative-replicas": ({"replicaCount": -1}, "/replicaCount"),
    "replicas-not-integer": ({"replicaCount": "2"}, "/replicaCount"),
    "too-many-replicas": ({"replicaCount": 50, "leaderElection": {"enabled": True}}, "/replicaCount"),
    "pull-policy-enum": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "empty-repository": ({"image": {"repository": ""}}, "/image/repository"),
    "bad-digest": ({"image": {"digest": "latest"}}, "/image/digest"),
    "unknown-top-level-key": ({"replicas": 2}, "replicas"),
    "unknown-nested-key": ({"rbac": {"scopes": "namespace"}}, "scopes"),
    "leader-election-not-bool": ({"leaderElection": {"enabled": "yes"}}, "/leaderElection/enabled"),
    "port-out-of-range": ({"metrics": {"port": 70000}}, "/metrics/port"),
    "port-zero": ({"metrics": {"service": {"port": 0}}}, "/metrics/service/port"),
    "bad-interval": ({"metrics": {"serviceMonitor": {"enabled": True, "interval": "30 seconds"}}},
                     "/metrics/serviceMonitor/interval"),
    "bad-quantity": ({"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu"),
    "unknown-resource": ({"resources": {"requests": {"gpu": 1}}}, "gpu"),
    "namespace-not-dns-label": ({"rbac": {"scope": "namespace", "namespace": "Media_NS"}},
                                "/rbac/namespace"),
    "log-format-enum": ({"logFormat": "xml"}, "/logFormat"),
    "lease-name-not-dns": ({"leaderElection": {"enabled": True, "leaseName": "My Lease"}},
                           "/leaderElection/leaseName"),
    "grace-negative": ({"terminationGracePeriodSeconds": -5}, "/terminationGracePeriodSeconds"),
    "pull-secret-shape": ({"imagePullSecrets": ["regcred"]}, "/imagePullSecrets/0"),
}


# --------------------------------------------------------------------------- lint


def _lint_problems(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    report = helm.lint(str(CHART), values or {}, strict=True, namespace=NAMESPACE,
                       kube_version="v1.30.0")
    assert report["total_charts_linted"] == 1
    # severity: 0 unknown, 1 info ("icon is recommended"), 2 warning, 3 error.
    # `helm lint --strict` fails on warnings and errors.
    return [m for m in report["messages"] if m["severity"] >= 2] + \
        [{"error": e} for e in report.get("errors") or []]


def test_lint_strict_clean() -> None:
    assert _lint_problems() == []


@pytest.mark.parametrize("case", sorted(OVERRIDES))
def test_lint_strict_clean_with_overrides(case: str) -> None:
    assert _lint_problems(OVERRIDES[case]) == []


def test_lint_reports_schema_violation() -> None:
    problems = _lint_problems({"rbac": {"scope": "everywhere"}})
    assert any("/rbac/scope" in p["error"] for p in problems), problems


# ------------------------------------------------------------------------ render


@pytest.fixture(scope="module", params=sorted(OVERRIDES))
def rendered_case(request) -> tuple[str, Rendered]:
    return request.param, render(OVERRIDES[request.param])


def test_render_every_override(rendered_case) -> None:
    case, r = rendered_case
    kinds = sorted(d["kind"] for d in r.docs)
    assert "Deployment" in kinds, kinds
    for d in r.docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE, d["metadata"]
        assert d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # Nothing cluster-scoped besides the ClusterRole(Binding) in cluster scope.
    for d in r.docs:
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"].get("namespace"), f"{d['kind']} without namespace"
    assert "kubectl get ocl" in r.notes


def _strict_check_servicemonitor(doc: dict[str, Any]) -> None:
    # kubernetes-validate knows built-in kinds only; check the ServiceMonitor
    # against the fields of monitoring.coreos.com/v1 we use.
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    spec = doc["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    for ep in spec["endpoints"]:
        assert set(ep) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}, ep
        for k in ("interval", "scrapeTimeout"):
            assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", ep[k]), ep[k]


def test_rendered_manifests_pass_kubernetes_validate(rendered_case) -> None:
    case, r = rendered_case
    for doc in r.docs:
        if doc["kind"] == "ServiceMonitor":
            _strict_check_servicemonitor(doc)
            continue
        for version in K8S_VERSIONS:
            try:
                k8s_validate(doc, version)
            except Exception as e:  # kubernetes_validate.ValidationError & co
                pytest.fail(f"[{case}] {doc['kind']}/{doc['metadata']['name']} invalid for "
                            f"Kubernetes {version}: {getattr(e, 'message', e)}")


def test_kubernetes_validate_catches_a_broken_manifest(default_render: Rendered) -> None:
    """Guards the guard: a bad field must make validation fail."""
    dep = json.loads(json.dumps(default_render.one("Deployment")))
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(Exception):
        k8s_validate(dep, K8S_VERSIONS[0])
    dep = json.loads(json.dumps(default_render.one("Deployment")))
    dep["spec"]["replicas"] = "one"
    with pytest.raises(Exception):
        k8s_validate(dep, K8S_VERSIONS[0])


def _container(r: Rendered) -> dict[str, Any]:
    dep = r.one("Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def _env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_default_deployment(default_render: Rendered) -> None:
    dep = default_render.one("Deployment")
    assert dep["metadata"]["name"] == FULLNAME
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    c = _container(default_render)
    assert c["image"] == "origin-operator:0.1.0"
    assert "--leader-elect" not in c.get("args", [])
    assert not any(a.startswith("--namespace") for a in c.get("args", []))
    assert "WATCH_NAMESPACE" not in _env(c)
    env = _env(c)
    assert env["RUST_LOG"] == "info,kube=warn"
    assert "--log-format=json" in c["args"]
    assert env["OPERATOR_HTTP_LISTEN"] == "0.0.0.0:8080"
    # probes and metrics on :8080
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # hardening
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]


def test_default_rbac_is_cluster_scoped(default_render: Rendered) -> None:
    kinds = {d["kind"] for d in default_render.docs}
    assert {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"} <= kinds
    assert "Role" not in kinds and "RoleBinding" not in kinds  # no Lease role without leader election
    crb = default_render.one("ClusterRoleBinding")
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                              "name": FULLNAME}
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME,
                                "namespace": NAMESPACE}]
    assert default_render.one("ServiceAccount")["metadata"]["name"] == FULLNAME


def test_metrics_service(default_render: Rendered) -> None:
    svc = default_render.one("Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "http-metrics", "port": 8080, "targetPort": "http",
                                     "protocol": "TCP"}]
    dep = default_render.one("Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert not default_render.of_kind("ServiceMonitor")


@pytest.mark.parametrize("ns_value,expected", [("", NAMESPACE), ("media", "media")])
def test_namespace_scope(ns_value: str, expected: str) -> None:
    r = render({"rbac": {"scope": "namespace", "namespace": ns_value}})
    role, binding = r.one("Role"), r.one("RoleBinding")
    assert role["metadata"]["namespace"] == expected
    assert binding["metadata"]["namespace"] == expected
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"][0]["namespace"] == NAMESPACE  # the operator's SA stays home
    # Only the cluster-scoped CRD read stays in a ClusterRole.
    crd_role = r.one("ClusterRole")
    assert crd_role["metadata"]["name"] == f"{FULLNAME}-crd"
    assert {res for _, res, _ in _triples(crd_role["rules"])} == {"customresourcedefinitions"}
    assert r.one("ClusterRoleBinding")["roleRef"]["name"] == f"{FULLNAME}-crd"
    c = _container(r)
    assert f"--namespace={expected}" in c["args"]
    assert _env(c)["WATCH_NAMESPACE"] == expected
    assert f"-n {expected}" in r.notes
    # Same permissions as in cluster scope, only narrower in scope.
    assert _granted(r) == _granted(render())


def test_servicemonitor_enabled() -> None:
    r = render(OVERRIDES["servicemonitor"])
    sm = r.one("ServiceMonitor")
    svc = r.one("Service")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_servicemonitor_needs_the_metrics_service() -> None:
    with pytest.raises(helm.HelmError, match="metrics.service.enabled"):
        render({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}})


def test_leader_election_two_replicas() -> None:
    r = render(OVERRIDES["leader-election-2-replicas"])
    dep = r.one("Deployment")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    c = _container(r)
    assert c["args"] == ["--api-timeout=10s", "--log-format=json", "--leader-elect",
                         f"--lease-name={FULLNAME}"]
    assert {"POD_NAME", "POD_NAMESPACE"} <= _env(c).keys()
    role = r.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    # Only Leases here; which verbs is checked against the operator in test_rbac_equals_*.
    assert {t[:2] for t in _triples(role["rules"])} == {("coordination.k8s.io", "leases")}
    for rule in role["rules"]:  # only our own Lease, except create (no name yet)
        assert rule["verbs"] == ["create"] or rule["resourceNames"] == [FULLNAME], rule
    other = render({**OVERRIDES["leader-election-2-replicas"],
                    "leaderElection": {"enabled": True, "leaseName": "my-lease"}})
    assert "--lease-name=my-lease" in _container(other)["args"]
    assert ["my-lease"] in [rule.get("resourceNames") for rule in other.one("Role")["rules"]]
    rb = r.one("RoleBinding")
    assert rb["roleRef"]["name"] == role["metadata"]["name"]
    assert "elect one leader" in r.notes


def test_everything_override() -> None:
    r = render(OVERRIDES["everything"])
    c = _container(r)
    assert c["image"] == "registry.example:5000/media/origin-operator@sha256:" + "ab" * 32
    assert c["args"] == ["--api-timeout=10s", "--log-format=text", "--leader-elect",
                         f"--lease-name={FULLNAME}", "--namespace=streams", "--some-flag"]
    assert c["ports"][0]["containerPort"] == 9090
    assert _env(c)["OPERATOR_HTTP_LISTEN"] == "0.0.0.0:9090"
    assert "OPERATOR_LOG_FORMAT" not in _env(c), "the format goes in one place, the flag"
    assert r.one("Service")["spec"]["ports"][0]["port"] == 9191
    pod = r.one("Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "media"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 60


def test_existing_service_account_without_rbac() -> None:
    r = render(OVERRIDES["no-rbac-existing-sa"])
    kinds = {d["kind"] for d in r.docs}
    assert kinds.isdisjoint({"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                             "RoleBinding"}), kinds
    assert r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"


# ------------------------------------------------------------------------ schema


@pytest.mark.parametrize("case", sorted(INVALID))
def test_schema_rejects_invalid_values(case: str) -> None:
    values, fragment = INVALID[case]
    with pytest.raises(helm.HelmError) as err:
        render(values)
    msg = str(err.value)
    assert "schema" in msg and fragment in msg, msg


def test_values_yaml_documents_every_schema_key() -> None:
    """values.yaml and values.schema.json describe the same top-level keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    assert set(schema["properties"]) - {"global"} <= set(values), \
        set(schema["properties"]) - set(values)


# -------------------------------------------------------------------------- RBAC

Triple = tuple[str, str, str]


def _triples(rules: Iterable[dict[str, Any]]) -> set[Triple]:
    out: set[Triple] = set()
    for rule in rules:
        assert not rule.get("nonResourceURLs"), rule
        # resourceNames only narrows a triple further; it is compared as the triple.
        for g in rule.get("apiGroups") or [""]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (g, res, verb), f"wildcard in {rule}"
                    out.add((g, res, verb))
    return out


def _granted(r: Rendered) -> set[Triple]:
    """Everything the chart grants: all Roles and ClusterRoles it renders."""
    return set().union(*(_triples(d["rules"]) for d in r.docs
                         if d["kind"] in ("Role", "ClusterRole")))


def _operator_source_has_rbac() -> bool:
    crdgen = ROOT / "operator" / "src" / "bin" / "crdgen.rs"
    return ((ROOT / "operator" / "src" / "rbac.rs").is_file() and crdgen.is_file()
            and "rbac" in crdgen.read_text())


def _cargo() -> str:
    return shutil.which("cargo") or str(pathlib.Path.home() / ".cargo" / "bin" / "cargo")


def _cargo_run(bin_name: str, *args: str) -> subprocess.CompletedProcess:
    # Uses whatever CARGO_TARGET_DIR the environment has (the CI's build is reused).
    return subprocess.run(
        [_cargo(), "run", "-q", "-p", "origin-operator", "--bin", bin_name, "--", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, env=dict(os.environ))


@pytest.fixture(scope="module")
def operator_rules() -> set[Triple]:
    """The operator's own list of API calls: `crdgen rbac` (operator/src/rbac.rs)."""
    assert _operator_source_has_rbac(), (
        "operator/src/rbac.rs or the `crdgen rbac` subcommand is missing: "
        "cannot compare the chart's ClusterRole with the operator's rules")
    proc = _cargo_run("crdgen", "rbac")
    assert proc.returncode == 0, f"`crdgen rbac` failed:\n{proc.stderr[-4000:]}"
    rules = json.loads(proc.stdout)
    assert isinstance(rules, list) and rules, proc.stdout
    return _triples(rules)


LEASES = "coordination.k8s.io"


RBAC_CASES = {
    "defaults": {},
    "namespace-scope": {"rbac": {"scope": "namespace", "namespace": "media"}},
    "leader-election": {"replicaCount": 2, "leaderElection": {"enabled": True}},
    "namespace-scope-leader-election": {"replicaCount": 2, "leaderElection": {"enabled": True},
                                        "rbac": {"scope": "namespace"}},
}


@pytest.mark.parametrize("case", sorted(RBAC_CASES))
def test_rbac_equals_operator_rules(case: str, operator_rules: set[Triple]) -> None:
    """The chart grants every (group, resource, verb) the operator uses, and nothing more.

    The Lease permission is granted (by a Role in the release namespace) only
    with leader election.
    """
    values = RBAC_CASES[case]
    r = render(values)
    granted = _granted(r)
    needed = set(operator_rules)
    if not values.get("leaderElection", {}).get("enabled"):
        needed = {t for t in needed if t[0] != LEASES}
    missing, extra = needed - granted, granted - needed
    assert not missing and not extra, (
        f"[{case}] chart RBAC differs from `crdgen rbac` (operator/src/rbac.rs).\n"
        f" missing (the operator calls these): {sorted(missing)}\n"
        f" extra (the operator never calls these): {sorted(extra)}")


def test_api_timeout_is_passed_and_validated() -> None:
    c = _container(render({"apiTimeout": "1m30s"}))
    assert "--api-timeout=1m30s" in c["args"]
    with pytest.raises(Exception):
        render({"apiTimeout": "forever"})


def test_log_format_is_passed_as_a_flag() -> None:
    for fmt in ("json", "text"):
        c = _container(render({"logFormat": fmt}))
        assert [a for a in c["args"] if a.startswith("--log-format")] == [f"--log-format={fmt}"]
        assert "OPERATOR_LOG_FORMAT" not in _env(c)
    with pytest.raises(Exception):
        render({"logFormat": "xml"})


def test_operator_accepts_the_flags_the_chart_passes() -> None:
    """Every flag the chart can pass (--api-timeout, --log-format, --leader-elect, --namespace)
    exists in the operator's CLI."""
    main = ROOT / "operator" / "src" / "main.rs"
    text = main.read_text() if main.is_file() else ""
    assert "clap" in text or "Parser" in text, "operator/src/main.rs has no command line"
    proc = _cargo_run("origin-operator", "--help")
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = render(OVERRIDES["namespace-scope-other-ns"] | OVERRIDES["leader-election-2-replicas"])
    for arg in _container(r)["args"]:
        flag = arg.split("=", 1)[0]
        assert re.search(rf"(^|\s){re.escape(flag)}\b", proc.stdout), \
            f"chart passes {flag} but `origin-operator --help` does not list it:\n{proc.stdout}"


def test_cluster_scoped_grants_are_narrow(default_render: Rendered) -> None:
    for rule in default_render.one("ClusterRole")["rules"]:
        if "apiextensions.k8s.io" in rule["apiGroups"]:
            assert rule["resourceNames"] == ["originclusters.origincluster.dev"], rule
            assert rule["verbs"] == ["get"], rule


def test_cluster_role_has_no_wildcards_or_escalation(default_render: Rendered) -> None:
    triples = _triples(default_render.one("ClusterRole")["rules"])
    assert not {t for t in triples if t[2] in ("escalate", "bind", "impersonate")}
    assert not {t for t in triples if t[1] in ("clusterroles", "roles", "clusterrolebindings",
                                               "rolebindings", "nodes", "namespaces")}
    # Secrets are needed for the admin token, but never cluster-wide "list everything" on
    # unrelated kinds: the operator only reads pods and EndpointSlices.
    assert {v for g, res, v in triples if res in ("pods", "endpointslices")} <= \
        {"get", "list", "watch"}


# -------------------------------------------------------------------------- CRDs


def test_chart_crds_equal_top_level_crds() -> None:
    top = {p.name: p for p in crd_files(TOP_CRDS)}
    chart = {p.name: p for p in crd_files(CHART_CRDS)}
    assert top, ("top-level crds/ holds no CRD (generate it: "
                 "`cargo run -p origin-operator --bin crdgen`)")
    assert set(chart) == set(top), (
        f"charts/origin-cluster-operator/crds/ has {sorted(chart)}, crds/ has {sorted(top)}; "
        "copy them: cp crds/*.yaml charts/origin-cluster-operator/crds/")
    differ = [n for n in top if not filecmp.cmp(top[n], chart[n], shallow=False)]
    assert not differ, (f"chart CRDs out of date: {differ}; "
                        "cp crds/*.yaml charts/origin-cluster-operator/crds/")


def test_chart_crds_are_loaded_by_helm_and_valid() -> None:
    files = crd_files(CHART_CRDS)
    assert files, "no CRD in charts/origin-cluster-operator/crds/"
    crds = helm.Chart.load(str(CHART)).crds
    assert len(crds) == len(files), crds
    for path in files:
        for doc in load_yaml_docs(path):
            assert doc["kind"] == "CustomResourceDefinition"
            for version in K8S_VERSIONS:
                k8s_validate(doc, version)
            spec = doc["spec"]
            if spec["names"]["kind"] == "OriginCluster":
                assert spec["group"] == "origincluster.dev"
                assert spec["names"]["plural"] == "originclusters"
                assert "ocl" in spec["names"].get("shortNames", [])
                assert spec["scope"] == "Namespaced"
                (v,) = [v for v in spec["versions"] if v["name"] == "v1alpha1"]
                assert v["served"] and v["storage"]
                sub = v["subresources"]
                assert "status" in sub
                assert sub["scale"] == {"specReplicasPath": ".spec.replicas",
                                        "statusReplicasPath": ".status.replicas",
                                        "labelSelectorPath": ".status.selector"}
