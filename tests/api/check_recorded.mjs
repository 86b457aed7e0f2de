#!/usr/bin/env node
// Checks the API record of the integration tests against docs/openapi.yaml and
// docs/asyncapi.yaml: every HTTP answer and every frame the server sent must validate against
// what the documents say of it.
//
//   node check_recorded.mjs RECORD_DIR     (npm run check -- RECORD_DIR)
//
// RECORD_DIR holds the <pid>.jsonl files the tests write when MMCHAT_API_RECORD names it
// (tests/integration/harness.h, RecordApi; ctest sets it to <build>/api-record). Each line:
//   {"kind":"http","method","path","status","content_type"?,"body"?}
//   {"kind":"ws_in","frame"} (or "text" when it was no JSON), {"kind":"ws_out","frame"}
//
// An HTTP answer maps to the operation of its method and path template (a literal path before
// a templated one, as the server routes), then to that operation's response of its status, or
// to one of x-mmchat-every-request's (answers that belong to no one operation). A path or
// method no operation has may only get the `unrouted` answers (and OPTIONS the `preflight`
// ones). Its Content-Type must be one the response documents, and a JSON body must validate
// against its schema. A server frame maps by its `type` to the payload of the AsyncAPI message
// the server sends with that type. Failures are printed grouped (operation, status, schema
// path, an example), and the exit code is 1 when there was any.
//
// Client frames (ws_out) are checked against the client messages too, but only reported:
// tests send invalid frames on purpose.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

const here = path.dirname(fileURLToPath(import.meta.url));
const docsDir = path.resolve(here, '../../docs');
// Where the two documents live for $ref resolution: asyncapi.yaml's './openapi.yaml#/...'
// resolves against it. Never fetched.
const BASE = 'https://mmchat.invalid/docs/';
const OPENAPI = `${BASE}openapi.yaml`;
const ASYNCAPI = `${BASE}asyncapi.yaml`;
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];
const EXAMPLE_CHARS = 600;

function usage(message) {
  console.error(`${message}\nusage: node check_recorded.mjs RECORD_DIR`);
  process.exit(2);
}

const recordDir = process.argv[2];
if (!recordDir) usage('no record directory given');
if (!fs.existsSync(recordDir)) usage(`${recordDir} does not exist`);

const openapi = YAML.parse(fs.readFileSync(path.join(docsDir, 'openapi.yaml'), 'utf8'));
const asyncapi = YAML.parse(fs.readFileSync(path.join(docsDir, 'asyncapi.yaml'), 'utf8'));

// ---- Schemas ----------------------------------------------------------------------------------

const ajv = new Ajv2020({
  allErrors: true,
  strict: true,
  strictTypes: false, // `properties` beside allOf's Error without repeating `type: object`
  strictRequired: false, // `then: {required: [retry_after]}` names a property of the object's
  allowUnionTypes: true, // type: [string, "null"]
});
addFormats(ajv);
ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isSafeInteger(n) });
// The documents' top-level members, which hold the schemas but are no schema keywords.
for (const keyword of ['paths', 'components', 'x-mmchat-every-request']) ajv.addKeyword(keyword);
ajv.addSchema({ $id: OPENAPI, paths: openapi.paths, components: openapi.components,
  'x-mmchat-every-request': openapi['x-mmchat-every-request'] });
ajv.addSchema({ $id: ASYNCAPI, components: asyncapi.components });

const compiled = new Map();
// The validator of the schema at `uri` (a document's URL and a JSON pointer).
function validatorAt(uri) {
  if (!compiled.has(uri)) compiled.set(uri, ajv.compile({ $ref: uri }));
  return compiled.get(uri);
}

const pointerPart = (s) => String(s).replaceAll('~', '~0').replaceAll('/', '~1');

// Follows a local `$ref` (an OpenAPI Reference Object or an AsyncAPI one) to the object it
// names; `at` is the object's JSON pointer. Siblings of $ref (description) are kept.
function deref(doc, obj, at) {
  while (obj && typeof obj.$ref === 'string' && obj.$ref.startsWith('#/')) {
    at = obj.$ref.slice(1);
    obj = at.split('/').slice(1)
      .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
      .reduce((o, p) => (o == null ? undefined : o[p]), doc);
  }
  return { obj, at };
}

// ---- HTTP operations ------------------------------------------------------------------------

const operations = []; // {template, regex, literals, method, op, at}
for (const [template, item] of Object.entries(openapi.paths)) {
  const regex = new RegExp(
    `^${template.split(/(\{[^}]+\})/).map((part) =>
      part.startsWith('{') ? '([^/]+)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('')}$`);
  const literals = template.split('/').filter((s) => s && !s.startsWith('{')).length;
  for (const method of METHODS) {
    if (!item[method]) continue;
    operations.push({ template, regex, literals, method: method.toUpperCase(), op: item[method],
      at: `/paths/${pointerPart(template)}/${method}` });
  }
}
const every = openapi['x-mmchat-every-request'] ?? {};
const EVERY_AT = '/x-mmchat-every-request';

// The responses an exchange may get: {status: {obj, at}} and a label for the report.
function responsesFor(method, requestPath) {
  const matching = operations.filter((o) => o.regex.test(requestPath));
  const candidates = matching.filter((o) => o.method === method)
    .sort((a, b) => b.literals - a.literals);
  const table = {};
  const add = (responses, at) => {
    for (const [status, response] of Object.entries(responses ?? {})) {
      if (!(status in table)) table[status] = deref(openapi, response, `${at}/${status}`);
    }
  };
  let label;
  let operation = null;
  if (candidates.length > 0) {
    operation = candidates[0];
    label = `${method} ${operation.template} (${operation.op.operationId})`;
    add(operation.op.responses, `${operation.at}/responses`);
  } else {
    label = matching.length > 0 ? `${method} ${matching[0].template} (method not documented)`
      : `${method} <unrouted path>`;
    if (method === 'OPTIONS') add(every.preflight, `${EVERY_AT}/preflight`);
    add(every.unrouted, `${EVERY_AT}/unrouted`);
  }
  add(every.anyRequest, `${EVERY_AT}/anyRequest`);
  // Any request whose bytes are not valid HTTP (a header with a control character, say) is
  // answered 400 before routing, whatever its path.
  add(every.malformed, `${EVERY_AT}/malformed`);
  return { table, label, operation, routed: matching.length > 0 };
}

// The documented media type a Content-Type matches: equal (parameters included, spaces and
// case ignored), or a documented type without parameters of the same type/subtype, or a
// wildcard.
function mediaTypeFor(content, contentType) {
  const norm = (s) => s.toLowerCase().replace(/\s+/g, '');
  const base = (s) => norm(s).split(';')[0];
  const got = norm(contentType);
  const keys = Object.keys(content);
  return keys.find((k) => norm(k) === got)
    ?? keys.find((k) => !k.includes(';') && base(k) === base(got))
    ?? keys.find((k) => k === '*/*' || (k.endsWith('/*') && base(got).startsWith(k.slice(0, -1))));
}

// ---- AsyncAPI messages ----------------------------------------------------------------------

// type -> [{name, at}] of the messages the server sends (send operations and replies), and of
// those it receives.
const serverFrames = new Map();
const clientFrames = new Map();
function addFrames(map, refs) {
  for (const ref of refs ?? []) {
    const { obj: message, at } = deref(asyncapi, ref, '');
    const type = message?.payload?.properties?.type?.const
      ?? message?.payload?.allOf?.map((s) => s.properties?.type?.const).find(Boolean);
    if (!type) throw new Error(`asyncapi.yaml: message ${at} has no const type`);
    const list = map.get(type) ?? [];
    if (!list.some((m) => m.at === at)) list.push({ name: message.name, at });
    map.set(type, list);
  }
}
for (const op of Object.values(asyncapi.operations)) {
  addFrames(op.action === 'send' ? serverFrames : clientFrames, op.messages);
  if (op.reply) addFrames(op.action === 'send' ? clientFrames : serverFrames, op.reply.messages);
}

// ---- Checking --------------------------------------------------------------------------------

const failures = new Map(); // group key -> {title, detail, count, example}
const warnings = new Map();
const seen = new Set(); // operations and server frame types met, for the coverage line
const counts = { http: 0, ws_in: 0, ws_out: 0, files: 0 };

function note(into, title, detail, example) {
  const key = `${title}\n${detail}`;
  const g = into.get(key) ?? { title, detail, count: 0, example };
  g.count += 1;
  into.set(key, g);
}

// The first few schema errors as one line; instance paths with their array indexes as [].
function describe(errors) {
  return errors.slice(0, 3).map((e) =>
    `at ${e.instancePath.replace(/\/\d+(?=\/|$)/g, '/[]') || '/'}: ${e.message}` +
    `${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ''}` +
    `${e.params?.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : ''}` +
    ` [${e.schemaPath}]`).join('; ');
}

// Validates `data` against the schema at `uri`: null when it holds, else the errors' line.
function validate(uri, data) {
  const v = validatorAt(uri);
  return v(data) ? null : describe(v.errors ?? []);
}

// Of several candidate payloads (one type sent by two messages), the one that holds wins.
function validateFrame(candidates, doc, frame) {
  let problem = null;
  for (const c of candidates) {
    problem = validate(`${doc}#${c.at}/payload`, frame);
    if (!problem) return null;
  }
  return problem;
}

function checkHttp(x) {
  counts.http += 1;
  const method = String(x.method).toUpperCase();
  const { table, label, operation, routed } = responsesFor(method, x.path);
  const status = String(x.status);
  if (operation) seen.add(operation);
  const example = JSON.stringify({ path: x.path, content_type: x.content_type, body: x.body });
  const found = table[status];
  if (!found?.obj) {
    const why = routed ? 'status not documented for this operation'
      : 'path matches no documented operation, and the status is none of the unrouted answers';
    return note(failures, `${label} ${status}`, why, example);
  }
  const content = found.obj.content;
  if (!content) {
    // No content documented: no body (a 204 or 304 may still name a Content-Type; the server
    // sends application/json on its empty 204s, as API.md's Conventions say).
    if (x.body !== undefined) note(failures, `${label} ${status}`, 'a body where none is documented', example);
    return;
  }
  if (!x.content_type) {
    return note(failures, `${label} ${status}`,
      `no Content-Type; documented: ${Object.keys(content).join(', ')}`, example);
  }
  const media = mediaTypeFor(content, x.content_type);
  if (!media) {
    return note(failures, `${label} ${status}`,
      `Content-Type ${x.content_type} not documented (${Object.keys(content).join(', ')})`, example);
  }
  if (!/^application\/json\b/i.test(media)) return;
  if (x.body === undefined || x.body === null) {
    return note(failures, `${label} ${status}`, 'a JSON answer without a JSON body', example);
  }
  const schema = content[media].schema;
  if (!schema) return;
  const problem = validate(`${OPENAPI}#${found.at}/content/${pointerPart(media)}/schema`, x.body);
  if (problem) note(failures, `${label} ${status}`, problem, example);
}

function checkFrame(x) {
  const inbound = x.kind === 'ws_in';
  counts[x.kind] += 1;
  const into = inbound ? failures : warnings;
  const who = inbound ? 'server frame' : 'client frame';
  if (x.frame === undefined) return note(into, `${who} (not JSON)`, 'a frame that is no JSON', String(x.text));
  const example = JSON.stringify(x.frame);
  const type = x.frame?.type;
  const candidates = (inbound ? serverFrames : clientFrames).get(type);
  const label = `${who} ${JSON.stringify(type)}`;
  if (inbound) seen.add(type);
  if (!candidates) return note(into, label, 'no documented message has this type', example);
  const problem = validateFrame(candidates, ASYNCAPI, x.frame);
  if (problem) note(into, label, problem, example);
}

const files = fs.readdirSync(recordDir).filter((f) => f.endsWith('.jsonl')).sort();
for (const file of files) {
  counts.files += 1;
  const lines = fs.readFileSync(path.join(recordDir, file), 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let x;
    try {
      x = JSON.parse(line);
    } catch {
      return note(failures, 'record', `unreadable line (${file}:${i + 1})`, line);
    }
    if (x.kind === 'http') checkHttp(x);
    else if (x.kind === 'ws_in' || x.kind === 'ws_out') checkFrame(x);
    else note(failures, 'record', `unknown kind ${JSON.stringify(x.kind)}`, line);
  });
}

// ---- Report ----------------------------------------------------------------------------------

const clip = (s) => (s.length > EXAMPLE_CHARS ? `${s.slice(0, EXAMPLE_CHARS)}…` : s);
function print(groups, heading) {
  if (groups.size === 0) return;
  console.log(`\n${heading}`);
  const byTitle = [...groups.values()].sort((a, b) => a.title.localeCompare(b.title));
  for (const g of byTitle) {
    console.log(`\n  ${g.title}: ${g.count} exchange(s)\n    ${g.detail}\n    example: ${clip(g.example)}`);
  }
}

const total = counts.http + counts.ws_in + counts.ws_out;
console.log(`checked ${counts.http} HTTP answers, ${counts.ws_in} server frames and ` +
  `${counts.ws_out} client frames from ${counts.files} file(s) in ${recordDir}`);

// What the record never showed: documented operations and server frames no test exercised.
const unseenOps = operations.filter((o) => !seen.has(o));
const unseenFrames = [...serverFrames.keys()].filter((t) => !seen.has(t));
if (unseenOps.length > 0 || unseenFrames.length > 0) {
  console.log(`not in the record (unchecked): ${[...unseenOps.map((o) => `${o.method} ${o.template}`),
    ...unseenFrames.map((t) => `server frame ${t}`)].join(', ')}`);
}

print(warnings, `CLIENT FRAMES that match no documented client frame (${[...warnings.values()]
  .reduce((n, g) => n + g.count, 0)}; reported only: tests send bad frames on purpose)`);
const failed = [...failures.values()].reduce((n, g) => n + g.count, 0);
print(failures, `FAILURES (${failed} exchanges in ${failures.size} groups)`);
if (total === 0) {
  console.log('\nFAIL: the record is empty (were the tests run with MMCHAT_API_RECORD set?)');
  process.exit(1);
}
console.log(failed > 0 ? `\nFAIL: ${failed} of ${total} recorded exchanges disagree with the documents`
  : '\nOK: every recorded server answer matches the documents');
process.exit(failed > 0 ? 1 : 0);
