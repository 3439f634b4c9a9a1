#!/usr/bin/env bash
# Offline checks of infra/ (no cloud access): installs the pinned checkers from
# scripts/requirements-infra.txt into a venv under target/ (or $INFRA_VENV), parses every Bicep file
# with pycep (checkov's Bicep parser), then runs checkov over infra/bicep and infra/terraform and
# fails on any failed check. Skips live in the IaC files as `checkov:skip=ID:reason` comments.
#
# Contract with tests/infra.rs: .ci/run (scripts/test.sh) runs this script before `cargo test`;
# the Rust tests call "$INFRA_VENV/bin/python" (default target/infra-tools/venv) to parse Bicep.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${INFRA_VENV:-$PWD/target/infra-tools/venv}"
req="scripts/requirements-infra.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "installing $(grep -v '^#' "$req" | xargs) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$stamp"
fi

# The Graph file uses `extension microsoftGraphV1`, which pycep 0.5 and so checkov cannot parse:
# it is parsed here with that one line blanked out, and left out of the checkov scan.
echo "==> parse Bicep (pycep)"
"$venv/bin/python" scripts/parse-bicep.py infra/bicep >/dev/null

echo "==> checkov (bicep, terraform, secrets)"
"$venv/bin/checkov" --quiet --compact --framework bicep terraform secrets \
  --skip-path graph-permissions.bicep \
  --directory infra/bicep --directory infra/terraform \
  --download-external-modules false --skip-download
