"""Parses Bicep files with pycep (checkov's Bicep parser) and prints one JSON object
{path: parsed tree} on stdout; exits 1 naming every file that does not parse.

Usage: parse-bicep.py FILE_OR_DIR... (directories: every *.bicep below them).
`extension <name>` lines (Microsoft Graph extension), which pycep 0.5 does not know, are blanked
before parsing (line numbers are kept). Used by scripts/check-infra.sh and tests/infra.rs.
"""

import json
import pathlib
import re
import sys

from pycep import BicepParser

EXTENSION = re.compile(r"^\s*extension\s+\S+.*$", re.MULTILINE)


def main(args: list[str]) -> int:
    files: list[pathlib.Path] = []
    for arg in args:
        path = pathlib.Path(arg)
        files.extend(sorted(path.rglob("*.bicep")) if path.is_dir() else [path])
    if not files:
        print("no .bicep files given", file=sys.stderr)
        return 1
    parser = BicepParser()
    trees, failed = {}, []
    for path in files:
        text = EXTENSION.sub("", path.read_text(encoding="utf-8"))
        try:
            trees[path.as_posix()] = parser.parse(text=text)
        except Exception as err:  # noqa: BLE001 - report every file, then fail
            failed.append(f"{path}: {err}")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    for path, tree in trees.items():
        print(f"ok {path}: {len(tree.get('resources', {}))} resources, {len(tree.get('parameters', {}))} parameters", file=sys.stderr)
    json.dump(trees, sys.stdout, default=str)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
