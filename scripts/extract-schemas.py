"""Regenerates the pinned schema extracts in tests/data/ (test data for tests/infra_schema.rs and
tests/powerquery.rs).

Not run by the test suite (it needs the upstream sources): run it by hand when a template starts
using a new resource type, API version or provider version, then commit the JSON it writes.

  python3 scripts/extract-schemas.py bicep GIT_DIR REV TYPE@VERSION...  > tests/data/schemas/bicep-types.json
      GIT_DIR: a clone of Azure/bicep-types-az; reads generated/**/types.json at REV.
      Output: {"source", "resources": {"Type@version": root}, "types": [node...]} where a node is
      {"p": {property: [node index, read_only]}, "a": node index|null (additionalProperties)} for
      objects (discriminated objects and unions merged: any variant's properties are allowed),
      {"i": node index} for arrays, and {} for scalars / any.

  python3 scripts/extract-schemas.py terraform PROVIDER GIT_DIR REV KIND/NAME... > tests/data/schemas/terraform-PROVIDER.json
      GIT_DIR: a clone of the provider (hashicorp/terraform-provider-azurerm, -azuread, -random,
      Azure/terraform-provider-azapi); reads the provider's registry documentation at tag REV
      (azurerm: website/docs/{r,d}/NAME.html.markdown; others: docs/{resources,data-sources}/NAME.md).
      KIND is resource, data or provider (NAME = the provider). Output: {"source", "schemas": {"resource.TYPE": {"arguments": [...],
      "blocks": {"block": [...arguments]}}}}. Nested blocks are keyed by block name (as the
      documentation is written), so a block's arguments are checked wherever that block nests.

  python3 scripts/extract-schemas.py m GIT_DIR REV > tests/data/powerquery/m-library.txt
      GIT_DIR: a clone of MicrosoftDocs/query-docs; the documented M library names.
"""

import json
import re
import subprocess
import sys


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


# ------------------------------------------------------------------------------------------------
# Bicep (bicep-types-az)
# ------------------------------------------------------------------------------------------------

def bicep(git_dir: str, rev: str, wanted: list[str]) -> dict:
    files = [f for f in git(git_dir, "ls-tree", "-r", "--name-only", rev, "generated").splitlines() if f.endswith("/types.json")]
    out_types: list[dict] = []
    resources: dict[str, int] = {}
    for want in wanted:
        rtype, version = want.split("@")
        namespace = rtype.split("/")[0].lower()
        candidates = [f for f in files if f"/{namespace}/{version}/types.json" in f.lower()]
        found = None
        for path in candidates:
            table = json.loads(git(git_dir, "show", f"{rev}:{path}"))
            for node in table:
                if node.get("$type") == "ResourceType" and node["name"].lower() == want.lower():
                    found = (path, table, node)
                    break
            if found:
                break
        if not found:
            raise SystemExit(f"{want}: not in bicep-types-az at {rev}")
        path, table, node = found
        memo: dict[int, int] = {}

        def ref(r: dict) -> int:
            return int(r["$ref"].split("/")[-1])

        def convert(i: int) -> int:
            if i in memo:
                return memo[i]
            idx = len(out_types)
            out_types.append({})
            memo[i] = idx
            t = table[i]
            kind = t["$type"]
            if kind == "ObjectType":
                out_types[idx] = object_node(t)
            elif kind == "DiscriminatedObjectType":
                merged = {"p": {}, "a": None}
                base = object_node({"properties": t.get("baseProperties", {})})
                merged["p"].update(base["p"])
                merged["p"][t["discriminator"]] = [-1, False]
                for element in t["elements"].values():
                    sub = convert(ref(element))
                    merged["p"].update(out_types[sub].get("p", {}))
                out_types[idx] = merged
            elif kind == "UnionType":
                merged: dict = {}
                for element in t["elements"]:
                    sub = out_types[convert(ref(element))]
                    if "p" in sub:
                        merged.setdefault("p", {}).update(sub["p"])
                        merged.setdefault("a", None)
                        if sub.get("a") is not None:
                            merged["a"] = sub["a"]
                    elif "i" in sub and "p" not in merged:
                        merged = {"i": sub["i"]}
                out_types[idx] = merged
            elif kind == "ArrayType":
                out_types[idx] = {"i": convert(ref(t["itemType"]))}
            else:
                out_types[idx] = {}
            return idx

        def object_node(t: dict) -> dict:
            props = {}
            for name, prop in t.get("properties", {}).items():
                flags = prop.get("flags", 0)
                props[name] = [convert(ref(prop["type"])), bool(flags & 2) and not flags & 1]
            additional = t.get("additionalProperties")
            return {"p": props, "a": convert(ref(additional)) if additional else None}

        resources[node["name"]] = convert(ref(node["body"]))
        print(f"{want}: {path}", file=sys.stderr)
    return {"resources": resources, "types": out_types}


# ------------------------------------------------------------------------------------------------
# Terraform (provider documentation)
# ------------------------------------------------------------------------------------------------

# azurerm: "* `name` - (Required) ..."; tfplugindocs (azuread, azapi, random): "- `name` (String) ..."
ARG = re.compile(r"^(?:\*\s+`([a-z0-9_]+)`\s+-|-\s+`([a-z0-9_]+)`\s+\()")
NESTED = re.compile(r"^###\s+Nested Schema for `([a-z0-9_.]+)`")
BLOCK = re.compile(r"^(?:An?|The|Each)\s+`([a-z0-9_]+)`\s+(?:block|object)\b.*(?:supports|support|contains|accepts)")


def doc_path(provider: str, kind: str, name: str) -> str:
    if kind == "provider":
        return "website/docs/index.html.markdown" if provider == "azurerm" else "docs/index.md"
    short = name.split("_", 1)[1]
    if provider == "azurerm":
        return f"website/docs/{'r' if kind == 'resource' else 'd'}/{short}.html.markdown"
    return f"docs/{'resources' if kind == 'resource' else 'data-sources'}/{short}.md"


def terraform(provider: str, git_dir: str, rev: str, wanted: list[str]) -> dict:
    schemas = {}
    for want in wanted:
        kind, name = want.split("/")
        text = git(git_dir, "show", f"{rev}:{doc_path(provider, kind, name)}")
        arguments: list[str] = []
        blocks: dict[str, list[str]] = {}
        section = None  # None before "Argument(s) Reference", "args" inside, "done" after
        current = arguments
        for line in text.splitlines():
            if re.match(r"^##\s+Arguments? Reference", line) or re.match(r"^##\s+Schema", line):
                section, current = "args", arguments
                continue
            if line.startswith("## ") and section == "args":
                section = "done"
            m = NESTED.match(line)
            if m and section in ("args", "readonly"):
                section, current = "args", blocks.setdefault(m.group(1).split(".")[-1], [])
                continue
            if line.startswith("### Read-Only") and section == "args":
                section = "readonly"  # tfplugindocs: attributes, not arguments
                continue
            if section != "args":
                continue
            m = BLOCK.match(line.strip())
            if m:
                current = blocks.setdefault(m.group(1), [])
                continue
            m = ARG.match(line.strip())
            arg = m and (m.group(1) or m.group(2))
            if arg and arg not in current:
                current.append(arg)
        schemas[f"{kind}.{name}"] = {"arguments": sorted(arguments), "blocks": {k: sorted(v) for k, v in sorted(blocks.items())}}
        print(f"{want}: {len(arguments)} arguments, {len(blocks)} blocks", file=sys.stderr)
    return {"schemas": schemas}


# ------------------------------------------------------------------------------------------------
# Power Query M library (MicrosoftDocs/query-docs)
# ------------------------------------------------------------------------------------------------

TITLE = re.compile(r'^title:\s*"?([^"\n]+?)"?\s*$', re.MULTILINE)
VALUE = re.compile(r"^\|\s*`([A-Za-z0-9]+\.[A-Za-z0-9.]+)`\s*\|", re.MULTILINE)
TYPE_NAME = re.compile(r"`([A-Z][A-Za-z0-9]*\.Type)`")


def m_library(git_dir: str, rev: str) -> list[str]:
    """Names of the documented M library: the title of every function/constant page under
    query-languages/m/, the values listed in enumeration pages ("Allowed values" tables, e.g.
    QuoteStyle.Csv) and the X.Type names of the type conversion page (e.g. Int64.Type)."""
    names: set[str] = set()
    for path in git(git_dir, "ls-tree", "--name-only", rev, "query-languages/m/").splitlines():
        if not path.endswith(".md"):
            continue
        text = git(git_dir, "show", f"{rev}:{path}")
        m = TITLE.search(text)
        if m and re.fullmatch(r"#?[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)*", m.group(1).strip()):
            names.add(m.group(1).strip())
        if "## Allowed values" in text:
            names.update(VALUE.findall(text))
        if path.endswith("/type-conversion.md"):
            names.update(TYPE_NAME.findall(text))
    return sorted(names)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "m":
        git_dir, rev = argv[1], argv[2]
        commit = git(git_dir, "rev-parse", rev).strip()
        date = git(git_dir, "log", "-1", "--format=%cs", rev).strip()
        print("# Documented Power Query M library names, one per line (tests/powerquery.rs).")
        print(f"# Source: github.com/MicrosoftDocs/query-docs, query-languages/m/*.md (published as")
        print(f"# learn.microsoft.com/powerquery-m/), commit {commit} ({date}).")
        print("# Regenerate: python3 scripts/extract-schemas.py m QUERY_DOCS_GIT_DIR REV > this file")
        for name in m_library(git_dir, rev):
            print(name)
        return 0
    if len(argv) >= 4 and argv[0] == "bicep":
        git_dir, rev = argv[1], argv[2]
        commit = git(git_dir, "rev-parse", rev).strip()
        data = {"source": f"Azure/bicep-types-az@{commit}", **bicep(git_dir, rev, argv[3:])}
    elif len(argv) >= 5 and argv[0] == "terraform":
        provider, git_dir, rev = argv[1], argv[2], argv[3]
        commit = git(git_dir, "rev-parse", f"{rev}^{{commit}}").strip()
        data = {"source": f"{provider} {rev} ({commit})", **terraform(provider, git_dir, rev, argv[4:])}
    else:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(data, sys.stdout, indent=None, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
