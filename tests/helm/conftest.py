"""Shared helpers for the offline Helm / manifest tests.

Everything here runs without a cluster: KUBECONFIG points at /dev/null before
the Helm engine (helm-python-sdk, the real Helm v4 Go code) is imported.
"""

from __future__ import annotations

import os

os.environ["KUBECONFIG"] = "/dev/null"  # never contact a cluster
os.environ.pop("HELM_KUBECONTEXT", None)

import pathlib  # noqa: E402
from typing import Any  # noqa: E402

import helm_python as helm  # noqa: E402
import kubernetes_validate  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "origin-cluster-operator"
EXAMPLES = ROOT / "examples"
TOP_CRDS = ROOT / "crds"
CHART_CRDS = CHART / "crds"

RELEASE = "oc"
NAMESPACE = "origin-system"

# Kubernetes versions the rendered manifests must be valid for: the oldest
# supported (Chart.yaml kubeVersion >=1.30) and the newest kubernetes-validate knows.
K8S_VERSIONS = sorted({"1.30.0", kubernetes_validate.latest_version()},
                      key=lambda v: tuple(int(x) for x in v.split(".")))


class Rendered:
    """Result of a client-side dry-run install (what `helm template` prints)."""

    def __init__(self, manifest: str, notes: str):
        self.manifest = manifest
        self.notes = notes
        self.docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(manifest) if d]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}"
        return found[0]


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE,
           name: str = RELEASE) -> Rendered:
    cfg = helm.Config(storage_driver="memory", namespace=namespace)
    try:
        rel = cfg.install(str(CHART), name, values or {}, namespace=namespace,
                          dry_run="client")
    finally:
        cfg.close()
    return Rendered(rel["manifest"], rel.get("notes") or "")


def k8s_validate(doc: dict[str, Any], version: str) -> None:
    """Strict validation of a built-in kind against Kubernetes' OpenAPI schemas."""
    kubernetes_validate.validate(doc, version, strict=True)


def load_yaml_docs(path: pathlib.Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def crd_files(directory: pathlib.Path) -> list[pathlib.Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix in (".yaml", ".yml"))


def origincluster_crd() -> dict[str, Any] | None:
    """The OriginCluster CRD from the top-level crds/ (the generated source of truth)."""
    for path in crd_files(TOP_CRDS):
        for doc in load_yaml_docs(path):
            if (doc.get("kind") == "CustomResourceDefinition"
                    and doc.get("spec", {}).get("names", {}).get("kind") == "OriginCluster"):
                return doc
    return None


@pytest.fixture(scope="session")
def default_render() -> Rendered:
    return render()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped chart test is a failure: the test command installs all they need, so a
    skip could only turn the suite green without running it."""
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr
        rep.outcome = "failed"
        rep.longrepr = f"{item.nodeid} was skipped, which counts as a failure: {reason}"
