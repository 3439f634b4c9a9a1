// Validates Power BI project JSON files (PBIR report definition, .pbip, definition.pbir,
// definition.pbism, .platform) against Microsoft's published JSON schemas, offline, and prints one
// JSON object on stdout:
//   {"<file>": {"schema": url|null, "errors": [message…]}}
// Usage: node scripts/check-pbir-schemas.js SCHEMA_DIR FILE…
// SCHEMA_DIR holds github.com/microsoft/json-schemas files at their repository paths
// (tests/data/powerbi/schemas). A file's schema is the URL in its "$schema" property, which must
// be https://developer.microsoft.com/json-schemas/<path> of a file there; a file without one is an
// error. The schemas are draft-07 and reference each other by relative path
// ("../../semanticQuery/1.4.0/schema.json#/definitions/…"), but two of them declare an $id that
// is not their file name (schema-embedded.json says "schema.embedded.json"), so each schema is
// registered under the URL of its file path, and its declared $id is ignored. Ajv is pinned in
// package-lock.json; exits 1 when a file is invalid.
"use strict";
const fs = require("fs");
const path = require("path");
const Ajv = require("ajv");
const addFormats = require("ajv-formats");

const BASE = "https://developer.microsoft.com/json-schemas/";

function schemaFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return schemaFiles(full);
    return entry.name.endsWith(".json") ? [full] : [];
  });
}

function validator(schemaDir) {
  // strict: false because Microsoft's schemas use annotation keywords Ajv does not know
  // (e.g. "markdownDescription"); unknown keywords are annotations in draft-07.
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  for (const file of schemaFiles(schemaDir)) {
    const schema = JSON.parse(fs.readFileSync(file, "utf8"));
    const url = BASE + path.relative(schemaDir, file).split(path.sep).join("/");
    // Identify the schema by its file path (see above); the meta-schema is draft-07 in all.
    schema.$id = url;
    delete schema.$schema;
    ajv.addSchema(schema, url);
  }
  return ajv;
}

function describe(error) {
  const where = error.instancePath || "(root)";
  const extra = error.params && error.params.additionalProperty
    ? ` '${error.params.additionalProperty}'`
    : "";
  return `${where}: ${error.message}${extra}`;
}

function check(ajv, file) {
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(file, "utf8").replace(/^\uFEFF/, ""));
  } catch (err) {
    return { schema: null, errors: [`not JSON: ${err.message}`] };
  }
  const url = doc && typeof doc === "object" ? doc.$schema : undefined;
  if (typeof url !== "string") return { schema: null, errors: ["no $schema property"] };
  let validate;
  try {
    validate = ajv.getSchema(url);
  } catch (err) {
    return { schema: url, errors: [`schema does not compile: ${err.message}`] };
  }
  if (!validate) return { schema: url, errors: [`schema not vendored: ${url}`] };
  const ok = validate(doc);
  return { schema: url, errors: ok ? [] : validate.errors.map(describe) };
}

const [schemaDir, ...files] = process.argv.slice(2);
if (!schemaDir || files.length === 0) {
  console.error("usage: node scripts/check-pbir-schemas.js SCHEMA_DIR FILE…");
  process.exit(2);
}
const ajv = validator(schemaDir);
const out = {};
for (const file of files) out[file] = check(ajv, file);
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(Object.values(out).every((r) => r.errors.length === 0) ? 0 : 1);
