// The refresh storm (bench/run.sh runs it after the throughput rows): many requests of one
// session at once, right after its access token expired, against oidc-provider rotating its
// refresh tokens. Each storm should cost exactly one refresh grant and sign nobody out; its
// time is compared with the same burst when no refresh is due, measured in the same round.
//
// Four setups: the cookie store in one process (its in-process single flight), the Redis
// store in one process, three replicas sharing one Redis store with the requests spread over
// them (the lease across replicas), and three replicas with the cookie store and a shared
// `[session.revocation]` (the lease, and the refreshed session handed over in Redis).
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Requests per storm, storms per setup, and the access tokens' lifetime in seconds. */
export const STORM = { requests: 100, rounds: 3, ttl: 4 };

/** One GET on a new connection; its status, time in ms and Set-Cookie values. */
function getOnce(url, cookie) {
  return new Promise((resolve) => {
    const started = performance.now();
    const req = request(url, { headers: { cookie, accept: 'application/json' }, agent: false, timeout: 70_000 }, (res) => {
      res.resume();
      res.on('end', () =>
        resolve({ status: res.statusCode, ms: performance.now() - started, setCookie: res.headers['set-cookie'] ?? [] }),
      );
    });
    req.on('error', () => resolve({ status: 0, ms: performance.now() - started, setCookie: [] }));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** `cookie` (a Cookie header) with the Set-Cookie values applied. */
function absorb(cookie, setCookies) {
  const jar = new Map(cookie.split('; ').filter(Boolean).map((c) => c.split(/=(.*)/s).slice(0, 2)));
  for (const sc of setCookies) {
    const [pair, ...attrs] = sc.split(';');
    const [name, value] = pair.split(/=(.*)/s);
    if (attrs.some((a) => /^\s*max-age=0\s*$/i.test(a))) jar.delete(name.trim());
    else jar.set(name.trim(), value);
  }
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

/** `STORM.requests` GETs at once, spread over `urls`; the wall time and each answer. */
async function burst(urls, cookie) {
  const started = performance.now();
  const answers = await Promise.all(
    Array.from({ length: STORM.requests }, (_, i) => getOnce(urls[i % urls.length], cookie)),
  );
  return { wallMs: performance.now() - started, answers };
}

/**
 * Runs the storms. `ctx` brings the orchestrator's pieces: the e2e harness (`h`), the provider
 * module, the binary, the run directory, startProcess/waitFor/browserLogin/log, the upstream
 * and redis ports, the payload path and the environment for portcullis.
 */
export async function refreshStorms(ctx) {
  const { h, idpModule, bin, run, startProcess, waitFor, browserLogin, log, env } = ctx;
  const ports = {};
  const names = ['cookie', 'r1', 'r2', 'r3', 'c1', 'c2', 'c3'];
  for (const k of names) {
    ports[k] = await h.freePort();
    ports[`m-${k}`] = await h.freePort();
  }
  const base = (port) => `http://127.0.0.1:${port}`;
  const idp = await idpModule.startIdp({
    redirectUris: names.map((k) => `${base(ports[k])}/oauth2/callback`),
    postLogoutRedirectUris: [],
    accessTokenTtl: STORM.ttl,
    options: { rotateRefreshToken: true },
  });
  const secret = randomBytes(32).toString('base64');
  /** `redis`: "store" (sessions in Redis), "revocation" (the cookie store and a shared
   * revocation list) or nothing (the cookie store alone). */
  const start = async (name, redis) => {
    const port = ports[name];
    const metrics = ports[`m-${name}`];
    const dir = join(run, `storm-${name}`);
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'portcullis.toml');
    writeFileSync(conf, [
      '[server]',
      `listen = "127.0.0.1:${port}"`,
      `metrics_listen = "127.0.0.1:${metrics}"`,
      'shutdown_grace = "1s"',
      '[upstream]',
      `url = "http://127.0.0.1:${ctx.upstreamPort}"`,
      '[oidc]',
      `issuer = "${idp.issuer}"`,
      `client_id = "${idp.clientId}"`,
      `client_secret = "${idp.clientSecret}"`,
      `redirect_url = "${base(port)}/oauth2/callback"`,
      '[session]',
      ...(redis === 'store' ? ['store = "redis"'] : []),
      `secrets = ["${secret}"]`,
      'secure = false',
      ...(redis === 'store' ? ['[session.redis]', `url = "redis://127.0.0.1:${ctx.redisPort}/1"`] : []),
      ...(redis === 'revocation' ? ['[session.revocation]', `url = "redis://127.0.0.1:${ctx.redisPort}/2"`] : []),
      '[logging]',
      'level = "warn"',
      '',
    ].join('\n'));
    const p = startProcess(`storm-${name}`, bin, ['run', '--config', conf], { logFile: join(dir, 'portcullis.log'), env });
    await waitFor(`storm portcullis ${name} /ready`, 20_000, async () => {
      const r = await fetch(`${base(port)}/ready`);
      return r.status === 200;
    }, p);
    return p;
  };
  const results = [];
  try {
    await start('cookie');
    for (const k of ['r1', 'r2', 'r3']) await start(k, 'store');
    for (const k of ['c1', 'c2', 'c3']) await start(k, 'revocation');
    const setups = [
      { name: 'cookie store, one process', login: ports.cookie, urls: [ports.cookie] },
      { name: 'Redis store, one process', login: ports.r1, urls: [ports.r1] },
      { name: 'Redis store, three replicas (requests spread over them)', login: ports.r1, urls: [ports.r1, ports.r2, ports.r3] },
      {
        name: 'cookie store + `[session.revocation]`, three replicas (requests spread over them)',
        login: ports.c1,
        urls: [ports.c1, ports.c2, ports.c3],
      },
    ];
    const browser = await h.launchBrowser();
    ctx.adopt?.();
    try {
      for (const s of setups) {
        s.cookie = await browserLogin(h, browser, idp, `${base(s.login)}${ctx.path}`, /^_portcullis(_\d+)?$/);
        s.loggedInAt = performance.now();
      }
    } finally {
      await browser.close();
    }
    for (const s of setups) {
      const urls = s.urls.map((p) => `${base(p)}${ctx.path}`);
      const r = { name: s.name, rounds: [], failure: null };
      for (let round = 0; round < STORM.rounds; round++) {
        // The session's access token has run out: every request of the burst finds it due.
        const due = s.loggedInAt + (STORM.ttl + 1) * 1000 - performance.now();
        if (due > 0) await sleep(due);
        const grantsBefore = idp.refreshes();
        const storm = await burst(urls, s.cookie);
        s.loggedInAt = performance.now();
        const grants = idp.refreshes() - grantsBefore;
        const renewed = storm.answers.find((a) => a.setCookie.length);
        if (renewed) s.cookie = absorb(s.cookie, renewed.setCookie);
        // The same burst with nothing due, as its baseline.
        const calm = await burst(urls, s.cookie);
        const failed = [...storm.answers, ...calm.answers].filter((a) => a.status !== 200);
        r.rounds.push({
          wallMs: storm.wallMs,
          calmMs: calm.wallMs,
          p50: pct(storm.answers.map((a) => a.ms), 50),
          p99: pct(storm.answers.map((a) => a.ms), 99),
          grants,
          failed: failed.length,
          statuses: [...new Set(failed.map((a) => a.status))],
        });
        log(
          `  storm ${s.name}: ${storm.wallMs.toFixed(0)} ms (without a refresh ${calm.wallMs.toFixed(0)} ms), ` +
            `${grants} refresh grant(s), ${failed.length} not 200`,
        );
      }
      const bad = r.rounds.filter((m) => m.grants !== 1 || m.failed > 0);
      if (bad.length) {
        r.failure =
          `${bad.length} of ${r.rounds.length} storms: grants ${r.rounds.map((m) => m.grants).join('/')}, ` +
          `not 200: ${bad.map((m) => `${m.failed} (${m.statuses.join(', ')})`).join('; ')}`;
      }
      results.push(r);
    }
  } finally {
    await idp.close();
  }
  return results;
}

/** The report's section for `results` (medians over the rounds). */
export function stormReport(results) {
  const med = (xs) => {
    const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
    return s.length ? (s.length % 2 ? s[s.length >> 1] : (s[(s.length >> 1) - 1] + s[s.length >> 1]) / 2) : NaN;
  };
  const ms = (x) => (Number.isFinite(x) ? `${x.toFixed(0)} ms` : '—');
  const lines = [];
  lines.push(
    `Refresh storm: ${STORM.requests} requests of one session at once, each on a new connection, ` +
      `right after its access token expired (oidc-provider, access tokens of ${STORM.ttl} s, refresh ` +
      `tokens rotated on every use); ${STORM.rounds} storms per setup, medians. "× calm" divides by the ` +
      'same burst sent just after, with nothing due.',
  );
  lines.push('');
  lines.push('| Setup | all answered in | × calm | p50 | p99 | refresh grants per storm | not 200 | status |');
  lines.push('|---|---:|---:|---:|---:|---|---:|---|');
  for (const r of results) {
    const wall = med(r.rounds.map((m) => m.wallMs));
    const calm = med(r.rounds.map((m) => m.calmMs));
    lines.push(
      `| ${r.name} | ${ms(wall)} | ${Number.isFinite(wall / calm) ? (wall / calm).toFixed(2) : '—'} | ` +
        `${ms(med(r.rounds.map((m) => m.p50)))} | ${ms(med(r.rounds.map((m) => m.p99)))} | ` +
        `${r.rounds.map((m) => m.grants).join(' / ') || '—'} | ${r.rounds.reduce((n, m) => n + m.failed, 0)} | ` +
        `${r.failure ? `**FAILED**: ${r.failure.replaceAll('|', '\\|')}` : 'ok'} |`,
    );
  }
  return lines;
}
