"""Static checks of the Dockerfiles (no Docker daemon here, so they are not built).

Each image must: be multi-stage with a Rust builder, build its workspace
package in release mode, copy one binary to /<name>, run as a non-root user,
and use an exec-form ENTRYPOINT (no shell at runtime).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

IMAGES = {
    # dockerfile: (cargo package, binary)
    "origin.Dockerfile": ("origin", "origin"),
    "operator.Dockerfile": ("origin-operator", "origin-operator"),
}


def _instructions(text: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", text)  # line continuations
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        out.append((op.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def workspace_bins() -> dict[str, set[str]]:
    cargo = shutil.which("cargo")
    assert cargo is not None, "cargo not on PATH (the test command runs with it)"
    meta = json.loads(subprocess.run(
        [cargo, "metadata", "--no-deps", "--format-version", "1", "--offline"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120).stdout)
    return {p["name"]: {t["name"] for t in p["targets"] if "bin" in t["kind"]}
            for p in meta["packages"]}


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_dockerfile(dockerfile: str, workspace_bins) -> None:
    package, binary = IMAGES[dockerfile]
    path = ROOT / "docker" / dockerfile
    ins = _instructions(path.read_text())
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for op, rest in ins
            if op == "ARG" and "=" in rest}
    froms = [rest for op, rest in ins if op == "FROM"]
    assert len(froms) == 2, froms
    builder, runtime = (re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f) for f in froms)
    assert re.match(r"rust:[\w.-]*bookworm\b", builder), builder
    assert builder.endswith(" AS build")
    assert runtime in ("gcr.io/distroless/cc-debian12:nonroot", "debian:bookworm-slim"), runtime

    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert re.search(rf"cargo build --release --locked -p {re.escape(package)}\b", runs), runs
    assert package in workspace_bins, f"no workspace package {package}"
    if workspace_bins[package]:
        assert binary in workspace_bins[package], workspace_bins[package]

    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    copies = [rest for op, rest in final if op == "COPY"]
    assert copies == [f"--from=build /out/{binary} /{binary}"], copies
    users = [rest for op, rest in final if op == "USER"]
    assert users and not re.match(r"^(0|root)\b", users[-1]), users
    (entry,) = [rest for op, rest in final if op == "ENTRYPOINT"]
    assert json.loads(entry) == [f"/{binary}"], entry  # exec form: no shell
    for cmd in [rest for op, rest in final if op == "CMD"]:
        assert isinstance(json.loads(cmd), list), cmd  # exec form too
    assert not [rest for op, rest in final if op in ("RUN", "SHELL")]

    ignore = ROOT / "docker" / f"{dockerfile}.dockerignore"
    assert {"target", ".git"} <= set(ignore.read_text().split()), ignore
