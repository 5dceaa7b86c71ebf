// Headless SMART App Launch 2.2 authorization server for the local stack, on oidc-provider (OpenID-certified).
// No UI: logins and consents are decided from the request (see README.md for every rule and client).
//
//  * EHR launch: `launch` = base64url(JSON {patient, practitioner?, encounter?, appContext?, need_patient_banner?,
//    fhirContext?, read_only?}); the token response carries patient, encounter, fhirContext, need_patient_banner,
//    appContext; the id_token carries fhirUser.
//  * Standalone launch: scope `launch/patient`; the patient is login_hint (`Patient/<id>` or `<id>`) or
//    STANDALONE_PATIENT; the user is login_hint `Practitioner/<id>` or STANDALONE_PRACTITIONER.
//  * PKCE S256 required for every authorization-code client (`plain` is refused); `aud` must equal FHIR_BASE.
//  * SMART Backend Services: client_credentials + private_key_jwt (RS384 / ES384), system/ scopes, 300 s tokens,
//    client-assertion jti replay refused, exp at most 5 minutes ahead, aud = the token endpoint.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { importJWK, jwtVerify } from 'jose';
import Provider, { errors } from 'oidc-provider';

const PORT = Number(process.env.AS_PORT || 18445);
const ISSUER = process.env.AS_ISSUER || `http://127.0.0.1:${PORT}`;
const FHIR_BASE = (process.env.FHIR_BASE || 'http://127.0.0.1:18080/fhir/R4').replace(/\/$/, '');
const KEY_DIR = process.env.KEY_DIR || 'state/keys';
const REDIRECT_URIS = (process.env.APP_REDIRECT_URIS
  || 'http://127.0.0.1:18700/app/callback http://localhost:18700/app/callback').split(/\s+/).filter(Boolean);
const STANDALONE_PATIENT = process.env.STANDALONE_PATIENT || '';
const STANDALONE_PRACTITIONER = process.env.STANDALONE_PRACTITIONER || 'coordinator-1';
const SHORTLIVED_TTL_S = Number(process.env.SHORTLIVED_TTL_S || 2);
const APP_TOKEN_TTL_S = 3600;
const BACKEND_TOKEN_TTL_S = 300;
const MAX_ASSERTION_LIFETIME_S = 300;

const CLIENT = {
  app: 'lungrisk-app',
  shortlived: 'lungrisk-app-shortlived',
  readonly: 'lungrisk-app-readonly',
  backend: 'lungrisk-backend',
  backendJwksUrl: 'lungrisk-backend-jwks-url',
};
const BACKEND_CLIENTS = new Set([CLIENT.backend, CLIENT.backendJwksUrl]);
const BACKEND_JWKS_PATH = `/clients/${CLIENT.backend}/jwks.json`;

// ---- scopes: SMART v1 (read/write/*) and v2 (ordered subsets of cruds) for each context and resource type ----
const RESOURCE_TYPES = ['*', 'Patient', 'Practitioner', 'PractitionerRole', 'Organization', 'Location', 'Group',
  'Encounter', 'EpisodeOfCare', 'Observation', 'Condition', 'Procedure', 'DiagnosticReport', 'ImagingStudy',
  'FamilyMemberHistory', 'RiskAssessment', 'ServiceRequest', 'DetectedIssue', 'Flag', 'AuditEvent', 'Provenance',
  'MedicationStatement', 'MedicationRequest', 'AllergyIntolerance', 'Immunization', 'DocumentReference', 'Binary',
  'Media', 'Specimen', 'Device', 'Coverage', 'CarePlan', 'CareTeam', 'Goal', 'Task', 'Communication',
  'Appointment', 'QuestionnaireResponse', 'Questionnaire'];
const CRUDS = 'cruds';
const V2_PERMS = [];
for (let mask = 1; mask < 32; mask++) V2_PERMS.push([...CRUDS].filter((_, i) => mask & (1 << (4 - i))).join(''));
const PERMS = ['read', 'write', '*', ...V2_PERMS];
const scopesFor = (context) => RESOURCE_TYPES.flatMap((t) => PERMS.map((p) => `${context}/${t}.${p}`));
const LAUNCH_SCOPES = ['launch', 'launch/patient', 'launch/encounter'];
const OIDC_SCOPES = ['openid', 'fhirUser', 'profile', 'offline_access', 'online_access', ...LAUNCH_SCOPES];
const APP_RESOURCE_SCOPES = [...LAUNCH_SCOPES, ...scopesFor('patient'), ...scopesFor('user')].join(' ');
const SYSTEM_RESOURCE_SCOPES = scopesFor('system').join(' ');
/** A scope that only reads: v1 `.read`, or v2 permissions within `rs`. */
const isReadScope = (s) => { const p = s.split('.').pop(); return p === 'read' || /^[rs]+$/.test(p); };

// ---- keys ----
const readJson = (f) => JSON.parse(fs.readFileSync(f, 'utf8'));
const signingKey = readJson(path.join(KEY_DIR, 'as-signing.private.jwk.json'));
const backendJwks = readJson(path.join(KEY_DIR, 'backend-client.jwks.json'));
const signingPublicKey = await importJWK({ kty: signingKey.kty, n: signingKey.n, e: signingKey.e }, 'RS256');

// ---- launch context, kept per grant (so refresh keeps it) ----
const contextByGrant = new Map();
const decodeLaunch = (s) => {
  const v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('launch must encode a JSON object');
  return v;
};
const requestedScopes = (params) => new Set(String(params.scope || '').split(' ').filter(Boolean));
const resolveParty = (hint) => {
  const m = /^(Patient|Practitioner)\/([A-Za-z0-9\-.]{1,64})$/.exec(hint || '');
  if (m) return { type: m[1], id: m[2] };
  return hint && /^[A-Za-z0-9\-.]{1,64}$/.test(hint) ? { type: 'Patient', id: hint } : null;
};

/** Who logs in and which context the launch carries, from the authorization request alone. */
function decideLaunch(params) {
  const scopes = requestedScopes(params);
  const launch = params.launch ? decodeLaunch(params.launch) : null;
  const hint = resolveParty(params.login_hint);
  let user;
  let patient;
  if (launch) {
    user = launch.practitioner ? `Practitioner/${launch.practitioner}`
      : launch.patient ? `Patient/${launch.patient}` : `Practitioner/${STANDALONE_PRACTITIONER}`;
    patient = launch.patient;
  } else {
    user = hint?.type === 'Practitioner' ? `Practitioner/${hint.id}` : `Practitioner/${STANDALONE_PRACTITIONER}`;
    if (scopes.has('launch/patient')) patient = hint?.type === 'Patient' ? hint.id : STANDALONE_PATIENT || undefined;
  }
  const context = { fhirUser: user };
  if (patient) {
    context.patient = String(patient);
    context.need_patient_banner = launch?.need_patient_banner ?? true;
  }
  if (launch?.encounter) context.encounter = String(launch.encounter);
  if (launch?.fhirContext) context.fhirContext = launch.fhirContext;
  if (launch?.appContext !== undefined) {
    context.appContext = typeof launch.appContext === 'string' ? launch.appContext : JSON.stringify(launch.appContext);
  }
  context.readOnly = Boolean(launch?.read_only) || params.client_id === CLIENT.readonly;
  return { user, context, missingPatient: scopes.has('launch/patient') && !patient };
}

const appClient = (client_id) => ({
  client_id, token_endpoint_auth_method: 'none', application_type: 'web', redirect_uris: REDIRECT_URIS,
  grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
});
const backendClient = (client_id, keys) => ({
  client_id, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'],
  response_types: [], redirect_uris: [], ...keys,
});

const provider = new Provider(ISSUER, {
  clients: [
    appClient(CLIENT.app), appClient(CLIENT.shortlived), appClient(CLIENT.readonly),
    backendClient(CLIENT.backend, { jwks: backendJwks }),
    backendClient(CLIENT.backendJwksUrl, { jwks_uri: `${ISSUER}${BACKEND_JWKS_PATH}` }),
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: OIDC_SCOPES,
  claims: { openid: ['sub'], fhirUser: ['fhirUser'], profile: ['name'] },
  conformIdTokenClaims: false, // fhirUser goes into the id_token itself, as SMART clients expect
  enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384'] },
  clientAuthMethods: ['none', 'private_key_jwt'],
  // enableHttpPostMethods (authorize via POST) would need SameSite=None cookies, which browsers drop on plain
  // http: the authorize endpoint here is GET only.
  // oidc-provider's SSRF guard refuses loopback addresses; this stack lives on loopback (client jwks_uri).
  fetch: (url, options) => {
    if (['127.0.0.1', 'localhost'].includes(new URL(url).hostname)) delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
  clientBasedCORS: (ctx, origin, client) =>
    client.clientAuthMethod === 'none' && client.redirectUris.some((uri) => URL.parse(uri)?.origin === origin),
  extraParams: {
    launch(ctx, value) {
      if (value === undefined) return;
      try { decodeLaunch(value); } catch { throw new errors.InvalidRequest('launch is not base64url-encoded JSON'); }
    },
    aud(ctx, value) {
      if (ctx.oidc.route !== 'authorization') return;
      // SMART: aud is REQUIRED and must name this server's FHIR base (resource indicators would fill in a default
      // `resource`, so only `aud` itself counts here).
      if (!value) throw new errors.InvalidRequest(`aud is required (the FHIR base URL ${FHIR_BASE})`);
      if (String(value).replace(/\/$/, '') !== FHIR_BASE) {
        throw new errors.InvalidRequest(`aud ${value} is not this server's FHIR base URL ${FHIR_BASE}`);
      }
    },
  },
  pkce: { required: () => true },
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, fhirUser: sub, name: sub }) }),
  // oidc-provider drops offline_access unless prompt=consent, which SMART apps don't send: issue refresh tokens to
  // every client allowed the refresh_token grant.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // Every authorization is a new grant, so each EHR launch gets its own context (never a previous launch's).
  loadExistingGrant: async (ctx) => (ctx.oidc.result?.consent?.grantId
    ? ctx.oidc.provider.Grant.find(ctx.oidc.result.consent.grantId) : undefined),
  assertJwtClientAuthClaimsAndHeader: async (ctx, claims, header, client) => {
    if (!BACKEND_CLIENTS.has(client.clientId)) return;
    if (header.typ !== 'JWT') throw new errors.InvalidClientAuth('client assertion header typ must be JWT');
    if (claims.sub !== client.clientId) throw new errors.InvalidClientAuth('client assertion sub must be the client_id');
    if (claims.aud !== `${ISSUER}/token` && !(Array.isArray(claims.aud) && claims.aud.includes(`${ISSUER}/token`))) {
      throw new errors.InvalidClientAuth(`client assertion aud must be the token endpoint ${ISSUER}/token`);
    }
    if (claims.exp - Math.floor(Date.now() / 1000) > MAX_ASSERTION_LIFETIME_S + 5) {
      throw new errors.InvalidClientAuth('client assertion exp must be no more than five minutes in the future');
    }
    if (!ctx.oidc.params.scope) throw new errors.InvalidRequest('scope is required');
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => FHIR_BASE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator, client) => {
        if (indicator.replace(/\/$/, '') !== FHIR_BASE) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        const backend = BACKEND_CLIENTS.has(client.clientId);
        const ttl = backend ? BACKEND_TOKEN_TTL_S : client.clientId === CLIENT.shortlived ? SHORTLIVED_TTL_S : APP_TOKEN_TTL_S;
        return {
          scope: backend ? SYSTEM_RESOURCE_SCOPES : APP_RESOURCE_SCOPES,
          audience: FHIR_BASE, accessTokenFormat: 'jwt', accessTokenTTL: ttl, jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const c = contextByGrant.get(token.grantId);
    if (!c) return undefined;
    return { fhirUser: c.fhirUser, ...(c.patient ? { patient: c.patient } : {}), ...(c.encounter ? { encounter: c.encounter } : {}) };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || APP_TOKEN_TTL_S,
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || BACKEND_TOKEN_TTL_S,
    AuthorizationCode: 60, RefreshToken: 86400, Grant: 86400, Interaction: 600,
    Session: 86400, IdToken: 3600 },
});
provider.proxy = false;
for (const ev of ['grant.error', 'server_error', 'authorization.error']) {
  provider.on(ev, (ctx, err) => console.error(`${ev}: ${err?.error || ''} ${err?.error_description || err?.message || err}`
    + (err?.cause ? ` (cause: ${err.cause.error_description || err.cause.message || err.cause})` : '')));
}

// SMART: launch context and the full granted scope go into the token response body.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'token' || ctx.status !== 200 || !ctx.body?.access_token) return;
  const ent = ctx.oidc.entities;
  if (ent.ClientCredentials && !ctx.body.scope) {
    ctx.status = 400;
    ctx.body = { error: 'invalid_scope', error_description: 'none of the requested scopes can be granted (system/ scopes only)' };
    return;
  }
  const grant = ent.Grant;
  const c = contextByGrant.get((ent.AuthorizationCode || ent.RefreshToken)?.grantId);
  if (grant) {
    const oidcScope = grant.getOIDCScope().split(' ').filter(Boolean);
    ctx.body.scope = [...new Set([...oidcScope, ...String(ctx.body.scope || '').split(' ').filter(Boolean)])].join(' ');
  }
  if (c) {
    for (const k of ['patient', 'encounter', 'fhirContext', 'need_patient_banner', 'appContext']) {
      if (c[k] !== undefined) ctx.body[k] = c[k];
    }
  }
});

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { params, prompt } = details;
  const decision = decideLaunch(params);
  if (decision.missingPatient) {
    return provider.interactionFinished(req, res, { error: 'access_denied',
      error_description: 'no patient chosen: pass login_hint=Patient/<id> or set STANDALONE_PATIENT' },
    { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') {
    return provider.interactionFinished(req, res, { login: { accountId: decision.user } }, { mergeWithLastSubmission: false });
  }
  // consent: grant what was asked, except write scopes when the launch simulates a scope denial
  const grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const d = prompt.details;
  if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
  if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
    const granted = decision.context.readOnly ? scopes.filter((s) => LAUNCH_SCOPES.includes(s) || isReadScope(s)) : scopes;
    const denied = scopes.filter((s) => !granted.includes(s));
    if (granted.length) grant.addResourceScope(indicator, granted.join(' '));
    if (denied.length) grant.rejectResourceScope(indicator, denied.join(' '));
  }
  const grantId = await grant.save();
  contextByGrant.set(grantId, decision.context);
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function smartConfiguration() {
  return {
    issuer: ISSUER,
    jwks_uri: `${ISSUER}/jwks`,
    authorization_endpoint: `${ISSUER}/auth`,
    token_endpoint: `${ISSUER}/token`,
    introspection_endpoint: `${ISSUER}/token/introspection`,
    revocation_endpoint: `${ISSUER}/token/revocation`,
    grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token'],
    token_endpoint_auth_methods_supported: ['none', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    scopes_supported: [...OIDC_SCOPES, 'patient/*.rs', 'patient/*.cruds', 'patient/*.read', 'user/*.rs', 'user/*.cruds',
      'user/*.read', 'system/*.rs', 'system/*.cruds', 'system/*.read'],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    capabilities: ['launch-ehr', 'launch-standalone', 'client-public', 'client-confidential-asymmetric',
      'sso-openid-connect', 'context-banner', 'context-ehr-patient', 'context-ehr-encounter',
      'context-standalone-patient', 'permission-offline', 'permission-online', 'permission-patient',
      'permission-user', 'permission-v1', 'permission-v2'],
  };
}

// RFC 7662 introspection with the SMART additions (launch context, fhirUser) for both token kinds: oidc-provider
// cannot introspect structured (JWT) access tokens, so this answers for them and for refresh tokens.
async function introspect(req, res) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const token = new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('token') || '';
  const inactive = () => sendJson(res, 200, { active: false });
  if (token.split('.').length === 3) {
    try {
      const { payload } = await jwtVerify(token, signingPublicKey, { issuer: ISSUER });
      const { scope, client_id, exp, iat, sub, iss, aud, patient, fhirUser, encounter } = payload;
      return sendJson(res, 200, { active: true, token_type: 'Bearer', scope, client_id, exp, iat, sub, iss, aud,
        ...(patient ? { patient } : {}), ...(fhirUser ? { fhirUser } : {}), ...(encounter ? { encounter } : {}) });
    } catch {
      return inactive();
    }
  }
  const rt = await provider.RefreshToken.find(token).catch(() => undefined);
  if (!rt || rt.isExpired) return inactive();
  const c = contextByGrant.get(rt.grantId) || {};
  return sendJson(res, 200, { active: true, token_type: 'refresh_token', scope: rt.scope, client_id: rt.clientId,
    exp: rt.exp, iat: rt.iat, sub: rt.accountId, iss: ISSUER, ...(c.patient ? { patient: c.patient } : {}),
    ...(c.fhirUser ? { fhirUser: c.fhirUser } : {}) });
}

const callback = provider.callback();
const sendJson = (res, status, body, extra = {}) => {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...extra });
  res.end(JSON.stringify(body));
};

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, ISSUER);
    if (url.pathname === '/.well-known/smart-configuration') {
      if (req.method === 'OPTIONS') {
        res.writeHead(204, { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET',
          'access-control-allow-headers': 'accept' });
        return res.end();
      }
      return sendJson(res, 200, smartConfiguration(), { 'access-control-allow-origin': '*' });
    }
    if (url.pathname === BACKEND_JWKS_PATH) return sendJson(res, 200, backendJwks, { 'cache-control': 'max-age=60' });
    if (url.pathname === '/_stack/health') return sendJson(res, 200, { status: 'ok' });
    if (url.pathname === '/token/introspection' && req.method === 'POST') return await introspect(req, res);
    if (url.pathname.startsWith('/interaction/')) return await interaction(req, res);
    if (url.pathname === '/auth') {
      // A fresh login per authorization request: drop the previous session cookie (headless test AS).
      req.headers.cookie = (req.headers.cookie || '').split(/;\s*/).filter((c) => !/^_session(\.|=)/.test(c)).join('; ');
    }
    return callback(req, res);
  } catch (err) {
    console.error(err);
    return sendJson(res, 500, { error: 'server_error', error_description: String(err?.message || err) });
  }
});
server.listen(PORT, '127.0.0.1', () => console.log(`SMART AS (oidc-provider) on ${ISSUER}, audience ${FHIR_BASE}`));
// Everything lives in memory: nothing to flush, so stop at once.
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
