#!/usr/bin/env bash
# Idempotently create .venv-helm at the repository root with the offline Helm
# tooling used by tests/helm: the real Helm v4 engine from PyPI
# (helm-python-sdk), kubernetes-validate, pytest, jsonschema and PyYAML.
#
# Usage: scripts/helm-env.sh            (then .venv-helm/bin/pytest -q tests/helm)
# Quiet on success; pip output is shown only when an install fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HELM_VENV:-$root/.venv-helm}"
python="${PYTHON:-python3}"

# Exact pins for the engine; the others are pinned loosely but must import.
pins=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate>=1.31"
  "pytest>=7"
  "jsonschema>=4"
  "pyyaml>=6"
)

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi

# Already installed at the wanted versions? Then do nothing (no network).
if "$venv/bin/python" - "${pins[@]}" <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for spec in sys.argv[1:]:
    req = Requirement(spec)
    try:
        have = version(req.name)
    except PackageNotFoundError:
        sys.exit(1)
    if not req.specifier.contains(have, prereleases=True):
        sys.exit(1)
sys.exit(0)
PY
  exit 0
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "${pins[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "helm-env: pip install failed (see above)" >&2
  exit 1
fi
