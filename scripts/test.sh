#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this). Works on a fresh machine:
# installs Azurite from the npm lockfile and the pinned infra checkers from PyPI, builds the
# Functions package, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "npm ci (Azurite, pinned in package-lock.json)"
npm ci --no-audit --no-fund --loglevel=error

step "Functions package (scripts/package.sh)"
bash scripts/package.sh

step "infrastructure checks (scripts/check-infra.sh)"
bash scripts/check-infra.sh

step "cargo test"
cargo test --locked
