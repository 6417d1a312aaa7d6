// Soak: a bounded mixed load against one portcullis process (`bash tests/soak/run.sh`).
//
// The npm oidc-provider (tests/e2e/idp.mjs) as identity provider, a small echo upstream in this
// process, portcullis (PORTCULLIS_BIN, a release build) between them. Workers loop for the given
// minutes, each request one of:
//   - a fresh login over HTTP (portcullis /oauth2/start → the provider's login and consent
//     forms → the callback), the new session joining a pool of sessions;
//   - a request with a session cookie from the pool (alice's or bob's), Set-Cookie applied as a
//     browser would (access tokens live 120 s, so sessions are refreshed during the run);
//   - a request with a client_credentials bearer token (renewed every 5 minutes).
// Every answer must be the upstream's 200 naming the right caller; anything else is an
// unexpected error. portcullis' RSS and open file descriptors are sampled every 10 s.
//
// Pass: zero unexpected errors, mean RSS over the last minute within 5 % of the mean over the
// minute after half time (single samples swing by ±4 % as the allocator takes and returns pages;
// a leak moves the mean), descriptors at the end no more than at half time plus the workers'
// connections. The summary is printed and written to
// tests/soak/last-run.md.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir, availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { freePort, waitUntil } from '../e2e/harness.mjs';
import { machineToken, startIdp, USERS } from '../e2e/idp.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).map((a, i, all) => (a.startsWith('--') ? [a.slice(2), all[i + 1]] : null)).filter(Boolean),
);
const MINUTES = Number(args.minutes ?? 10);
const WORKERS = Number(args.workers ?? 16);
// Moderate load: requests are paced to this rate (per second) across all workers.
const RATE = Number(args.rate ?? 1000);
const BIN = process.env.PORTCULLIS_BIN;
if (!BIN) throw new Error('PORTCULLIS_BIN: the portcullis binary to soak');
if (!(MINUTES > 0) || !(WORKERS > 0) || !(RATE > 0)) {
  throw new Error('--minutes, --workers and --rate must be positive');
}
const DURATION_MS = MINUTES * 60_000;
// Growth is judged over the second half of the run: by then every kind of traffic has run for
// minutes (sessions have been refreshed twice: access tokens live 120 s) and the allocator has
// settled, so what still grows is what grows with requests.
const WARMUP_MS = DURATION_MS / 2;
const FIRST_MINUTE_MS = Math.min(60_000, DURATION_MS / 10);
const LOGIN_EVERY = 400; // one request in this many is a fresh login
const POOL = 64; // sessions kept

const scratch = mkdtempSync(join(tmpdir(), 'portcullis-soak-'));
const log = (...m) => console.log(new Date().toISOString().slice(11, 19), ...m);

// --- the upstream: answers who the proxy said the caller is, keeps nothing per request.
const upstream = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`user=${req.headers['x-forwarded-user'] ?? '-'}\n`);
});
const upstreamSockets = new Set();
upstream.on('connection', (s) => {
  upstreamSockets.add(s);
  s.once('close', () => upstreamSockets.delete(s));
});
await new Promise((ok) => upstream.listen(0, '127.0.0.1', ok));

// --- the provider and portcullis.
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const idp = await startIdp({
  redirectUris: [`${base}/oauth2/callback`],
  postLogoutRedirectUris: [`${base}/`],
  accessTokenTtl: 120,
});
const configPath = join(scratch, 'portcullis.toml');
writeFileSync(
  configPath,
  `
[server]
listen = "127.0.0.1:${port}"
shutdown_grace = "1s"
[upstream]
url = "http://127.0.0.1:${upstream.address().port}"
[oidc]
issuer = "${idp.issuer}"
client_id = "${idp.clientId}"
client_secret = "${idp.clientSecret}"
redirect_url = "${base}/oauth2/callback"
[session]
secrets = ["${randomBytes(32).toString('base64')}"]
secure = false
[bearer]
audiences = ["https://api.portcullis.test"]
[logging]
level = "warn"
format = "json"
`,
);
const logPath = join(scratch, 'portcullis.log');
const child = spawn(BIN, ['run', '--config', configPath], { stdio: ['ignore', 'ignore', openSync(logPath, 'w')] });
let stopping = false;
async function stopAll() {
  stopping = true;
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    await new Promise((ok) => (child.exitCode !== null ? ok() : child.once('exit', ok)));
    clearTimeout(kill);
  }
  await idp.close();
  for (const s of upstreamSockets) s.destroy();
  await new Promise((ok) => upstream.close(ok));
}
process.on('SIGINT', () => stopAll().then(() => process.exit(130)));
process.on('SIGTERM', () => stopAll().then(() => process.exit(143)));

await waitUntil('portcullis /ready', 20_000, async () => {
  if (child.exitCode !== null) throw new Error(`portcullis exited: ${readFileSync(logPath, 'utf8')}`);
  const r = await fetch(`${base}/ready`).catch(() => null);
  return r?.status === 200 && (await r.text()) === 'OK';
});

// --- a browser's cookie jar for one host (cookies are not port-scoped, as in a browser).
class Jar {
  constructor() {
    this.cookies = new Map();
  }
  header() {
    return [...this.cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }
  take(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = attrs.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a)) || value === '';
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  /** Only portcullis' own cookies: what a script replaying a session would send. */
  session() {
    const j = new Jar();
    for (const [n, v] of this.cookies) if (n.startsWith('_portcullis')) j.cookies.set(n, v);
    return j;
  }
}

async function step(jar, url, init = {}) {
  const headers = { ...(init.headers ?? {}) };
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  const r = await fetch(url, { ...init, headers, redirect: 'manual' });
  jar.take(r);
  return r;
}

/** The hidden fields and action of the provider's (single) form on `html`. */
function form(html, pageUrl) {
  const action = html.match(/<form[^>]*action="([^"]*)"/)?.[1];
  if (!action) throw new Error(`no form on ${pageUrl}`);
  const fields = new URLSearchParams();
  for (const m of html.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
    const name = m[0].match(/name="([^"]*)"/)?.[1];
    const value = m[0].match(/value="([^"]*)"/)?.[1] ?? '';
    if (name) fields.set(name, value);
  }
  return { action: new URL(action.replaceAll('&amp;', '&'), pageUrl).href, fields };
}

/** A fresh login as `user`; resolves to the session's jar. */
async function login(user) {
  const jar = new Jar();
  let r = await step(jar, `${base}/oauth2/start?rd=%2Fsoak`);
  if (r.status !== 302) throw new Error(`/oauth2/start: ${r.status}`);
  let url = new URL(r.headers.get('location'), base).href;
  for (let hops = 0; hops < 20; hops++) {
    if (url.startsWith(`${base}/`)) {
      // Back at portcullis: the callback, then the original target.
      r = await step(jar, url);
      if (r.status !== 302 || r.headers.get('location') !== '/soak') {
        throw new Error(`callback: ${r.status} ${r.headers.get('location')} ${await r.text()}`);
      }
      return jar.session();
    }
    r = await step(jar, url);
    if (r.status >= 300 && r.status < 400) {
      url = new URL(r.headers.get('location'), url).href;
      continue;
    }
    const html = await r.text();
    if (r.status !== 200) throw new Error(`provider ${url}: ${r.status}`);
    const { action, fields } = form(html, url);
    if (html.includes('name="login"')) {
      fields.set('login', user);
      fields.set('password', 'not-checked-by-dev-login');
    }
    r = await step(jar, action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: fields.toString(),
    });
    if (r.status < 300 || r.status >= 400) throw new Error(`form ${action}: ${r.status}`);
    url = new URL(r.headers.get('location'), action).href;
  }
  throw new Error('login: too many redirects');
}

// --- resources of the portcullis process.
function rssKiB() {
  const m = readFileSync(`/proc/${child.pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return Number(m[1]);
}
const fds = () => readdirSync(`/proc/${child.pid}/fd`).length;

// --- the load.
const counts = { cookie: 0, bearer: 0, login: 0 };
const errors = [];
const sessions = [];
const users = Object.keys(USERS);
let bearer = { token: await machineToken(idp), at: Date.now() };
for (let i = 0; i < 8; i++) sessions.push({ user: users[i % users.length], jar: await login(users[i % users.length]) });

function unexpected(kind, what) {
  errors.push(`${kind}: ${what}`);
  if (errors.length <= 5) log(`unexpected ${kind}: ${what}`);
}

async function once(n) {
  if (n % LOGIN_EVERY === 0) {
    const user = users[n % users.length];
    try {
      const jar = await login(user);
      counts.login++;
      sessions.push({ user, jar });
      if (sessions.length > POOL) sessions.shift();
    } catch (e) {
      unexpected('login', e.message);
    }
    return;
  }
  if (n % 5 < 2) {
    if (Date.now() - bearer.at > 300_000) bearer = { token: await machineToken(idp), at: Date.now() };
    const r = await fetch(`${base}/api/soak`, { headers: { authorization: `Bearer ${bearer.token}` } });
    const body = await r.text();
    counts.bearer++;
    if (r.status !== 200 || body !== 'user=ci-runner\n') unexpected('bearer', `${r.status} ${body.slice(0, 120)}`);
    return;
  }
  const s = sessions[n % sessions.length];
  const r = await step(s.jar, `${base}/soak`, { headers: { accept: 'application/json' } });
  const body = await r.text();
  counts.cookie++;
  if (r.status !== 200 || body !== `user=${s.user}\n`) unexpected('cookie', `${r.status} ${body.slice(0, 120)}`);
}

const samples = [];
const t0 = Date.now();
let warm = null;
let firstMinute = null;
const sampler = setInterval(() => {
  const s = { t: Date.now() - t0, rss: rssKiB(), fds: fds(), requests: counts.cookie + counts.bearer + counts.login };
  samples.push(s);
  if (!warm && s.t >= WARMUP_MS) warm = s;
  if (!firstMinute && s.t >= FIRST_MINUTE_MS) firstMinute = s;
  log(`${(s.t / 1000).toFixed(0)} s: ${s.requests} requests, RSS ${(s.rss / 1024).toFixed(1)} MiB, ${s.fds} fds, ${errors.length} unexpected`);
}, 10_000);

let next = 1;
log(`soak: ${MINUTES} min, ${WORKERS} workers, ${RATE} req/s, portcullis ${BIN} on ${base}, provider ${idp.issuer}`);
await Promise.all(
  Array.from({ length: WORKERS }, async () => {
    while (!stopping && Date.now() - t0 < DURATION_MS) {
      const n = next++;
      // Pacing, not synchronisation: request n is due n / RATE seconds after the start.
      const due = t0 + (n * 1000) / RATE - Date.now();
      if (due > 0) await sleep(due);
      try {
        await once(n);
      } catch (e) {
        unexpected('request', e.message);
      }
    }
  }),
);
clearInterval(sampler);
const end = { t: Date.now() - t0, rss: rssKiB(), fds: fds() };
const alive = child.exitCode === null;
await stopAll();
// pingora 0.9 logs this ERROR when a pooled upstream connection is still held by its idle
// watcher at the moment a request wants it (a race in its pool): it then opens a new
// connection and the request succeeds. Counted apart; any other line fails the run.
const KNOWN = 'failed to acquire reusable stream';
const logLines = readFileSync(logPath, 'utf8').split('\n').filter(Boolean);
const poolRaces = logLines.filter((l) => l.includes(KNOWN)).length;
const portcullisLog = logLines.filter((l) => !l.includes(KNOWN));
rmSync(scratch, { recursive: true, force: true });

// --- verdict.
const mib = (kib) => (kib === undefined ? '–' : `${(kib / 1024).toFixed(1)} MiB`);
const total = counts.cookie + counts.bearer + counts.login;
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const WINDOW_MS = FIRST_MINUTE_MS;
const afterHalf = samples.filter((s) => s.t >= WARMUP_MS && s.t < WARMUP_MS + WINDOW_MS);
const lastWindow = [...samples.filter((s) => s.t >= end.t - WINDOW_MS), end];
const warmRss = afterHalf.length ? mean(afterHalf.map((s) => s.rss)) : (samples[0]?.rss ?? end.rss);
const endRss = mean(lastWindow.map((s) => s.rss));
const warmFds = warm?.fds ?? samples[0]?.fds ?? end.fds;
const growth = ((endRss - warmRss) / warmRss) * 100;
const rssValues = [...samples.map((s) => s.rss), end.rss];
const maxFds = Math.max(...samples.map((s) => s.fds), end.fds);
const checks = [
  [`portcullis still running`, alive],
  [`unexpected errors: ${errors.length}`, errors.length === 0],
  [`mean RSS growth over the second half: ${growth.toFixed(1)} % (< 5 %)`, growth < 5],
  [`fds at the end ${end.fds} ≤ at half time ${warmFds} + ${WORKERS}`, end.fds <= warmFds + WORKERS],
  [`no portcullis log line at warn or above (besides pingora's pool race): ${portcullisLog.length}`, portcullisLog.length === 0],
];
const summary = [
  `# Soak run`,
  '',
  `${new Date().toISOString()} · ${availableParallelism()} cores · \`bash tests/soak/run.sh ${MINUTES}\` (${WORKERS} workers, paced to ${RATE} req/s)`,
  '',
  `- ${total} requests in ${(end.t / 1000).toFixed(0)} s (${(total / (end.t / 1000)).toFixed(0)} req/s): ` +
    `${counts.cookie} with a session cookie, ${counts.bearer} with a bearer token, ${counts.login} fresh logins` +
    ` (plus 8 before the start)`,
  `- portcullis RSS: ${mib(firstMinute?.rss)} after ${(FIRST_MINUTE_MS / 1000).toFixed(0)} s; ` +
    `mean ${mib(warmRss)} over the ${(WINDOW_MS / 1000).toFixed(0)} s after half time ` +
    `(${(WARMUP_MS / 1000).toFixed(0)} s), mean ${mib(endRss)} over the last ${(WINDOW_MS / 1000).toFixed(0)} s ` +
    `(${growth >= 0 ? '+' : ''}${growth.toFixed(1)} % over the second half); ` +
    `samples between ${mib(Math.min(...rssValues))} and ${mib(Math.max(...rssValues))}`,
  `- open file descriptors: ${warmFds} at half time, ${end.fds} at the end, at most ${maxFds}`,
  `- unexpected errors: ${errors.length}${errors.length ? ` (first: ${errors[0]})` : ''}`,
  `- portcullis log lines at warn or above: ${portcullisLog.length}${portcullisLog.length ? ` (first: ${portcullisLog[0].slice(0, 200)})` : ''}; ` +
    `pingora's "${KNOWN}" (pool race, a new upstream connection instead): ${poolRaces}`,
  '',
  ...checks.map(([what, ok]) => `- ${ok ? 'PASS' : 'FAIL'}: ${what}`),
  '',
].join('\n');
writeFileSync(join(HERE, 'last-run.md'), summary);
console.log(`\n${summary}`);
process.exit(checks.every(([, ok]) => ok) ? 0 : 1);
