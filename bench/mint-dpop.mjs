// The DPoP row's credentials: one DPoP-bound access token (cnf.jkt) signed with the
// benchmark's ES256 issuer key (bench/mint.mjs makes it; portcullis trusts it through
// `[[bearer.issuers]] public_keys`), and a fresh proof for every request.
//
//   node bench/mint-dpop.mjs --dir DIR --htu URL --count N
//
// Writes DIR/dpop.token (the token, made once with its DPoP key DIR/dpop.key.pem) and
// DIR/dpop.proofs: N proofs for `GET URL`, one per line, all of one length (fixed-width jti
// and iat), each with its own jti and `iat` = now. Proofs are made anew on every call: a proof
// is only good for `bench.dpop.proof_lifetime` after its iat.

import { createHash, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { AUDIENCE, ISSUER } from './mint.mjs';

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const es256 = (input, key) => sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });

const args = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
const { dir, htu } = args;
const count = Number(args.count);
if (!dir || !htu || !Number.isInteger(count) || count < 1) {
  throw new Error('usage: node bench/mint-dpop.mjs --dir DIR --htu URL --count N');
}

// The DPoP key, and the token bound to it (signed by the ES256 issuer key of mint.mjs).
const keyFile = join(dir, 'dpop.key.pem');
const tokenFile = join(dir, 'dpop.token');
if (!existsSync(keyFile) || !existsSync(tokenFile)) {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const jwk = publicJwk(privateKey);
  // RFC 7638: the required members in lexicographic order.
  const jkt = createHash('sha256')
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
    .digest('base64url');
  const issuerKey = createPrivateKey(readFileSync(join(dir, 'es256.key.pem'), 'utf8'));
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64url({ alg: 'ES256', typ: 'at+jwt' })}.${b64url({
    iss: ISSUER, sub: 'bench-dpop-client', aud: AUDIENCE, client_id: 'bench-dpop-client',
    scope: 'api:read', iat: now, exp: now + 365 * 24 * 3600, jti: `dpop-${now}`,
    cnf: { jkt },
  })}`;
  writeFileSync(tokenFile, `${input}.${es256(input, issuerKey).toString('base64url')}`);
}
const key = createPrivateKey(readFileSync(keyFile, 'utf8'));
const token = readFileSync(tokenFile, 'utf8').trim();
const header = b64url({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk(key) });
const ath = createHash('sha256').update(token).digest('base64url');
const iat = Math.floor(Date.now() / 1000);
const tag = Math.random().toString(16).slice(2, 10).padEnd(8, '0');

const started = Date.now();
const lines = [];
for (let i = 0; i < count; i++) {
  const input = `${header}.${b64url({
    jti: `${tag}-${String(i).padStart(10, '0')}`, htm: 'GET', htu, iat, ath,
  })}`;
  lines.push(`${input}.${es256(input, key).toString('base64url')}`);
}
if (new Set(lines.map((l) => l.length)).size !== 1) throw new Error('proofs of different lengths');
writeFileSync(join(dir, 'dpop.proofs'), `${lines.join('\n')}\n`);
process.stderr.write(`minted ${count} DPoP proofs in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

function publicJwk(privateKey) {
  const { kty, crv, x, y } = privateKey.export({ format: 'jwk' });
  return { kty, crv, x, y };
}
