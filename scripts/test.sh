#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this). Works on a fresh machine:
# installs Azurite from the npm lockfile and the pinned infra checkers from PyPI, builds the
# Functions package, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# One build, not an edit loop: incremental caches would only add ~1 GB to target/ (disk is tight
# on CI machines; see the profile note in Cargo.toml).
export CARGO_INCREMENTAL=0

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "npm ci (Azurite, the M parser and Ajv, pinned in package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error

step "package build tools (pinned in scripts/requirements-package.txt)"
venv=target/tools-venv
[[ -x $venv/bin/pip ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-package.txt
export PATH="$PWD/$venv/bin:$PATH"

step "Functions package (scripts/package.sh, glibc 2.28 baseline)"
PACKAGE_BUILD=zig bash scripts/package.sh

step "infrastructure checks (scripts/check-infra.sh)"
bash scripts/check-infra.sh

# Tests talk only to loopback (fake Graph, fake token endpoints, Azurite, the handler). As root
# with `unshare`, run them in a network namespace of their own that has nothing but loopback, so
# no test can reach anything else, even by mistake (e.g. the VM managed-identity endpoint).
step "cargo build --tests (offline from here on)"
cargo test --workspace --locked --no-run
log=target/test-output.log
if [[ $(id -u) == 0 ]] && command -v unshare >/dev/null && command -v ip >/dev/null \
    && unshare -n true 2>/dev/null; then
  where="network namespace: loopback only"
  isolated() { unshare -n bash -c 'ip link set lo up && exec "$@"' isolated "$@"; }
else
  where="host network"
  isolated() { "$@"; }
fi
step "cargo test ($where)"
isolated cargo test --workspace --locked --offline 2>&1 | tee "$log"

# Tests take their instants from a pinned clock (tests/support/clock.rs), not the wall clock.
# The date-sensitive ones (runs planned from "now": slices, daily files, latest.csv's days; the
# archive's blobs by hour and rows by day) run again just before and just after a UTC midnight.
for now in 2026-11-29T23:59:30Z 2026-11-30T00:00:30Z; do
  step "date-sensitive tests at SIGNINS_TEST_NOW=$now ($where)"
  SIGNINS_TEST_NOW=$now isolated cargo test --locked --offline --test integration \
    -- pipeline:: progress::randomized progress::a_dry_run archive:: --skip archive::sigkill \
    --skip pipeline::a_busy_day \
    2>&1 | tee -a "$log"
done

# One total over every test binary (the last binary cargo runs is the doc tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i; if ($(i+1) ~ /^ignored;/) s += $i } }
     END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
