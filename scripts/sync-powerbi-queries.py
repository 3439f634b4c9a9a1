#!/usr/bin/env python3
"""Copy the Power Query files in powerbi/ into the Power BI project's TMDL.

powerbi/<Table>.pq is the one source of a table's M: everything from its `let` line on (the `//`
lines above it tell a reader how to paste it by hand) becomes the `source =` of the m partition
of powerbi/SignIns.SemanticModel/definition/tables/<Table>.tmdl and, when the table has an
incremental refresh policy, its `sourceExpression =` too.

    python3 scripts/sync-powerbi-queries.py          # rewrite the TMDL files that differ
    python3 scripts/sync-powerbi-queries.py --check  # exit 1 and name them, change nothing

tests/powerbi.rs checks the same equality with its own TMDL parser, so CI fails when a .pq file
was edited and this script was not run.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "powerbi"
TABLES = QUERIES / "SignIns.SemanticModel" / "definition" / "tables"
# TMDL writes an expression that starts on the line after `source =` two levels deeper than the
# property (tabs); the M keeps its own spaces after that.
EXPRESSION_INDENT = "\t\t\t\t"
EXPRESSION_PROPERTIES = ("\t\tsource =", "\t\tsourceExpression =")


def query_body(pq: Path) -> list[str]:
    lines = pq.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "let"), None)
    if start is None:
        sys.exit(f"{pq}: no `let` line; a query file is `//` comment lines, then let … in …")
    body = lines[start:]
    while body and not body[-1].strip():
        body.pop()
    if any(not line.strip() for line in body):
        sys.exit(f"{pq}: blank line inside the query; TMDL would end the expression there")
    return body


def replace_expressions(tmdl: str, body: list[str]) -> str:
    """Every `source =` / `sourceExpression =` block of the table gets `body`."""
    lines = tmdl.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.rstrip() in EXPRESSION_PROPERTIES:
            # The old expression: every following line indented deeper than the property
            # (three tabs or more), and blank lines between such lines.
            while i < len(lines) and (
                lines[i].startswith("\t\t\t") or (not lines[i].strip() and i + 1 < len(lines) and lines[i + 1].startswith("\t\t\t"))
            ):
                i += 1
            out.extend(EXPRESSION_INDENT + m for m in body)
    return "\n".join(out)


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for pq in sorted(QUERIES.glob("*.pq")):
        tmdl_path = TABLES / f"{pq.stem}.tmdl"
        if not tmdl_path.is_file():
            sys.exit(f"{pq}: no table {tmdl_path.relative_to(ROOT)} for it")
        tmdl = tmdl_path.read_text(encoding="utf-8")
        updated = replace_expressions(tmdl, query_body(pq))
        if updated != tmdl:
            stale.append(tmdl_path.relative_to(ROOT))
            if not check:
                tmdl_path.write_text(updated, encoding="utf-8")
    verb = "out of date" if check else "updated"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
