// Parses Power Query (M) files with Microsoft's M parser (@microsoft/powerquery-parser, pinned in
// package-lock.json, installed by `npm ci`) and prints one JSON object on stdout:
//   {"<file>": {"parsed": true|false, "error": string|null, "libraryReferences": [names…]}}
// libraryReferences are the identifiers a file uses but does not define (let bindings, function
// parameters and `_` are local), i.e. the M library functions, types and constants it calls;
// tests/powerquery.rs checks them against Microsoft's documented list. Offline; exits 1 when a
// file does not parse.
"use strict";
const fs = require("fs");
const PQP = require("@microsoft/powerquery-parser");

async function check(file) {
  const task = await PQP.TaskUtils.tryLexParse(PQP.DefaultSettings, fs.readFileSync(file, "utf8"));
  if (!PQP.TaskUtils.isParseStageOk(task)) {
    const error = task.error ? String(task.error.message || task.error) : `${task.stage} ${task.resultKind}`;
    return { parsed: false, error, libraryReferences: [] };
  }
  const nodes = task.nodeIdMapCollection;
  const defined = new Set(["_"]);
  const used = new Set();
  for (const [id, node] of nodes.astNodeById) {
    if (node.kind !== "Identifier") continue;
    const parent = nodes.astNodeById.get(nodes.parentIdById.get(id));
    if (node.identifierContextKind === "Key" || node.identifierContextKind === "Parameter"
        || (parent && parent.kind === "Parameter")) {
      defined.add(node.literal);
    } else if (parent && parent.kind === "IdentifierExpression") {
      used.add(node.literal);
    }
  }
  const libraryReferences = [...used].filter((name) => !defined.has(name)).sort();
  return { parsed: true, error: null, libraryReferences };
}

(async () => {
  const out = {};
  for (const file of process.argv.slice(2)) out[file] = await check(file);
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(Object.values(out).every((r) => r.parsed) ? 0 : 1);
})().catch((err) => {
  console.error(err);
  process.exit(2);
});
