// The benchmark itself (bench/run.sh installs and builds, then runs this): starts the upstream,
// the proxies, the identity provider and portcullis on loopback, logs in, checks every row,
// drives each row with wrk in interleaved rounds, and prints and writes the table.
//
//   node bench/orchestrate.mjs [--rounds N] [--duration S] [--connections C]
//
// Environment (set by run.sh): PORTCULLIS_BIN (release binary), MINIMAL_BIN (the minimal
// pingora proxy of the same build), OHA (the latency rows' load generator), BENCH_SRC (the
// worktree of HEAD whose tests/e2e provides the identity provider and the browser helpers),
// BENCH_COMMIT, BENCH_COMMAND.
//
// Every process started here is recorded with its PID (and start time) in .work/run/pids,
// and ended by PID: on success, on failure and on SIGINT/SIGTERM.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect as http2Connect } from 'node:http2';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { availableParallelism, release } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { AUDIENCE as BENCH_AUDIENCE, ISSUER as BENCH_ISSUER } from './mint.mjs';
import { refreshStorms, stormReport, STORM } from './storm.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..');
const WORK = join(HERE, '.work');
const RUN = join(WORK, 'run');
const TOKENS = join(WORK, 'tokens');
const PIDFILE = join(RUN, 'pids');
const SRC = process.env.BENCH_SRC ?? join(WORK, 'src');
const BIN = process.env.PORTCULLIS_BIN ?? join(WORK, 'target/release/portcullis');
const MINIMAL_BIN = process.env.MINIMAL_BIN ?? join(WORK, 'target/release/examples/minimal_proxy');
const OHA = process.env.OHA ?? join(WORK, 'tools/bin/oha');
const WRK_LUA = join(HERE, 'wrk.lua');
const RESULTS = join(HERE, 'results.md');
const NGINX = '/usr/sbin/nginx';
const APACHE = '/usr/sbin/apache2';
const APACHE_MODULES = '/usr/lib/apache2/modules';
const PAYLOAD_BYTES = 200;
const WRK_THREADS = 2;
// HTTP/2 rows: streams in flight on each of the connections.
const H2_STREAMS = 8;
// The latency rows: requests per second that oha sends whatever the answers' pace (open loop),
// about a third of what the slowest of those rows serves flat out here.
const LATENCY_RATE = 5_000;
// The rows measured at that rate too, and the one whose latency the others' is added to.
const LATENCY_ROWS = ['1', '2', '2m', '4', '5', '6'];
const LATENCY_BASE = '1';
// The DPoP row: proofs for its 1 s warm-up.
const WARMUP_PROOFS = 30_000;
const WARMUP_SECONDS = 1;
// Cold rows: a warm-up of 1 s may use up to this many tokens before their speed is known.
const WARMUP_TOKEN_BUDGET = 40_000;
// Tokens per round and row: the fastest rate seen times the duration, times this.
const TOKEN_MARGIN = 1.5;
// At most this many cached tokens per algorithm (about 0.6 KB each on disk).
const MAX_TOKENS = 2_000_000;
const MAX_NON_2XX = 0.001;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const opts = parseArgs(process.argv.slice(2));
const log = (...a) => console.log(...a);

// ---------------------------------------------------------------------------------------------
// Processes: started detached (their own process group, so a Ctrl-C reaches only run.sh and
// this script), recorded by PID, ended by PID.

const procs = [];
let stopping = false;

function startProcess(name, cmd, args, { env = process.env, logFile } = {}) {
  if (stopping) throw new Error('stopping');
  logFile ??= join(RUN, `${name}.log`);
  const out = openSync(logFile, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', out, out], detached: true, env });
  closeSync(out);
  const exited = once(child, 'exit').catch(() => {});
  const p = { name, pid: child.pid, child, exited, logFile };
  if (!child.pid) throw new Error(`could not start ${name} (${cmd})`);
  procs.push(p);
  recordPid(child.pid, name);
  return p;
}

function recordPid(pid, name) {
  const started = procStat(pid)?.starttime ?? '?';
  appendFileSync(PIDFILE, `${pid} ${started} ${name}\n`);
}

const alive = (p) => p.child.exitCode === null && p.child.signalCode === null;

/** Ends every recorded process, newest first: SIGTERM, then SIGKILL for what is left. */
async function stopAll() {
  stopping = true;
  const stragglers = new Set();
  for (const p of [...procs].reverse()) {
    if (!alive(p)) continue;
    for (const d of descendants([p.pid])) stragglers.add(d);
    try {
      process.kill(p.pid, 'SIGTERM');
    } catch {}
  }
  await Promise.race([Promise.all(procs.map((p) => p.exited)), sleep(5000)]);
  for (const p of procs) {
    if (alive(p)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {}
    }
  }
  // Workers of a killed master, Chromium's helpers: only PIDs seen as ours before.
  for (const pid of [...stragglers, ...extraPids]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  rmSync(PIDFILE, { force: true });
}

// Processes started on our behalf by a library (Chromium through playwright): recorded here.
const extraPids = new Set();

let shuttingDown = null;
function shutdown(code) {
  shuttingDown ??= stopAll()
    .catch((e) => console.error('cleanup:', e))
    .then(() => process.exit(code));
  return shuttingDown;
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (!stopping) console.error(`\n${sig}: stopping everything; no results are written`);
    shutdown(130);
  });
}

/** Ends the benchmark's own work once a signal has asked everything to stop. */
function checkInterrupted() {
  if (stopping) throw Object.assign(new Error('interrupted'), { interrupted: true });
}

// ---------------------------------------------------------------------------------------------
// /proc: CPU time and memory of a process and everything below it.

function procStat(pid) {
  let s;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17, starttime 22.
  return {
    ppid: Number(f[1]),
    ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
    starttime: f[19],
  };
}

function descendants(roots) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = procStat(name);
    if (!st) continue;
    if (!children.has(st.ppid)) children.set(st.ppid, []);
    children.get(st.ppid).push(Number(name));
  }
  const out = [];
  const queue = [...roots];
  while (queue.length) {
    const pid = queue.shift();
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU seconds (user + system, including reaped children) of the trees under `roots`. */
function cpuSeconds(roots) {
  let ticks = 0;
  for (const pid of descendants(roots)) ticks += procStat(pid)?.ticks ?? 0;
  return ticks / CLK_TCK;
}

/** Resident memory (VmRSS) of the trees under `roots`, in MiB. */
function rssMiB(roots) {
  let kb = 0;
  for (const pid of descendants(roots)) {
    try {
      const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
      if (m) kb += Number(m[1]);
    } catch {}
  }
  return kb / 1024;
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

function parseArgs(argv) {
  const o = { rounds: 3, duration: 5, connections: 32, rows: null };
  const usage = () => {
    console.error(
      'usage: bash bench/run.sh [--rounds N] [--duration SECONDS] [--connections C] [--rows 2,4,7b]',
    );
    process.exit(2);
  };
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split('=', 2);
    const v = inline ?? argv[++i];
    if (k === '--rows') {
      if (!v || !/^\w+(,\w+)*$/.test(v)) usage();
      o.rows = v.split(',');
      continue;
    }
    const n = Number(v);
    if (!['--rounds', '--duration', '--connections'].includes(k) || !Number.isInteger(n) || n < 1) {
      usage();
    }
    o[k.slice(2)] = n;
  }
  if (o.connections < WRK_THREADS) o.connections = WRK_THREADS;
  return o;
}

function render(template, vars) {
  const text = readFileSync(join(HERE, 'templates', template), 'utf8').replace(
    /\{\{(\w+)\}\}/g,
    (_, k) => {
      if (!(k in vars)) throw new Error(`${template}: no value for {{${k}}}`);
      return String(vars[k]);
    },
  );
  return text;
}

function replaceOnce(text, from, to, what) {
  const count = text.split(from).length - 1;
  if (count !== 1) throw new Error(`${what}: expected "${from}" once, found it ${count} times`);
  return text.replace(from, () => to);
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function get(url, headers = {}) {
  if (url.startsWith('https:')) return getTls(url, headers);
  const r = await fetch(url, { headers, redirect: 'manual', signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text(), headers: r.headers };
}

/** GET over TLS, trusting the benchmark's self-signed certificate (the TLS rows' check). */
function getTls(url, headers) {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { headers, rejectUnauthorized: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

/**
 * One gRPC call over h2c: POSTs the framed message in `bodyFile` to `url`; the HTTP status,
 * the grpc-status trailer and the response message's bytes (the ext_authz row's check).
 */
function grpcCall(url, bodyFile) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const session = http2Connect(u.origin);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': u.pathname,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks = [];
    let status;
    let grpcStatus;
    req.on('response', (h) => {
      status = h[':status'];
      grpcStatus = h['grpc-status'];
    });
    req.on('trailers', (t) => (grpcStatus = t['grpc-status']));
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      session.close();
      resolve({ status, grpcStatus, body: Buffer.concat(chunks) });
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.close());
    req.end(readFileSync(bodyFile));
  });
}

/**
 * The benchmark's certificate for 127.0.0.1 (self-signed, EC P-256): the TLS rows' (nginx and
 * portcullis serve it) and the JWKS mirror's.
 */
function makeTlsCert() {
  const dir = join(RUN, 'tls');
  mkdirSync(dir, { recursive: true });
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const made = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '7',
    '-keyout', key, '-out', cert,
  ], { encoding: 'utf8' });
  if (made.status !== 0) throw new Error(`openssl req: ${made.stderr}`);
  return { key, cert };
}

async function waitFor(what, ms, check, proc) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    if (proc && !alive(proc)) {
      const tail = readFileSync(proc.logFile, 'utf8').trim().split('\n').slice(-3).join(' | ');
      throw new Error(`${what}: ${proc.name} exited: ${tail} (${proc.logFile})`);
    }
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// The pieces.

async function startNginx(name, conf, port, probePath = '/') {
  const dir = join(RUN, name);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const p = startProcess(name, NGINX, ['-p', dir, '-c', file], { logFile: join(dir, 'stderr.log') });
  await waitFor(`${name} on port ${port}`, 10_000, async () => {
    await get(`http://127.0.0.1:${port}${probePath}`);
    return true;
  }, p);
  return p;
}

async function upstreamRequests(port) {
  const r = await get(`http://127.0.0.1:${port}/__bench_stub_status`);
  const m = r.body.match(/\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n/);
  if (!m) throw new Error(`stub_status: ${r.body}`);
  return Number(m[3]);
}

async function portcullisMetrics(port) {
  const r = await get(`http://127.0.0.1:${port}/metrics`);
  const num = (name) => {
    const m = r.body.match(new RegExp(`^${name} (\\S+)$`, 'm'));
    return m ? Number(m[1]) : NaN;
  };
  // Every request portcullis answered, whatever the outcome.
  const requests = [...r.body.matchAll(/^portcullis_requests_total\{[^}]*\} (\S+)$/gm)]
    .reduce((sum, m) => sum + Number(m[1]), 0);
  return {
    decisionSum: num('portcullis_auth_decision_seconds_sum'),
    decisionCount: num('portcullis_auth_decision_seconds_count'),
    requests,
  };
}

/** RSS checkpoints: the first time portcullis has answered at least this many requests. */
const RSS_CHECKPOINTS = [100_000, 1_000_000];

/**
 * Runs h2load (HTTP/2 over TLS, or h2c for an http:// URL) once, with the same connections
 * as wrk and H2_STREAMS streams on each (POSTing `body`, a file, when given); the same counts as runWrk, latency percentiles from its
 * per-request log.
 */
async function runH2load({ url, headers = [], body, seconds }) {
  const logFile = join(RUN, 'h2load.requests');
  rmSync(logFile, { force: true });
  const args = [
    '-t', String(WRK_THREADS),
    '-c', String(opts.connections),
    '-m', String(H2_STREAMS),
    '-D', String(seconds),
    '--log-file', logFile,
    ...(body ? ['-d', body] : []),
    ...headers.flatMap((h) => ['-H', h]),
    url,
  ];
  const outFile = join(RUN, 'h2load.out');
  rmSync(outFile, { force: true });
  const p = startProcess('h2load', 'h2load', args, { logFile: outFile });
  await p.exited;
  procs.splice(procs.indexOf(p), 1);
  const out = readFileSync(outFile, 'utf8');
  const done = out.match(/requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/);
  const codes = out.match(/status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/);
  const finished = out.match(/finished in ([\d.]+)(m?s)/);
  if (p.child.exitCode !== 0 || !done || !codes || !finished) {
    throw new Error(`h2load failed (exit ${p.child.exitCode ?? p.child.signalCode}): ${out.trim().slice(-400)}`);
  }
  // Each line: start time (µs), status, time to the response (µs).
  const times = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(l.split('\t')[2]))
    .sort((a, b) => a - b);
  const pct = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? NaN;
  const durationUs = Number(finished[1]) * (finished[2] === 'ms' ? 1e3 : 1e6);
  const requests = Number(done[3]);
  return {
    requests,
    duration_us: durationUs,
    connect: 0,
    read: Number(done[6]),
    write: 0,
    status: Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    timeout: Number(done[7]),
    p50_us: pct(0.5),
    p99_us: pct(0.99),
    repeats: 0,
  };
}

/** Runs wrk once; its counts from wrk.lua's BENCH_JSON line. */
async function runWrk({ url, headers = [], env = {}, seconds }) {
  const args = [
    '-t', String(WRK_THREADS),
    '-c', String(opts.connections),
    '-d', `${seconds}s`,
    '--timeout', '5s',
    '--latency',
    '-s', WRK_LUA,
    ...headers.flatMap((h) => ['-H', h]),
    url,
  ];
  const outFile = join(RUN, 'wrk.out');
  rmSync(outFile, { force: true });
  const p = startProcess('wrk', 'wrk', args, { env: { ...process.env, ...env }, logFile: outFile });
  await p.exited;
  procs.splice(procs.indexOf(p), 1);
  const out = readFileSync(outFile, 'utf8');
  const line = out.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (p.child.exitCode !== 0 || !line) {
    throw new Error(`wrk failed (exit ${p.child.exitCode ?? p.child.signalCode}): ${out.trim().slice(-400)}`);
  }
  return JSON.parse(line.slice('BENCH_JSON '.length));
}

/**
 * Runs oha once at a fixed rate (open loop: requests leave on schedule whatever the answers'
 * pace, and each latency counts from when its request was due, so a stall is not hidden by the
 * requests it held back). Latencies in µs.
 */
async function runOha({ url, headers = [], seconds, rate }) {
  const args = [
    '-c', String(opts.connections),
    '-q', String(rate),
    '-z', `${seconds}s`,
    '--latency-correction',
    '--no-tui',
    '--output-format', 'json',
    ...headers.flatMap((h) => ['-H', h]),
    url,
  ];
  const outFile = join(RUN, 'oha.json');
  rmSync(outFile, { force: true });
  const p = startProcess('oha', OHA, args, { logFile: outFile });
  await p.exited;
  procs.splice(procs.indexOf(p), 1);
  const out = readFileSync(outFile, 'utf8');
  let r;
  try {
    r = JSON.parse(out);
  } catch {
    throw new Error(`oha failed (exit ${p.child.exitCode ?? p.child.signalCode}): ${out.trim().slice(-400)}`);
  }
  const statuses = r.statusCodeDistribution ?? {};
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0);
  // oha counts the requests still in flight at the deadline as errors: not a failure.
  const errors = Object.entries(r.errorDistribution ?? {})
    .filter(([what]) => !what.includes('deadline'))
    .reduce((a, [, n]) => a + n, 0);
  const us = (k) => (r.latencyPercentiles?.[k] ?? NaN) * 1e6;
  return {
    requests: answered,
    rps: answered / r.summary.total,
    non2xx: answered - Object.entries(statuses).filter(([c]) => c.startsWith('2')).reduce((a, [, n]) => a + n, 0),
    errors,
    p50: us('p50'),
    p99: us('p99'),
    p999: us('p99.9'),
  };
}

async function ensureTokens(alg, count) {
  const p = startProcess(`mint-${alg}`, process.execPath, [
    join(HERE, 'mint.mjs'), '--dir', TOKENS, '--alg', alg, '--count', String(count),
  ], { logFile: join(RUN, `mint-${alg}.log`) });
  await p.exited;
  procs.splice(procs.indexOf(p), 1);
  const out = readFileSync(join(RUN, `mint-${alg}.log`), 'utf8');
  if (p.child.exitCode !== 0) throw new Error(`minting ${alg} tokens failed: ${out.slice(-400)}`);
  const minted = out.match(/^minted .*$/gm);
  if (minted) log(`  ${minted.at(-1)}`);
  return Number(out.trim().split('\n').pop());
}

/** `count` fresh DPoP proofs for `row`'s URL (bench/mint-dpop.mjs), and the token they go with. */
async function ensureProofs(row, count) {
  const logFile = join(RUN, 'mint-dpop.log');
  const p = startProcess('mint-dpop', process.execPath, [
    join(HERE, 'mint-dpop.mjs'), '--dir', TOKENS, '--htu', row.url, '--count', String(count),
  ], { logFile });
  await p.exited;
  procs.splice(procs.indexOf(p), 1);
  if (p.child.exitCode !== 0) {
    throw new Error(`minting DPoP proofs failed: ${readFileSync(logFile, 'utf8').slice(-400)}`);
  }
  return {
    file: join(TOKENS, 'dpop.proofs'),
    token: readFileSync(join(TOKENS, 'dpop.token'), 'utf8').trim(),
  };
}

/** The i-th token of the cached file of `alg`. */
function tokenAt(alg, i) {
  const file = join(TOKENS, `${alg.toLowerCase()}.tokens`);
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(4096);
    const n = readSyncAt(fd, head, 0);
    const width = head.subarray(0, n).indexOf(10) + 1;
    const buf = Buffer.alloc(width - 1);
    readSyncAt(fd, buf, i * width);
    return buf.toString();
  } finally {
    closeSync(fd);
  }
}

function readSyncAt(fd, buf, pos) {
  return readSync(fd, buf, 0, buf.length, pos);
}

/**
 * mod_auth_openidc takes a JWKS URL for its resource-server mode only over https: this serves
 * the provider's /jwks at https://127.0.0.1:PORT/jwks (self-signed; Apache is told not to
 * validate it). Apache fetches it once at the first bearer request and caches the keys.
 */
async function startJwksMirror(h, idp, { key, cert }) {
  const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, async (req, res) => {
    try {
      const r = await fetch(`${idp.issuer}/jwks`);
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(await r.text());
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  const port = await h.freePort();
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  return `https://127.0.0.1:${port}/jwks`;
}

// In-process servers, closed at the end.
const servers = [];

/** Logs in as alice through `startUrl` with Chromium; returns the Cookie header value. */
async function browserLogin(h, browser, idp, startUrl, wanted) {
  const context = await h.newContext(browser);
  try {
    const page = await context.newPage();
    await page.goto(startUrl);
    await h.signInAtIdp(page, idp, 'alice');
    await page.waitForURL((u) => u.href === startUrl, { timeout: 10_000 });
    const cookies = (await context.cookies(startUrl)).filter((c) => wanted.test(c.name));
    if (!cookies.length) throw new Error(`no session cookie after logging in at ${startUrl}`);
    return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  rmSync(RUN, { recursive: true, force: true });
  mkdirSync(RUN, { recursive: true });
  mkdirSync(TOKENS, { recursive: true });
  if (!existsSync(BIN)) throw new Error(`portcullis binary missing at ${BIN} (run bench/run.sh)`);
  const idpModule = await import(pathToFileURL(join(SRC, 'tests/e2e/idp.mjs')));
  const h = await import(pathToFileURL(join(SRC, 'tests/e2e/harness.mjs')));
  const { API_AUDIENCE } = idpModule;

  // The tiny upstream.
  const www = join(RUN, 'www');
  mkdirSync(www, { recursive: true });
  const payload = `${'portcullis benchmark payload. '.repeat(10)}`.slice(0, PAYLOAD_BYTES - 1) + '\n';
  writeFileSync(join(www, 'payload.txt'), payload);
  const ports = {};
  for (const k of [
    'upstream', 'nginx', 'nginxTls', 'minimal', 'apache', 'portcullis', 'portcullisTls', 'metrics', 'front',
    'redis', 'portcullisRedis', 'portcullisRedisTls', 'metricsRedis',
    'checks', 'checksTls', 'checksExtAuthz', 'metricsChecks', 'idp',
  ]) {
    // Distinct: a port is free again the moment freePort lets it go.
    do ports[k] = await h.freePort(); while (Object.entries(ports).some(([o, p]) => o !== k && p === ports[k]));
  }
  const upstream = await startNginx(
    'upstream',
    render('upstream.nginx.conf', { DIR: join(RUN, 'upstream'), PORT: ports.upstream, WWW: www }),
    ports.upstream,
  );
  const tls = makeTlsCert();
  const nginx = await startNginx(
    'nginx',
    render('proxy.nginx.conf', {
      DIR: join(RUN, 'nginx'), PORT: ports.nginx, UPSTREAM_PORT: ports.upstream,
      TLS_PORT: ports.nginxTls, TLS_CERT: tls.cert, TLS_KEY: tls.key,
    }),
    ports.nginx,
  );

  // The identity provider (in this process; idle while measuring).
  const base = (port) => `http://127.0.0.1:${port}`;
  const idp = await idpModule.startIdp({
    redirectUris: [
      `${base(ports.portcullis)}/oauth2/callback`,
      `${base(ports.portcullisRedis)}/oauth2/callback`,
      `${base(ports.apache)}/app/redirect_uri`,
    ],
    postLogoutRedirectUris: [`${base(ports.portcullis)}/`],
    // Reserved with the others: on a port of its own choosing it could take one of theirs
    // before its owner starts (it once took the ext_authz listener's, and row 17 failed).
    port: ports.idp,
  });
  log(`identity provider at ${idp.issuer}`);

  // Keys and a first batch of tokens for the cold rows.
  const pool = {};
  for (const alg of ['RS256', 'ES256']) pool[alg] = await ensureTokens(alg, 1 + WARMUP_TOKEN_BUDGET);

  // portcullis.
  mkdirSync(join(RUN, 'portcullis'), { recursive: true });
  const pconf = join(RUN, 'portcullis', 'portcullis.toml');
  writeFileSync(pconf, render('portcullis.toml', {
    PORT: ports.portcullis,
    TLS_PORT: ports.portcullisTls,
    TLS_CERT: tls.cert,
    TLS_KEY: tls.key,
    METRICS_PORT: ports.metrics,
    UPSTREAM_PORT: ports.upstream,
    ISSUER: idp.issuer,
    CLIENT_ID: idp.clientId,
    CLIENT_SECRET: idp.clientSecret,
    SESSION_SECRET: randomBytes(32).toString('base64'),
    API_AUDIENCE,
    BENCH_ISSUER,
    BENCH_AUDIENCE,
    RS256_PUB: join(TOKENS, 'rs256.pub.pem'),
    ES256_PUB: join(TOKENS, 'es256.pub.pem'),
  }));
  const portcullisLog = join(RUN, 'portcullis', 'portcullis.log');
  const portcullisEnv = { ...process.env };
  delete portcullisEnv.RUST_LOG; // it would override [logging] level
  const portcullis = startProcess('portcullis', BIN, ['run', '--config', pconf], {
    logFile: portcullisLog,
    env: portcullisEnv,
  });
  await waitFor('portcullis /ready', 20_000, async () => {
    const r = await get(`${base(ports.portcullis)}/ready`);
    return r.status === 200 && r.body === 'OK';
  }, portcullis);
  const rssAtStart = rssMiB([portcullis.pid]);

  // Everything that may fail without stopping the other rows.
  const setupErrors = {};
  const attempt = async (key, fn) => {
    try {
      return await fn();
    } catch (e) {
      checkInterrupted();
      setupErrors[key] = e.message.split('\n')[0];
      log(`  ${key}: ${setupErrors[key]}`);
      return undefined;
    }
  };

  // Row 5b: a second portcullis with the same configuration but sessions in Redis (Debian's
  // redis-server on loopback, no persistence).
  const redisServer = startProcess('redis', 'redis-server', [
    '--port', String(ports.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', RUN,
  ]);
  const withRedis = await attempt('portcullis with redis', async () => {
    const dir = join(RUN, 'portcullis-redis');
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'portcullis.toml');
    let text = readFileSync(pconf, 'utf8')
      .replaceAll(`127.0.0.1:${ports.portcullis}`, `127.0.0.1:${ports.portcullisRedis}`)
      .replace(`127.0.0.1:${ports.portcullisTls}`, `127.0.0.1:${ports.portcullisRedisTls}`)
      .replace(`127.0.0.1:${ports.metrics}`, `127.0.0.1:${ports.metricsRedis}`);
    text = replaceOnce(text, '[session]\n', '[session]\nstore = "redis"\n', 'portcullis.toml');
    text += `\n[session.redis]\nurl = "redis://127.0.0.1:${ports.redis}/0"\n`;
    writeFileSync(conf, text);
    const p = startProcess('portcullis-redis', BIN, ['run', '--config', conf], {
      logFile: join(dir, 'portcullis.log'),
      env: portcullisEnv,
    });
    await waitFor('portcullis (redis) /ready', 20_000, async () => {
      const r = await get(`${base(ports.portcullisRedis)}/ready`);
      return r.status === 200 && r.body === 'OK';
    }, p);
    return p;
  });


  // Rows 16 and 17: a third portcullis with the same configuration (and session secret: the
  // main login's cookie opens here too) that trusts 127.0.0.1, where wrk and h2load ask from,
  // and serves Envoy's ext_authz. It answers checks only; nothing is forwarded.
  const checks = await attempt('portcullis for checks', async () => {
    const dir = join(RUN, 'portcullis-checks');
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'portcullis.toml');
    let text = readFileSync(pconf, 'utf8')
      .replaceAll(`127.0.0.1:${ports.portcullis}`, `127.0.0.1:${ports.checks}`)
      .replace(`127.0.0.1:${ports.portcullisTls}`, `127.0.0.1:${ports.checksTls}`)
      .replace(`127.0.0.1:${ports.metrics}`, `127.0.0.1:${ports.metricsChecks}`);
    text = replaceOnce(text, 'trusted_proxies = ["127.0.0.2"]', 'trusted_proxies = ["127.0.0.1"]', 'portcullis.toml');
    text = replaceOnce(
      text, '[server]\n', `[server]\next_authz_listen = "127.0.0.1:${ports.checksExtAuthz}"\n`, 'portcullis.toml',
    );
    writeFileSync(conf, text);
    const p = startProcess('portcullis-checks', BIN, ['run', '--config', conf], {
      logFile: join(dir, 'portcullis.log'),
      env: portcullisEnv,
    });
    await waitFor('portcullis (checks) /ready', 20_000, async () => {
      const r = await get(`${base(ports.checks)}/ready`);
      return r.status === 200 && r.body === 'OK';
    }, p);
    return p;
  });

  // Row 2m: a minimal pingora proxy (bench/minimal_proxy.rs, built with portcullis), with
  // portcullis' runtime settings: what pingora itself costs.
  const minimal = await attempt('minimal pingora proxy', async () => {
    const p = startProcess('minimal-proxy', MINIMAL_BIN, [
      `127.0.0.1:${ports.minimal}`, `127.0.0.1:${ports.upstream}`, String(availableParallelism()), 'steal',
    ]);
    await waitFor('minimal pingora proxy', 10_000, async () => (await get(`${base(ports.minimal)}/`)).status === 200, p);
    return p;
  });

  // nginx auth_request in front of portcullis: the recipe from deploy/nginx (HEAD's copy).
  const front = await attempt('front', async () => {
    const recipe = join(SRC, 'deploy/nginx/auth-request.conf');
    let site = readFileSync(recipe, 'utf8');
    const what = 'deploy/nginx/auth-request.conf';
    site = replaceOnce(site, 'listen 80;', `listen 127.0.0.1:${ports.front} backlog=4096;`, what);
    site = replaceOnce(site, 'server_name app.example.com;', 'server_name 127.0.0.1;', what);
    // Keep-alive to portcullis and to the application, as row 2 has it.
    site = replaceOnce(site, 'server 127.0.0.1:4180;', `server 127.0.0.1:${ports.portcullis};\n    keepalive 64;`, what);
    site = replaceOnce(site, 'server 127.0.0.1:8080;', `server 127.0.0.1:${ports.upstream};\n    keepalive 64;`, what);
    const keepalive = '\n        proxy_http_version 1.1;\n        proxy_set_header Connection "";';
    site = replaceOnce(
      site,
      'proxy_pass_request_body off;',
      // From 127.0.0.2, portcullis' only trusted proxy.
      `proxy_pass_request_body off;${keepalive}\n        proxy_bind 127.0.0.2;`,
      what,
    );
    site = replaceOnce(site, 'proxy_pass http://app;', `proxy_pass http://app;${keepalive}`, what);
    const dir = join(RUN, 'front');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'site.conf'), site);
    return startNginx('front', render('front.nginx.conf', { DIR: dir }), ports.front, '/oauth2/userinfo');
  });

  // Apache httpd + mod_auth_openidc.
  const apache = await attempt('apache', async () => {
    const dir = join(RUN, 'apache');
    mkdirSync(join(dir, 'run'), { recursive: true });
    const conf = join(dir, 'apache2.conf');
    writeFileSync(conf, render('apache.conf', {
      DIR: dir,
      PORT: ports.apache,
      MODULES: APACHE_MODULES,
      UPSTREAM_PORT: ports.upstream,
      ISSUER: idp.issuer,
      JWKS_URL: await startJwksMirror(h, idp, tls),
      CLIENT_ID: idp.clientId,
      CLIENT_SECRET: idp.clientSecret,
      PASSPHRASE: randomBytes(24).toString('hex'),
      API_AUDIENCE,
    }));
    const syntax = spawnSync(APACHE, ['-t', '-f', conf], { encoding: 'utf8' });
    if (syntax.status !== 0) throw new Error(`apache2 -t: ${`${syntax.stderr}${syntax.stdout}`.trim()}`);
    const p = startProcess('apache', APACHE, ['-f', conf, '-DFOREGROUND'], {
      logFile: join(dir, 'stderr.log'),
    });
    await waitFor(`Apache on port ${ports.apache}`, 10_000, async () => {
      await get(`${base(ports.apache)}/app/`);
      return true;
    }, p);
    return p;
  });

  // Sessions: log in through portcullis and through Apache with Chromium.
  log('logging in with Chromium');
  checkInterrupted();
  const browser = await h.launchBrowser();
  const mine = new Set(procs.map((p) => p.pid));
  for (const pid of descendants([process.pid])) {
    if (pid !== process.pid && !mine.has(pid)) extraPids.add(pid);
  }
  const appPath = '/app/bench.txt';
  let portcullisCookie;
  let redisCookie;
  let apacheCookie;
  try {
    portcullisCookie = await attempt('portcullis login', () =>
      browserLogin(h, browser, idp, `${base(ports.portcullis)}${appPath}`, /^_portcullis(_\d+)?$/),
    );
    if (withRedis) {
      redisCookie = await attempt('portcullis (redis) login', () =>
        browserLogin(h, browser, idp, `${base(ports.portcullisRedis)}${appPath}`, /^_portcullis(_\d+)?$/),
      );
    }
    if (apache) {
      apacheCookie = await attempt('apache login', () =>
        browserLogin(h, browser, idp, `${base(ports.apache)}${appPath}`, /^mod_auth_openidc_session/),
      );
    }
  } finally {
    await browser.close();
  }

  // Row 17's request: one CheckRequest with the session cookie, built with Envoy's protos
  // (tests/scripts/ext_authz_check.py, PyPI envoy-data-plane in .work/python).
  const checkBody = join(RUN, 'check-request.grpc');
  if (checks && portcullisCookie) {
    await attempt('ext_authz request', async () => {
      const made = spawnSync('python3', [
        join(SRC, 'tests/scripts/ext_authz_check.py'), 'payload', checkBody, portcullisCookie, appPath,
      ], { env: { ...process.env, PYTHONPATH: join(WORK, 'python') }, encoding: 'utf8' });
      if (made.status !== 0) throw new Error(`ext_authz_check.py payload: ${made.stderr.slice(-400)}`);
    });
  }

  // The rows.
  const tlsBase = (port) => `https://127.0.0.1:${port}`;
  const bearer = { token: await idpModule.machineToken(idp) };
  const cookieRows = (cookie, why) => (cookie ? null : why);
  const rows = [
    {
      id: '1', name: 'upstream direct (nginx, static file)',
      url: `${base(ports.upstream)}${appPath}`, cpu: () => [upstream.pid],
    },
    {
      id: '2', name: 'nginx proxy_pass, no authentication',
      url: `${base(ports.nginx)}${appPath}`, cpu: () => [nginx.pid],
    },
    {
      id: '2m', name: 'minimal pingora proxy (a few lines of ProxyHttp), no authentication',
      url: `${base(ports.minimal)}${appPath}`, cpu: () => [minimal.pid],
      broken: () => setupErrors['minimal pingora proxy'],
    },
    {
      id: '3', name: 'Apache + mod_auth_openidc, session cookie',
      url: `${base(ports.apache)}${appPath}`, cpu: () => [apache.pid],
      headers: () => [`Cookie: ${apacheCookie}`], deny: [302, 401],
      broken: () => setupErrors.apache ?? cookieRows(apacheCookie, setupErrors['apache login']),
    },
    {
      id: '3b', name: 'Apache + mod_auth_openidc, Bearer JWT (ES256)',
      url: `${base(ports.apache)}/api/bench.txt`, cpu: () => [apache.pid],
      headers: () => [`Authorization: Bearer ${bearer.token}`], deny: [401],
      broken: () => setupErrors.apache,
    },
    {
      id: '4', name: 'portcullis, public route', baseline: '2m',
      url: `${base(ports.portcullis)}/public/bench.txt`, cpu: () => [portcullis.pid], metrics: true,
    },
    {
      id: '5', name: 'portcullis, session cookie',
      url: `${base(ports.portcullis)}${appPath}`, cpu: () => [portcullis.pid], metrics: true,
      headers: () => [`Cookie: ${portcullisCookie}`], deny: [401],
      broken: () => cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
    {
      id: '5b', name: 'portcullis, session in Redis (server-side store)', baseline: '5',
      url: `${base(ports.portcullisRedis)}${appPath}`, cpu: () => [withRedis.pid, redisServer.pid],
      metrics: true, metricsPort: ports.metricsRedis,
      headers: () => [`Cookie: ${redisCookie}`], deny: [401],
      broken: () => setupErrors['portcullis with redis'] ?? cookieRows(redisCookie, setupErrors['portcullis (redis) login']),
    },
    {
      id: '6', name: 'portcullis, Bearer JWT (ES256), warm cache',
      url: `${base(ports.portcullis)}/api/bench.txt`, cpu: () => [portcullis.pid], metrics: true,
      headers: () => [`Authorization: Bearer ${bearer.token}`], deny: [401],
    },
    {
      id: '7', name: 'portcullis, Bearer RS256, new token per request',
      url: `${base(ports.portcullis)}/api/bench.txt`, cpu: () => [portcullis.pid], metrics: true,
      cold: 'RS256', deny: [401],
    },
    {
      id: '7b', name: 'portcullis, Bearer ES256, new token per request',
      url: `${base(ports.portcullis)}/api/bench.txt`, cpu: () => [portcullis.pid], metrics: true,
      cold: 'ES256', deny: [401],
    },
    {
      id: '8', name: 'nginx auth_request + portcullis /oauth2/auth, cookie',
      url: `${base(ports.front)}${appPath}`, cpu: () => [front.pid, portcullis.pid], metrics: true,
      headers: () => [`Cookie: ${portcullisCookie}`], deny: [401],
      broken: () => setupErrors.front ?? cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
    {
      id: '9', name: 'nginx TLS proxy_pass, keep-alive',
      url: `${tlsBase(ports.nginxTls)}${appPath}`, cpu: () => [nginx.pid],
    },
    {
      id: '10', name: 'portcullis TLS, session cookie, keep-alive', baseline: '9',
      url: `${tlsBase(ports.portcullisTls)}${appPath}`, cpu: () => [portcullis.pid], metrics: true,
      headers: () => [`Cookie: ${portcullisCookie}`], deny: [401],
      broken: () => cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
    {
      id: '11', name: 'nginx TLS proxy_pass, new connection per request',
      url: `${tlsBase(ports.nginxTls)}${appPath}`, cpu: () => [nginx.pid],
      headers: () => ['Connection: close'],
    },
    {
      id: '12', name: 'portcullis TLS, session cookie, new connection per request', baseline: '11',
      url: `${tlsBase(ports.portcullisTls)}${appPath}`, cpu: () => [portcullis.pid], metrics: true,
      headers: () => [`Cookie: ${portcullisCookie}`, 'Connection: close'], deny: [401],
      broken: () => cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
    {
      id: '13', name: `nginx HTTP/2 (TLS) proxy_pass, ${H2_STREAMS} streams per connection`,
      url: `${tlsBase(ports.nginxTls)}${appPath}`, cpu: () => [nginx.pid], h2: true,
    },
    {
      id: '14', name: `portcullis HTTP/2 (TLS), session cookie, ${H2_STREAMS} streams per connection`,
      baseline: '13', h2: true,
      url: `${tlsBase(ports.portcullisTls)}${appPath}`, cpu: () => [portcullis.pid], metrics: true,
      headers: () => [`Cookie: ${portcullisCookie}`], deny: [401],
      broken: () => cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
    {
      id: '15', name: 'portcullis, DPoP-bound token (ES256 proof verified per request)', baseline: '6',
      url: `${base(ports.portcullis)}/api/bench.txt`, cpu: () => [portcullis.pid], metrics: true,
      dpop: true, deny: [401],
    },
    {
      id: '16', name: 'portcullis /oauth2/auth check alone, session cookie (a trusted front proxy asks)',
      url: `${base(ports.checks)}/oauth2/auth`, cpu: () => [checks.pid],
      metrics: true, metricsPort: ports.metricsChecks, checkOnly: 202,
      headers: () => [
        `Cookie: ${portcullisCookie}`, `X-Original-URI: ${appPath}`, 'X-Original-Method: GET',
        'X-Forwarded-Host: app.example.com',
      ],
      // Without the original request reported: refused (nginx takes 401 and 403 alike).
      deny: [401, 403],
      broken: () => setupErrors['portcullis for checks'] ?? cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
    {
      id: '17', name: `portcullis ext_authz gRPC Check, session cookie (h2c, ${H2_STREAMS} streams per connection)`,
      baseline: '16', h2: true, grpc: true, checkOnly: 200,
      url: `${base(ports.checksExtAuthz)}/envoy.service.auth.v3.Authorization/Check`, cpu: () => [checks.pid],
      metrics: true, metricsPort: ports.metricsChecks, body: checkBody,
      headers: () => ['content-type: application/grpc', 'te: trailers'],
      broken: () =>
        setupErrors['portcullis for checks'] ?? setupErrors['ext_authz request'] ??
        cookieRows(portcullisCookie, setupErrors['portcullis login']),
    },
  ];
  // `--rows storm` (alone or with others) runs the refresh storm; without --rows it always runs.
  const wantStorm = !opts.rows || opts.rows.includes('storm');
  if (opts.rows) {
    const unknown = opts.rows.filter((id) => id !== 'storm' && !rows.some((r) => r.id === id));
    if (unknown.length) throw new Error(`--rows: no row ${unknown.join(', ')}`);
    rows.splice(0, rows.length, ...rows.filter((r) => opts.rows.includes(r.id)));
  }
  for (const row of rows) {
    row.rounds = [];
    row.failure = row.broken?.() ?? null;
  }

  // Token slices: token 0 is for the check, then the warm-up, then one slice per round.
  const cursor = { RS256: 1, ES256: 1 };
  const slice = (alg, perThread) => {
    const start = cursor[alg];
    cursor[alg] += perThread * WRK_THREADS;
    return { start, perThread };
  };

  // Check every row: 200 with the payload with its credentials, refused without.
  log('checking every row');
  for (const row of rows) {
    if (row.failure) continue;
    try {
      const headers = {};
      for (const hd of row.headers?.() ?? []) {
        const i = hd.indexOf(':');
        headers[hd.slice(0, i)] = hd.slice(i + 1).trim();
      }
      if (row.cold) headers.Authorization = `Bearer ${tokenAt(row.cold, 0)}`;
      if (row.dpop) {
        const proofs = await ensureProofs(row, 1);
        headers.Authorization = `DPoP ${proofs.token}`;
        headers.DPoP = readFileSync(proofs.file, 'utf8').split('\n')[0];
      }
      if (row.grpc) {
        // Allowed: gRPC OK, and the identity headers to set are in the answer.
        const r = await grpcCall(row.url, row.body);
        if (r.status !== 200 || String(r.grpcStatus) !== '0' || !r.body.includes('x-forwarded-user')) {
          throw new Error(`Check answers ${r.status}, grpc-status ${r.grpcStatus}, without an allowed identity`);
        }
        continue;
      }
      const ok = await get(row.url, headers);
      const expected = row.checkOnly ?? 200;
      if (ok.status !== expected || (!row.checkOnly && ok.body !== payload)) {
        throw new Error(`answers ${ok.status} with its credentials: ${ok.body.slice(0, 120)}`);
      }
      if (row.deny) {
        const no = await get(row.url, { accept: '*/*' });
        if (!row.deny.includes(no.status)) {
          throw new Error(`answers ${no.status} without credentials (expected ${row.deny.join('/')})`);
        }
      }
    } catch (e) {
      row.failure = `check failed: ${e.message}`;
      log(`  row ${row.id}: ${row.failure}`);
    }
  }
  const rssIdle = rssMiB([portcullis.pid]);

  // One measurement of one row.
  // RSS after the first 100 k and the first 1 M requests (mixed rows, as they come).
  const rssAt = new Map();
  async function measure(row, seconds, tokenSlice) {
    const roots = row.cpu();
    const env = {};
    if (row.cold) {
      Object.assign(env, {
        BENCH_TOKENS: join(TOKENS, `${row.cold.toLowerCase()}.tokens`),
        BENCH_TOKEN_START: String(tokenSlice.start),
        BENCH_TOKEN_COUNT: String(tokenSlice.perThread),
        BENCH_PATH: new URL(row.url).pathname,
      });
    }
    if (row.dpop) {
      // Fresh proofs for this run only: a proof is good for proof_lifetime after its iat.
      const proofs = await ensureProofs(row, tokenSlice.perThread * WRK_THREADS);
      Object.assign(env, {
        BENCH_TOKENS: proofs.file,
        BENCH_TOKEN_START: '0',
        BENCH_TOKEN_COUNT: String(tokenSlice.perThread),
        BENCH_PATH: new URL(row.url).pathname,
        BENCH_DPOP_TOKEN: proofs.token,
      });
    }
    const upBefore = await upstreamRequests(ports.upstream);
    const mBefore = row.metrics ? await portcullisMetrics(row.metricsPort ?? ports.metrics) : null;
    const cpuBefore = cpuSeconds(roots);
    const w = row.h2
      ? await runH2load({ url: row.url, headers: row.headers?.() ?? [], body: row.body, seconds })
      : await runWrk({ url: row.url, headers: row.headers?.() ?? [], env, seconds });
    checkInterrupted();
    const cpu = cpuSeconds(roots) - cpuBefore;
    const mAfter = row.metrics ? await portcullisMetrics(row.metricsPort ?? ports.metrics) : null;
    if (mAfter) {
      for (const at of RSS_CHECKPOINTS) {
        if (mAfter.requests >= at && !rssAt.has(at)) {
          rssAt.set(at, { requests: mAfter.requests, mib: rssMiB([portcullis.pid]) });
        }
      }
    }
    // The stub_status request that reads the count is itself counted.
    const served = (await upstreamRequests(ports.upstream)) - upBefore - 1;
    const errors = w.connect + w.read + w.write + w.timeout;
    // Responses that did not come from the upstream were answered by the proxy itself
    // (a 302 or 401 wrk does not count as an error); wrk counts >= 400 itself.
    // A check-only row's answers never come from the upstream.
    const non2xx = row.checkOnly ? w.status : Math.max(w.status, w.requests - served);
    const m = {
      rps: w.requests / (w.duration_us / 1e6),
      p50: w.p50_us,
      p99: w.p99_us,
      cpuUs: (cpu / w.requests) * 1e6,
      requests: w.requests,
      non2xx,
      errors,
      repeats: w.repeats,
      decisionUs:
        mBefore && mAfter && mAfter.decisionCount > mBefore.decisionCount
          ? ((mAfter.decisionSum - mBefore.decisionSum) / (mAfter.decisionCount - mBefore.decisionCount)) * 1e6
          : NaN,
    };
    const problems = [];
    if (w.requests === 0) problems.push('no request completed');
    if (non2xx > w.requests * MAX_NON_2XX) {
      problems.push(`${non2xx} non-2xx of ${w.requests} (${((100 * non2xx) / w.requests).toFixed(2)} %)`);
    }
    if (errors > w.requests * MAX_NON_2XX) problems.push(`${errors} socket errors/timeouts`);
    if (w.repeats > 0) problems.push(`token pool exhausted: ${w.repeats} requests repeated a token`);
    m.failure = problems.length ? problems.join('; ') : null;
    return m;
  }

  // Warm-up: every row once, briefly; the cold rows' speed sizes their token slices.
  log(`warm-up (${WARMUP_SECONDS} s per row)`);
  const warmRps = {};
  for (const row of rows) {
    if (row.failure || stopping) continue;
    try {
      const s = row.cold
        ? slice(row.cold, Math.floor(WARMUP_TOKEN_BUDGET / WRK_THREADS))
        : row.dpop
          ? { start: 0, perThread: Math.floor(WARMUP_PROOFS / WRK_THREADS) }
          : null;
      const m = await measure(row, WARMUP_SECONDS, s);
      if (row.cold) warmRps[row.cold] = m.rps;
      if (row.dpop) warmRps.dpop = m.rps;
      if (m.failure) log(`  row ${row.id} (warm-up): ${m.failure}`);
    } catch (e) {
      checkInterrupted();
      row.failure = `warm-up: ${e.message}`;
      log(`  row ${row.id}: ${row.failure}`);
    }
  }
  // Token slices per round: the fastest rate seen for the algorithm (in this warm-up, in an
  // earlier round, or in an earlier run, remembered in .work/tokens/observed.json) times the
  // duration, with a margin; tokens are minted whenever the pool would not last, but never
  // while a row is measured.
  const observedFile = join(TOKENS, 'observed.json');
  const observed = existsSync(observedFile) ? JSON.parse(readFileSync(observedFile, 'utf8')) : {};
  const fastest = {};
  for (const alg of ['RS256', 'ES256']) fastest[alg] = Math.max(warmRps[alg] ?? 0, observed[alg] ?? 0);
  writeFileSync(observedFile, JSON.stringify({ ...observed, ...fastest }));
  const perThread = {};
  async function sizeTokens(roundsLeft) {
    for (const alg of ['RS256', 'ES256']) {
      if (!rows.some((r) => r.cold === alg && !r.failure)) continue;
      const rps = fastest[alg] || 20_000;
      perThread[alg] = Math.ceil((rps * opts.duration * TOKEN_MARGIN) / WRK_THREADS) + 1000;
      const need = cursor[alg] + roundsLeft * WRK_THREADS * perThread[alg];
      if (need > MAX_TOKENS) {
        for (const row of rows.filter((r) => r.cold === alg)) {
          row.failure ??=
            `would need ${fmtInt(need)} ${alg} tokens (more than ${fmtInt(MAX_TOKENS)}, about ` +
            `${Math.round(MAX_TOKENS / 1700)} MB): use a shorter --duration or fewer --rounds`;
        }
        continue;
      }
      if (pool[alg] < need) pool[alg] = await ensureTokens(alg, need);
    }
  }
  await sizeTokens(opts.rounds);

  // The rounds, interleaved.
  for (let r = 1; r <= opts.rounds && !stopping; r++) {
    log(`round ${r}/${opts.rounds}`);
    bearer.token = await idpModule.machineToken(idp); // a fresh one: they live 10 minutes
    if (r > 1) await sizeTokens(opts.rounds - r + 1);
    for (const row of rows) {
      if (row.failure || stopping) continue;
      let m;
      try {
        const dpopSlice = row.dpop
          ? { start: 0, perThread: Math.ceil(((warmRps.dpop || 10_000) * opts.duration * TOKEN_MARGIN) / WRK_THREADS) + 1000 }
          : null;
        m = await measure(row, opts.duration, row.cold ? slice(row.cold, perThread[row.cold]) : dpopSlice);
        if (row.dpop && Number.isFinite(m.rps)) warmRps.dpop = Math.max(warmRps.dpop ?? 0, m.rps);
      } catch (e) {
        checkInterrupted();
        m = { failure: e.message.split('\n')[0] };
      }
      row.rounds.push(m);
      if (row.cold && Number.isFinite(m.rps) && m.rps > fastest[row.cold]) {
        fastest[row.cold] = m.rps;
        writeFileSync(observedFile, JSON.stringify({ ...observed, ...fastest }));
      }
      log(
        `  ${row.id.padEnd(3)} ${fmtInt(m.rps).padStart(7)} req/s  p50 ${fmtMs(m.p50)}  p99 ${fmtMs(m.p99)}` +
          `  ${fmtUs(m.cpuUs)} µs CPU/req${Number.isFinite(m.decisionUs) ? `  decision ${fmtUs(m.decisionUs)} µs` : ''}` +
          (m.failure ? `  FAILED: ${m.failure}` : ''),
      );
      await sleep(300);
    }
  }
  const rssAfter = rssMiB([portcullis.pid]);

  // The latency rows: some of the rows above again, at a fixed rate (oha), interleaved.
  const latency = LATENCY_ROWS.map((id) => rows.find((r) => r.id === id)).filter((r) => r && !r.failure)
    .map((row) => ({ row, rounds: [] }));
  for (let r = 1; r <= opts.rounds && latency.length && !stopping; r++) {
    log(`latency round ${r}/${opts.rounds} (${fmtInt(LATENCY_RATE)} requests/s)`);
    for (const l of latency) {
      if (stopping) break;
      let m;
      try {
        m = await runOha({
          url: l.row.url, headers: l.row.headers?.() ?? [], seconds: opts.duration, rate: LATENCY_RATE,
        });
        const problems = [];
        if (m.requests === 0) problems.push('no request completed');
        if (m.non2xx > m.requests * MAX_NON_2XX) problems.push(`${m.non2xx} non-2xx of ${m.requests}`);
        if (m.errors > m.requests * MAX_NON_2XX) problems.push(`${m.errors} errors`);
        if (m.rps < LATENCY_RATE * 0.95) problems.push(`served ${fmtInt(m.rps)}/s of ${fmtInt(LATENCY_RATE)}/s`);
        m.failure = problems.length ? problems.join('; ') : null;
      } catch (e) {
        checkInterrupted();
        m = { failure: e.message.split('\n')[0] };
      }
      l.rounds.push(m);
      log(
        `  ${l.row.id.padEnd(3)} p50 ${fmtMs(m.p50)}  p99 ${fmtMs(m.p99)}  p99.9 ${fmtMs(m.p999)}` +
          (m.failure ? `  FAILED: ${m.failure}` : ''),
      );
      await sleep(300);
    }
  }

  // The refresh storm, after the throughput rows (its processes start only now).
  let storms = [];
  if (wantStorm && !stopping) {
    log('refresh storm');
    storms =
      (await attempt('refresh storm', () =>
        refreshStorms({
          h, idpModule, bin: BIN, run: RUN, env: portcullisEnv, startProcess, waitFor, browserLogin, log,
          upstreamPort: ports.upstream, redisPort: ports.redis, path: appPath,
          adopt: () => {
            const ours = new Set(procs.map((p) => p.pid));
            for (const pid of descendants([process.pid])) {
              if (pid !== process.pid && !ours.has(pid)) extraPids.add(pid);
            }
          },
        }),
      )) ?? [{ name: 'refresh storm', rounds: [], failure: setupErrors['refresh storm'] }];
  }
  const rssOthers = {
    'nginx proxy_pass (row 2)': rssMiB([nginx.pid]),
    ...(apache ? { 'Apache + mod_auth_openidc (row 3)': rssMiB([apache.pid]) } : {}),
    ...(front ? { 'nginx auth_request front (row 8, without portcullis)': rssMiB([front.pid]) } : {}),
  };

  // Anything the servers complained about.
  const complaints = [];
  const portcullisLines = readFileSync(portcullisLog, 'utf8').split('\n').filter(Boolean);
  // pingora logs a client that closes its connection with a request in flight as an ERROR;
  // wrk does exactly that when a run ends. Those are counted apart from anything else.
  const atStop = portcullisLines.filter((l) => l.includes('Downstream ConnectionClosed'));
  const other = portcullisLines.filter((l) => !l.includes('Downstream ConnectionClosed'));
  if (atStop.length) {
    complaints.push(
      `portcullis logged ${atStop.length} "Fail to proxy: Downstream ConnectionClosed … Prematurely ` +
        'before response header is sent" error(s): wrk closing its connections with requests in ' +
        'flight when a run ends.',
    );
  }
  if (other.length) {
    complaints.push(
      `portcullis logged ${other.length} other line(s) at warn or above, e.g.: ${other[0].slice(0, 300)}`,
    );
  }
  for (const name of ['upstream', 'nginx', 'front', 'apache']) {
    const f = join(RUN, name, 'error.log');
    if (!existsSync(f)) continue;
    const lines = readFileSync(f, 'utf8').split('\n').filter((l) => /\[(error|crit|alert|emerg)\]|:error\]/.test(l));
    if (lines.length) complaints.push(`${name} error.log: ${lines.length} error line(s), e.g.: ${lines[0].slice(0, 300)}`);
  }

  checkInterrupted();
  const report = buildReport({
    rows, latency, storms, rssAtStart, rssIdle, rssAfter, rssAt, rssOthers, complaints, elapsed: Date.now() - t0,
  });
  // A run of some rows only does not replace the full table.
  const resultsFile = opts.rows ? join(WORK, 'results.md') : RESULTS;
  writeFileSync(resultsFile, report);
  if (!opts.rows) {
    // The README's Performance section quotes the latest full run.
    const q = spawnSync(process.execPath, [join(HERE, 'readme.mjs')], { encoding: 'utf8' });
    log((q.stdout + q.stderr).trim());
  }
  log(`\n${report}`);
  log(`written to ${resultsFile}`);
  await idp.close();
  for (const server of servers) server.close();
}

// ---------------------------------------------------------------------------------------------
// The report.

const fmtInt = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const fmtMs = (us) => (Number.isFinite(us) ? `${(us / 1000).toFixed(2)} ms` : '—');
const fmtUs = (x) => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '—');
const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}` : '—');

/** The latency rows' table: each row's percentiles and what they add to the upstream's own. */
function latencyReport(latency) {
  for (const l of latency) {
    const good = l.rounds.filter((m) => !m.failure);
    const bad = l.rounds.filter((m) => m.failure);
    for (const k of ['p50', 'p99', 'p999', 'rps']) l[k] = median(good.map((m) => m[k]));
    l.failure = bad.length
      ? `${bad.length} of ${l.rounds.length} rounds failed: ${[...new Set(bad.map((m) => m.failure))].join('; ')}`
      : null;
  }
  const base = latency.find((l) => l.row.id === LATENCY_BASE && !l.failure);
  const added = (l, k) => (base && l !== base ? fmtMs(l[k] - base[k]) : '—');
  const lines = [
    `Latency at a fixed rate: ${fmtInt(LATENCY_RATE)} requests/s for ${opts.duration} s per round ` +
      `(oha, open loop, ${opts.connections} connections, \`--latency-correction\`), ${opts.rounds} rounds ` +
      `interleaved, medians. "Added" subtracts row ${LATENCY_BASE}'s percentile, the upstream answering directly.`,
    '',
    '| # | Row | p50 | p99 | p99.9 | added p50 | added p99 | added p99.9 | served req/s | status |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const l of latency) {
    const status = l.failure ? `**FAILED**: ${l.failure.replaceAll('|', '\\|')}` : 'ok';
    lines.push(
      `| ${l.row.id} | ${l.row.name} | ${fmtMs(l.p50)} | ${fmtMs(l.p99)} | ${fmtMs(l.p999)} | ` +
        `${added(l, 'p50')} | ${added(l, 'p99')} | ${added(l, 'p999')} | ${fmtInt(l.rps)} | ${status} |`,
    );
  }
  return lines;
}

/** The performance targets (issue 17), each a ratio of two rows of this run. */
function targetsReport(byId, ok, ratio) {
  const cpu = (a, b) => (ok(byId[a]) && ok(byId[b]) ? byId[a].cpuUs / byId[b].cpuUs : NaN);
  const targets = [
    ['public route ÷ nginx proxy_pass, req/s', '4 ÷ 2', ratio(byId['4'], '2'), '≥', 0.8],
    ['public route ÷ nginx proxy_pass, CPU µs per request', '4 ÷ 2', cpu('4', '2'), '≤', 1.25],
    ['session cookie ÷ public route', '5 ÷ 4', ratio(byId['5'], '4'), '≥', 0.95],
    ['warm bearer ÷ public route', '6 ÷ 4', ratio(byId['6'], '4'), '≥', 0.95],
    ['cold RS256 bearer ÷ public route', '7 ÷ 4', ratio(byId['7'], '4'), '≥', 0.6],
    ['session cookie ÷ Apache + mod_auth_openidc', '5 ÷ 3', ratio(byId['5'], '3'), '≥', 4],
    ['session in Redis ÷ Apache + mod_auth_openidc', '5b ÷ 3', ratio(byId['5b'], '3'), '≥', 4],
    ['warm bearer ÷ Apache + mod_auth_openidc bearer', '6 ÷ 3b', ratio(byId['6'], '3b'), '≥', 4],
    ['cold RS256 bearer ÷ Apache + mod_auth_openidc bearer', '7 ÷ 3b', ratio(byId['7'], '3b'), '≥', 4],
    ['cold ES256 bearer ÷ Apache + mod_auth_openidc bearer', '7b ÷ 3b', ratio(byId['7b'], '3b'), '≥', 4],
    ['TLS keep-alive ÷ nginx TLS proxy_pass', '10 ÷ 9', ratio(byId['10'], '9'), '≥', 0.8],
    ['new TLS connections per second ÷ nginx\'s', '12 ÷ 11', ratio(byId['12'], '11'), '≥', 0.8],
    ['HTTP/2 ÷ nginx HTTP/2 (the TLS rows\' bar)', '14 ÷ 13', ratio(byId['14'], '13'), '≥', 0.8],
    ['session in Redis ÷ session cookie', '5b ÷ 5', ratio(byId['5b'], '5'), '≥', 0.9],
    ['minimal pingora proxy ÷ nginx proxy_pass (pingora\'s own cost; no target)', '2m ÷ 2', ratio(byId['2m'], '2'), '', NaN],
    ['public route ÷ minimal pingora proxy (what portcullis adds; no target)', '4 ÷ 2m', ratio(byId['4'], '2m'), '', NaN],
  ];
  const lines = [
    'Targets: each a ratio of two rows above, measured in the same rounds.',
    '',
    '| Target | rows | measured | goal | met |',
    '|---|---|---:|---:|---|',
  ];
  for (const [what, rows, x, cmp, goal] of targets) {
    const met = !Number.isFinite(x) || !cmp ? '—' : (cmp === '≥' ? x >= goal : x <= goal) ? 'yes' : '**no**';
    lines.push(`| ${what} | ${rows} | ${fmtRatio(x)} | ${cmp ? `${cmp} ${goal}` : '—'} | ${met} |`);
  }
  return lines;
}

function versionOf(cmd, args, pattern) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.match(pattern)?.[1] ?? '?';
}

function buildReport({ rows, latency, storms, rssAtStart, rssIdle, rssAfter, rssAt, rssOthers, complaints, elapsed }) {
  for (const row of rows) {
    const good = row.rounds.filter((m) => !m.failure);
    const bad = row.rounds.filter((m) => m.failure);
    row.rps = median(good.map((m) => m.rps));
    row.p50 = median(good.map((m) => m.p50));
    row.p99 = median(good.map((m) => m.p99));
    row.cpuUs = median(good.map((m) => m.cpuUs));
    row.decisionUs = median(good.map((m) => m.decisionUs));
    if (!row.failure && bad.length) {
      row.failure = bad.map((m) => m.failure).filter((v, i, a) => a.indexOf(v) === i).join('; ');
      row.failure = `${bad.length} of ${row.rounds.length} rounds failed: ${row.failure}`;
    }
  }
  const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
  const ok = (r) => r && !r.failure && Number.isFinite(r.rps);
  // Is the cold row really cold? Its decision must cost clearly more than the warm one's.
  for (const id of ['7', '7b']) {
    const cold = byId[id];
    const warm = byId['6'];
    if (ok(cold) && ok(warm) && !(cold.decisionUs > 3 * warm.decisionUs)) {
      cold.failure = `not clearly cold: decision ${fmtUs(cold.decisionUs)} µs vs ${fmtUs(warm.decisionUs)} µs warm`;
    }
  }
  const ratio = (r, ref) => (ok(r) && ok(byId[ref]) ? r.rps / byId[ref].rps : NaN);

  const cpuModel =
    readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m)?.[1]?.trim() ?? '?';
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const commit = process.env.BENCH_COMMIT ?? '?';
  const command =
    process.env.BENCH_COMMAND ??
    `node bench/orchestrate.mjs --rounds ${opts.rounds} --duration ${opts.duration} --connections ${opts.connections}`;
  const v = {
    nginx: versionOf(NGINX, ['-v'], /nginx\/(\S+)/),
    apache: versionOf(APACHE, ['-v'], /Apache\/(\S+)/),
    oidc: versionOf('dpkg-query', ['-W', '-f=${Version}', 'libapache2-mod-auth-openidc'], /^(\S+)/),
    wrk: versionOf('wrk', ['-v'], /wrk \D*(\d[\d.]*)/),
  };

  const lines = [];
  lines.push('# portcullis benchmark');
  lines.push('');
  lines.push(
    `${date} · ${availableParallelism()} cores (${cpuModel}) · Linux ${release()} · portcullis ${commit} ` +
      `(release build of the commit) · nginx ${v.nginx} · Apache ${v.apache} + mod_auth_openidc ${v.oidc} · wrk ${v.wrk}`,
  );
  lines.push('');
  lines.push(`Command: \`${command}\``);
  lines.push('');
  lines.push(
    `wrk -t${WRK_THREADS} -c${opts.connections} -d${opts.duration}s --latency, ${opts.rounds} rounds ` +
      `interleaved (every row once per round, in table order, after a ${WARMUP_SECONDS} s warm-up of each); ` +
      `medians over the rounds.${opts.rows ? ` Only rows ${opts.rows.join(', ')} (--rows).` : ''} ` +
      `Time: ${(elapsed / 1000).toFixed(0)} s for the benchmark itself` +
      (process.env.BENCH_STARTED
        ? `, ${((Date.now() - Number(process.env.BENCH_STARTED)) / 1000).toFixed(0)} s for the whole command (checking installs and the build included).`
        : '.'),
  );
  lines.push('');
  lines.push(
    '| # | Row | req/s | × row 2 | × row 4 | × baseline | p50 | p99 | CPU µs/req | auth µs | req/s by round | status |',
  );
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const r of rows) {
    const status = r.failure ? `**FAILED**: ${r.failure.replaceAll('|', '\\|')}` : 'ok';
    const own = r.baseline ? `${fmtRatio(ratio(r, r.baseline))} × row ${r.baseline}` : '—';
    lines.push(
      `| ${r.id} | ${r.name} | ${fmtInt(r.rps)} | ${fmtRatio(ratio(r, '2'))} | ${fmtRatio(ratio(r, '4'))} | ${own} | ` +
        `${fmtMs(r.p50)} | ${fmtMs(r.p99)} | ${fmtUs(r.cpuUs)} | ${fmtUs(r.decisionUs)} | ` +
        `${r.rounds.map((m) => fmtInt(m.rps)).join(' / ') || '—'} | ${status} |`,
    );
  }
  lines.push('');
  lines.push(
    `portcullis memory (VmRSS): ${rssAtStart.toFixed(1)} MiB at start, ${rssIdle.toFixed(1)} MiB idle ` +
      `after the logins and checks, ${rssAfter.toFixed(1)} MiB after the run. For comparison, after the run: ` +
      Object.entries(rssOthers).map(([k, mib]) => `${k} ${mib.toFixed(1)} MiB`).join(', ') +
      ' (all processes of each).',
  );
  if (latency.length) {
    lines.push('');
    lines.push(...latencyReport(latency));
  }
  lines.push('');
  lines.push(...targetsReport(byId, ok, ratio));
  const [small, large] = RSS_CHECKPOINTS.map((at) => rssAt.get(at));
  lines.push('');
  lines.push(
    small && large
      ? `portcullis memory growth: ${small.mib.toFixed(1)} MiB after ${fmtInt(small.requests)} requests, ` +
          `${large.mib.toFixed(1)} MiB after ${fmtInt(large.requests)} ` +
          `(${(((large.mib - small.mib) / small.mib) * 100).toFixed(1)} %; the first samples at or past ` +
          `${RSS_CHECKPOINTS.map(fmtInt).join(' and ')} requests, all rows mixed as they ran).`
      : `portcullis memory growth: not measured, this run did not reach ${fmtInt(RSS_CHECKPOINTS[1])} ` +
          'portcullis requests (more rounds, rows or seconds would).',
  );
  if (storms.length) {
    lines.push('');
    lines.push(...stormReport(storms));
  }
  lines.push('');
  lines.push('Notes:');
  lines.push('');
  lines.push(
    `- Every row fetches the same ${PAYLOAD_BYTES}-byte static file from the same upstream, nginx on ` +
      'loopback without access log. A row fails when more than 0.1 % of its responses are not 2xx ' +
      '(wrk\'s count of >= 400, and every response that did not come from the upstream, counted ' +
      'with its stub_status) or when socket errors exceed 0.1 %; its numbers are then the medians ' +
      'of the rounds that passed.',
  );
  lines.push(
    '- CPU µs/req: user + system CPU of the proxy (all its processes: nginx master and workers, ' +
      'Apache\'s processes, portcullis; row 1: the upstream nginx; row 8: the front nginx and ' +
      'portcullis together) from /proc/PID/stat, divided by the completed requests. auth µs: ' +
      'portcullis\' own mean of `portcullis_auth_decision_seconds` over the row (from /metrics; ' +
      'in row 8, the decisions of /oauth2/auth).',
  );
  lines.push(
    '- Settings: portcullis with its defaults (threads = number of CPUs, verified-token cache of ' +
      '10000 entries) and `[logging] level = "warn"`, so the access log is not measured. nginx: ' +
      '`worker_processes auto`, `access_log off`, keep-alive to its upstreams (`keepalive 64`, ' +
      'HTTP/1.1). Apache: MPM event, 2 processes × 32 threads, no access log, unlimited keep-alive ' +
      'requests; mod_auth_openidc with its default server-side sessions (shared memory) for the ' +
      'cookie row and OAuth 2.0 resource-server mode (`AuthType oauth20`, JWKS, `Require claim aud:`) ' +
      'for the Bearer row. No proxy logs requests.',
  );
  lines.push(
    '- Row 2m is bench/minimal_proxy.rs, built by run.sh with portcullis: a `ProxyHttp` whose only ' +
      'method names the upstream, run with portcullis\' allocator (mimalloc) and runtime settings ' +
      '(threads = number of CPUs, work stealing). It is what pingora itself costs; row 4\'s ' +
      '"× baseline" is portcullis\' public route against it, so what portcullis adds is told apart ' +
      'from what pingora costs.',
  );
  lines.push(
    `- Latency rows: oha ${'1.12.0'} sends ${fmtInt(LATENCY_RATE)} requests/s on a schedule (open loop), ` +
      'unlike wrk, which sends the next request only when the last answer came (closed loop, so a ' +
      'slow answer also slows the load and hides itself). With `--latency-correction` each ' +
      'latency counts from when its request was due. A round fails when fewer than 95 % of the ' +
      'scheduled requests were answered.',
  );
  lines.push(
    '- TLS rows (9-14): nginx and portcullis serve the same self-signed P-256 certificate, ' +
      'TLS 1.3, ALPN h2 and http/1.1, each with its default session resumption (wrk reconnects ' +
      'with OpenSSL\'s defaults); "× baseline" compares each portcullis row with the nginx row of ' +
      'the same shape, measured in the same rounds. Rows 11 and 12 send `Connection: close`, so ' +
      'every request is a new TCP connection and TLS handshake (their req/s is handshakes/s). ' +
      `Rows 13 and 14 are driven by h2load (nghttp2) instead of wrk: ${WRK_THREADS} threads, the same ` +
      `connections, ${H2_STREAMS} streams in flight on each; their p50/p99 come from h2load's ` +
      'per-request log.',
  );
  lines.push(
    '- Row 5b is a second portcullis with the same configuration and `session.store = "redis"` ' +
      '(Debian\'s redis-server on loopback, no persistence, one multiplexed connection): each ' +
      'request opens the ticket cookie and GETs and decrypts the session from Redis. Its CPU ' +
      'column counts portcullis and redis-server together; "× baseline" is against row 5, the ' +
      'same login with the session in the cookie.',
  );
  lines.push(
    '- Row 15 sends one DPoP-bound access token (cnf.jkt, verified once and remembered like row ' +
      '6\'s) with a new ES256 proof on every request (bench/mint-dpop.mjs makes them before each ' +
      'run; `[bearer.dpop] proof_lifetime = "600s"`): each request pays a proof verification ' +
      '(signature, htm, htu, iat, ath, jkt) and a replay-cache insert. Its "× baseline" is against ' +
      'row 6, the same token path without a proof, and the difference of their auth µs is the ' +
      'cost of a proof.',
  );
  lines.push(
    '- Rows 16 and 17 measure authorization checks alone, with nothing forwarded: a third ' +
      'portcullis with the same configuration and session secret (the same cookie) that trusts ' +
      '127.0.0.1 and serves Envoy\'s ext_authz. Row 16 asks `/oauth2/auth` as nginx ' +
      '`auth_request` does (wrk, HTTP/1.1 keep-alive, the original request in `X-Original-URI`; ' +
      'answer 202). Row 17 asks the gRPC `envoy.service.auth.v3.Authorization/Check` as Envoy ' +
      'does (h2load over h2c, ' + H2_STREAMS + ' streams per connection) with one CheckRequest ' +
      'built by tests/scripts/ext_authz_check.py from Envoy\'s protos (PyPI envoy-data-plane); ' +
      'each answer carries the identity headers to set and the cookie to strip. Its "× ' +
      'baseline" is against row 16: checks per second of the two protocols in the same rounds. ' +
      'h2load counts HTTP statuses only, and a gRPC denial is HTTP 200 too: the row\'s check ' +
      'before the rounds confirms the request is allowed.',
  );
  lines.push(
    `- Refresh storm: its own oidc-provider (access tokens of ${STORM.ttl} s, \`rotateRefreshToken\`) ` +
      'and its own portcullis processes (one with the cookie store, three with sessions in the ' +
      'benchmark\'s redis-server, three with the cookie store and a `[session.revocation]` in it), ' +
      'started after the rows above. Each storm waits until the ' +
      'session\'s access token has expired, then sends the requests at once, each on a new ' +
      'connection (Node\'s http client, no keep-alive), and counts the refresh_token grants the ' +
      'provider issued: one per storm is right, more would spend a rotated refresh token twice ' +
      '(and sign the user out), and any answer other than 200 fails the setup.',
  );
  lines.push(
    '- Credentials: sessions come from a real login (Chromium, oidc-provider\'s development login). ' +
      'Rows 3b and 6 send an ES256 client_credentials access token of the provider (a fresh one ' +
      'per round). Rows 7 and 7b send a different token on every request (RSA 2048 / P-256 keys ' +
      'of the benchmark, trusted through `[[bearer.issuers]] public_keys`); no token is sent twice ' +
      'in a run, so none can come from the verified-token cache.',
  );
  lines.push(
    '- Row 8 is deploy/nginx/auth-request.conf as it is in the commit, plus keep-alive to ' +
      'portcullis and the application (the recipe opens a new connection for every auth ' +
      'subrequest and every proxied request) and `proxy_bind 127.0.0.2` for the auth ' +
      'subrequest, the only address in portcullis\' `trusted_proxies`.',
  );
  lines.push(
    '- Caveats: everything, wrk included, shares 2 cores on one machine over loopback, so a ' +
      'proxy competes with wrk and the upstream for CPU, and the numbers say more about CPU cost ' +
      'per request than about what a proxy does on its own machine. Rounds vary, portcullis\' ' +
      'rows more than nginx\'s (see req/s by round): compare within one run, and use more rounds ' +
      'for a decision.',
  );
  if (complaints.length) {
    lines.push('');
    lines.push('Logged during the run:');
    lines.push('');
    for (const c of complaints) lines.push(`- ${c.replaceAll('\n', ' ')}`);
  }
  lines.push('');
  return lines.join('\n');
}

try {
  await main();
  await stopAll();
  process.exit(0);
} catch (e) {
  if (!stopping) console.error(`benchmark failed: ${e.stack ?? e}`);
  await shutdown(stopping ? 130 : 1);
}
