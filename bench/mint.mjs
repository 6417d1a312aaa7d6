// Mints the bearer tokens of the cold-verification rows (7: RS256, 7b: ES256), once, into a
// cache under bench/.work/tokens/, signed with the benchmark's own keys (generated here on
// first use: RSA 2048 and EC P-256), which portcullis trusts through
// `[[bearer.issuers]] public_keys`.
//
//   node bench/mint.mjs --dir DIR --alg RS256|ES256 --count N
//
// Makes sure DIR/<alg>.tokens holds at least N distinct tokens (one per line) and prints the
// number it holds. Missing tokens are signed in parallel on all cores (worker_threads):
// RSA signing costs about 0.2 ms per token here. Tokens live one year; a cache older than
// 180 days, or one whose key is gone, is thrown away and minted anew. All tokens of one
// algorithm have the same length (fixed-width claims), so line k starts at byte k * (length + 1).

import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

export const ISSUER = 'https://bench.local';
export const AUDIENCE = 'https://bench.api';
const LIFETIME = 365 * 24 * 3600;
const MAX_AGE = 180 * 24 * 3600;
const CHUNK = 2000;

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

if (!isMainThread) {
  signChunk(workerData);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main();
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const alg = args.alg;
  if (alg !== 'RS256' && alg !== 'ES256') throw new Error('--alg must be RS256 or ES256');
  const want = Number(args.count ?? 0);
  const dir = args.dir;
  mkdirSync(dir, { recursive: true });
  const base = join(dir, alg.toLowerCase());
  const paths = {
    key: `${base}.key.pem`,
    pub: `${base}.pub.pem`,
    tokens: `${base}.tokens`,
    meta: `${base}.meta.json`,
  };

  const now = Math.floor(Date.now() / 1000);
  let meta = existsSync(paths.meta) ? JSON.parse(readFileSync(paths.meta, 'utf8')) : null;
  if (!existsSync(paths.key) || !existsSync(paths.pub)) {
    const { privateKey, publicKey } =
      alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 2048 })
        : generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(paths.key, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(paths.pub, publicKey.export({ type: 'spki', format: 'pem' }));
    meta = null;
  }
  const keyPem = readFileSync(paths.key, 'utf8');
  const keyId = createHash('sha256').update(keyPem).digest('hex').slice(0, 16);
  // A file that does not hold exactly what the metadata says (an interrupted run) is redone:
  // minting the same numbers again would repeat tokens.
  if (
    !meta ||
    meta.key !== keyId ||
    now - meta.created > MAX_AGE ||
    !existsSync(paths.tokens) ||
    countLines(paths.tokens) !== meta.minted
  ) {
    meta = { key: keyId, created: now, tag: randomBytes(6).toString('hex'), minted: 0 };
    rmSync(paths.tokens, { force: true });
    writeFileSync(paths.tokens, '');
  }
  const have = meta.minted;
  const missing = Math.max(0, want - have);
  if (missing > 0) {
    const started = Date.now();
    const workers = Math.max(1, availableParallelism());
    const per = Math.ceil(missing / workers);
    const jobs = [];
    for (let w = 0; w < workers; w++) {
      const from = have + w * per;
      const count = Math.min(per, have + missing - from);
      if (count <= 0) continue;
      jobs.push(runWorker({ alg, keyPem, meta, from, count }, paths.tokens));
    }
    await Promise.all(jobs);
    meta.minted = have + missing;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    process.stderr.write(`minted ${missing} ${alg} tokens in ${secs} s (${workers} workers)\n`);
  }
  writeFileSync(paths.meta, JSON.stringify(meta));
  process.stdout.write(`${meta.minted}\n`);
}

function countLines(file) {
  const buf = readFileSync(file);
  let n = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

function runWorker(data, file) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: data });
    worker.on('message', (lines) => appendFileSync(file, lines));
    worker.on('error', reject);
    worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`minting worker exited ${code}`))));
  });
}

/** In a worker: signs tokens number `from` .. `from + count - 1`, posting them in chunks. */
function signChunk({ alg, keyPem, meta, from, count }) {
  const key = createPrivateKey(keyPem);
  const header = b64url({ alg, typ: 'JWT' });
  let out = [];
  let width;
  for (let i = from; i < from + count; i++) {
    const payload = b64url({
      iss: ISSUER,
      // Fixed-width values: every token of an algorithm has the same length, so that
      // wrk.lua can seek straight to its slice of the file.
      sub: `bench-client-${String(i % 1000).padStart(3, '0')}`,
      aud: AUDIENCE,
      scope: 'api:read',
      iat: meta.created,
      exp: meta.created + LIFETIME,
      jti: `${meta.tag}-${String(i).padStart(10, '0')}`,
    });
    const input = `${header}.${payload}`;
    const signature =
      alg === 'RS256'
        ? sign('sha256', Buffer.from(input), key)
        : sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${input}.${signature.toString('base64url')}`;
    if (width === undefined) width = token.length;
    if (token.length !== width) throw new Error(`token ${i} is ${token.length} bytes, not ${width}`);
    out.push(token);
    if (out.length === CHUNK) {
      parentPort.postMessage(`${out.join('\n')}\n`);
      out = [];
    }
  }
  if (out.length) parentPort.postMessage(`${out.join('\n')}\n`);
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}
