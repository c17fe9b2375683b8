"""Every object the operator's builders produce for each example in examples/ passes
`kubernetes-validate --strict` for Kubernetes 1.30 and the newest version the tool knows:
the closest check we have of what a real API server would accept from the operator.

The objects come from `origin-operator render FILE`, which runs the same pure builders the
reconciler applies (StatefulSet, Services, per-pod Services, ConfigMap, Secret, PDB).
"""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES, K8S_VERSIONS, ROOT, k8s_validate, load_yaml_docs

EXAMPLE_FILES = sorted(p for p in EXAMPLES.glob("*.yaml")
                       if any(d.get("kind") == "OriginCluster" for d in load_yaml_docs(p)))


@pytest.fixture(scope="module")
def operator_bin() -> pathlib.Path:
    subprocess.run(["cargo", "build", "--quiet", "-p", "origin-operator", "--bin", "origin-operator"],
                   cwd=ROOT, check=True)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    path = target / "debug" / "origin-operator"
    assert path.is_file(), f"{path} was not built"
    return path


def render(operator_bin: pathlib.Path, path: pathlib.Path) -> list[dict[str, Any]]:
    out = subprocess.run([str(operator_bin), "render", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_there_are_examples() -> None:
    assert len(EXAMPLE_FILES) >= 3, EXAMPLE_FILES


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_builder_objects_validate_strictly(operator_bin: pathlib.Path, path: pathlib.Path,
                                          version: str) -> None:
    objs = render(operator_bin, path)
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == ["ConfigMap", "PodDisruptionBudget", "Secret", "Service", "StatefulSet"], kinds
    for o in objs:
        k8s_validate(o, version)


def test_perpod_example_renders_a_service_per_pod(operator_bin: pathlib.Path) -> None:
    path = EXAMPLES / "loadbalancer-perpod.yaml"
    (oc,) = [d for d in load_yaml_docs(path) if d.get("kind") == "OriginCluster"]
    objs = render(operator_bin, path)
    name = oc["metadata"]["name"]
    per_pod = [o for o in objs if o["kind"] == "Service"
               and o["metadata"]["labels"].get("origincluster.dev/service-role") == "pod"]
    assert sorted(s["metadata"]["name"] for s in per_pod) == sorted(
        f"{name}-{i}" for i in range(oc["spec"].get("replicas", 3)))


def test_auth_example_passes_hooks_and_mounts_the_secret_as_a_directory(
        operator_bin: pathlib.Path) -> None:
    objs = render(operator_bin, EXAMPLES / "auth-hooks.yaml")
    (sts,) = [o for o in objs if o["kind"] == "StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert args[:2] == ["serve", "--route=relay"]
    assert "--on-publish=http://auth.media:8085/api/v1/publish" in args
    assert "--hook-timeout=3s" in args and "--hook-failure=deny" in args
    assert "--auth-file=/etc/origin/auth/auth.toml" in args
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "auth"]
    assert mount["mountPath"] == "/etc/origin/auth" and "subPath" not in mount
    (vol,) = [v for v in pod["volumes"] if v["name"] == "auth"]
    assert vol["secret"]["secretName"] == "origin-auth"


def test_invalid_hook_url_is_one_clear_error(operator_bin: pathlib.Path,
                                             tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: origincluster.dev/v1alpha1\nkind: OriginCluster\n"
        "metadata: {name: bad}\n"
        "spec: {auth: {hooks: {onPlay: ['file:///etc/passwd']}}}\n")
    out = subprocess.run([str(operator_bin), "render", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "spec.auth.hooks.onPlay[0]" in out.stderr and "http://" in out.stderr, out.stderr
