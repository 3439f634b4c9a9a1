#!/usr/bin/env bash
# The end-to-end export bench (benches/e2e.rs): `signin-export run` as it ships (the `dist`
# profile, the build scripts/package.sh packages; `--exe` measures another) against the fake
# Graph on loopback, into a folder or Azurite, optionally side by side with the Python exporter.
# Prints one JSON line per run. Everything stays on 127.0.0.1; every run is bounded (--timeout).
#
#   scripts/bench.sh [--python] [e2e args...]
#     --python            also run scripts/bench/python_exporter.py (venv in target/bench-venv)
#     --rows N --days D --dest folder|azurite --page-ms 2000-3000 --throttle 5/10
#     --version beta|v1.0 --timeout SECS --perf FILE [--perf-call-graph dwarf] --keep
#     --baseline OTHER_BINARY [--ab N]   before/after on the same tenant (see: scripts/bench.sh --help);
#                         build OTHER_BINARY with `--profile dist` too for a like-for-like pair
#
# Examples (BENCHMARKS.md has the ones behind its tables):
#   scripts/bench.sh --rows 100000
#   scripts/bench.sh --python --rows 200000 --dest azurite
#   scripts/bench.sh --rows 30000 --page-ms 2000-3000 --throttle 5/10 --version v1.0
#   scripts/bench.sh --rows 200000 --dest azurite --baseline target/before/signin-export --ab 3
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
args=()
python=""
for arg in "$@"; do
  if [[ "$arg" == "--python" ]]; then python=1; else args+=("$arg"); fi
done
if [[ -n "$python" ]]; then
  venv="$target/bench-venv"
  if [[ ! -x "$venv/bin/python" ]] || ! cmp -s scripts/bench/requirements.txt "$venv/requirements.txt"; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet -r scripts/bench/requirements.txt >&2
    cp scripts/bench/requirements.txt "$venv/requirements.txt"
  fi
  args+=(--python "$(cd "$venv/bin" && pwd)/python")
fi
if printf '%s\n' "${args[@]}" | grep -qx azurite && [[ ! -x node_modules/.bin/azurite-blob ]]; then
  npm ci --silent >&2
fi
if ! printf '%s\n' "${args[@]}" | grep -qxE -- '--exe|--help|-h'; then
  cargo build --profile dist --quiet --bin signin-export >&2
  case $target in /*) dist=$target/dist ;; *) dist=$(pwd)/$target/dist ;; esac
  args+=(--exe "$dist/signin-export")
fi
exec cargo bench --quiet --bench e2e -- "${args[@]}"
