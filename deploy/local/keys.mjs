// Generates the local stack's keys once (idempotent): the authorization server's token-signing key and the
// SMART Backend Services client's key pair (RS384 + ES384), as JWK / JWK Set files under KEY_DIR.
//   as-signing.private.jwk.json          AS access-token / id_token signing key (RS256), kept across restarts
//   backend-client.private.jwks.json     the backend client's private keys (what the Python loader signs with)
//   backend-client.jwks.json             the same keys, public parts only (what the AS registers)
// Usage: node keys.mjs [KEY_DIR]   (default state/keys)
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint } from 'jose';

const dir = process.argv[2] || 'state/keys';
fs.mkdirSync(dir, { recursive: true, mode: 0o700 });

const PUBLIC_MEMBERS = { RSA: ['kty', 'n', 'e'], EC: ['kty', 'crv', 'x', 'y'] };
const publicPart = (jwk) => Object.fromEntries(
  [...PUBLIC_MEMBERS[jwk.kty], 'kid', 'alg', 'use'].filter((k) => jwk[k] !== undefined).map((k) => [k, jwk[k]]),
);

async function makeJwk(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: await calculateJwkThumbprint(jwk), alg, use: 'sig' };
}

function writeJson(file, value) {
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n', { mode: 0o600 });
  console.log(`keys: wrote ${file}`);
}

const asKey = path.join(dir, 'as-signing.private.jwk.json');
if (!fs.existsSync(asKey)) writeJson(asKey, await makeJwk('rsa', { modulusLength: 2048 }, 'RS256'));

const backendPrivate = path.join(dir, 'backend-client.private.jwks.json');
const backendPublic = path.join(dir, 'backend-client.jwks.json');
if (!fs.existsSync(backendPrivate)) {
  const keys = [
    await makeJwk('rsa', { modulusLength: 2048 }, 'RS384'),
    await makeJwk('ec', { namedCurve: 'P-384' }, 'ES384'),
  ];
  writeJson(backendPrivate, { keys });
  writeJson(backendPublic, { keys: keys.map(publicPart) });
} else if (!fs.existsSync(backendPublic)) {
  writeJson(backendPublic, { keys: JSON.parse(fs.readFileSync(backendPrivate, 'utf8')).keys.map(publicPart) });
}
