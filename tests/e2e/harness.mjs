// What every end-to-end test needs: free ports, readiness probes, the portcullis binary as a
// child process, its configuration, Chromium, and failure artifacts (screenshots and logs).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, '../..');
export const BINARY = process.env.PORTCULLIS_BIN ?? resolve(ROOT, 'target/debug/portcullis');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = join(HERE, 'artifacts');

/** Fails early, with what to do, when the binary or the browser is missing. */
export function requireTools({ browser = true } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(
      `the portcullis binary is missing at ${BINARY}: build it first (cargo build, or cargo test) ` +
        'or point PORTCULLIS_BIN at it',
    );
  }
  if (browser && !existsSync(CHROMIUM)) {
    throw new Error(`Chromium is missing at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
  }
}

/** A port that was free a moment ago (bind :0, read, close). */
export async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/**
 * Polls `check` until it returns true or `ms` pass: a readiness probe, not a sleep. An error
 * thrown by `check` counts as "not yet", unless it is marked `fatal` (see `fatal()`).
 */
export async function waitUntil(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      if (e.fatal) throw e;
      last = e;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** An error that ends a `waitUntil` at once: waiting longer cannot help. */
export function fatal(message) {
  return Object.assign(new Error(message), { fatal: true });
}

/** A scratch directory, removed by the returned function. */
export function scratchDir() {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-e2e-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** GET `url`, its status and body; never throws for an HTTP status. */
export async function get(url, headers = {}) {
  const r = await fetch(url, { headers, redirect: 'manual', signal: AbortSignal.timeout(5000) });
  return { status: r.status, headers: r.headers, body: await r.text() };
}

/** The portcullis binary as a child process; stderr (its JSON log) kept in memory. */
export class Proxy {
  /**
   * @param {number} port
   * @param {string} configPath
   */
  constructor(port, configPath) {
    this.port = port;
    this.base = `http://127.0.0.1:${port}`;
    this.stderr = [];
    this.child = spawn(BINARY, ['run', '--config', configPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.exited = once(this.child, 'exit');
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk) => this.stderr.push(chunk));
  }

  /** Writes `config` into `dir` and starts portcullis with it. */
  static start(dir, port, config) {
    const path = join(dir, `portcullis-${port}.toml`);
    writeFileSync(path, config);
    return new Proxy(port, path);
  }

  url(path) {
    return `${this.base}${path}`;
  }

  log() {
    return this.stderr.join('');
  }

  /** Waits until `/ready` answers 200 and says `OK` (not "degraded"). */
  async waitReady(ms = 20_000) {
    await waitUntil('portcullis /ready to answer OK', ms, async () => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw fatal(`portcullis exited (${this.child.exitCode ?? this.child.signalCode})`);
      }
      // pingora retries a taken port instead of exiting; another process answers meanwhile.
      if (this.log().includes('in use')) {
        throw fatal(`port ${this.port} was taken by another process before portcullis bound it`);
      }
      const r = await get(this.url('/ready'));
      return r.status === 200 && r.body === 'OK';
    }).catch((e) => {
      e.message += `\n--- portcullis stderr ---\n${this.log()}`;
      throw e;
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within 5 s; resolves once it is gone. */
  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * A portcullis configuration: listening on `port` (or behind a front proxy at `publicBase`),
 * logging in at `idp`, in front of `upstream`. `extra` is appended (more tables); `oidcExtra`
 * and `serverExtra` go into those tables; `clientAuth` says how portcullis authenticates to
 * the provider (its client secret by default); `sessionSecret` and `sessionExtra` are
 * `[session]`'s (replicas share one secret).
 */
export function proxyConfig({
  port,
  idp,
  upstream,
  publicBase = `http://127.0.0.1:${port}`,
  clientAuth = `client_secret = "${idp.clientSecret}"`,
  sessionSecret = randomBytes(32).toString('base64'),
  sessionExtra = '',
  oidcExtra = '',
  serverExtra = '',
  extra = '',
}) {
  return `
[server]
listen = "127.0.0.1:${port}"
shutdown_grace = "1s"
${serverExtra}

[upstream]
url = "${upstream}"

[oidc]
issuer = "${idp.issuer}"
client_id = "${idp.clientId}"
${clientAuth}
redirect_url = "${publicBase}/oauth2/callback"
${oidcExtra}

[session]
secrets = ["${sessionSecret}"]
secure = false
${sessionExtra}

[logging]
level = "info"
format = "json"
${extra}
`;
}

/** Debian's Chromium, headless, with a fresh profile, reaching nothing but loopback. */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return browser;
}

/** A new browser context (its own cookie jar) that only reaches loopback. */
export async function newContext(browser) {
  const context = await browser.newContext();
  context.setDefaultTimeout(10_000);
  // Only loopback exists here: the provider's stock pages @import a web font, which would
  // otherwise wait on a lookup that cannot succeed.
  await context.route(
    (url) => url.hostname !== '127.0.0.1',
    (route) => route.abort(),
  );
  return context;
}

/**
 * Steps that build on one another: a step after a failed one is skipped, and a failing step
 * leaves a screenshot of every open page and the logs under artifacts/.
 *
 * @param {() => { pages: import('playwright-core').Page[], logs: Record<string, string> }} state
 */
export function stepper(suite, state) {
  let failed = null;
  return async function step(t, name, fn) {
    if (failed) {
      t.skip(`an earlier step failed: ${failed}`);
      return;
    }
    try {
      await fn();
    } catch (e) {
      failed = name;
      const { pages = [], logs = {} } = state();
      mkdirSync(ARTIFACTS, { recursive: true });
      const slug = `${suite}-${name}`.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
      for (const [i, page] of pages.entries()) {
        try {
          await page.screenshot({ path: join(ARTIFACTS, `${slug}-${i}.png`), fullPage: true });
        } catch (shot) {
          console.error('screenshot failed:', shot.message);
        }
      }
      for (const [what, text] of Object.entries(logs)) {
        writeFileSync(join(ARTIFACTS, `${slug}.${what}.log`), text ?? '');
      }
      e.message +=
        `\n(at ${pages.map((p) => p.url()).join(', ')}; artifacts in ${ARTIFACTS})` +
        Object.entries(logs)
          .map(([what, text]) => `\n--- ${what} (tail) ---\n${(text ?? '').split('\n').slice(-25).join('\n')}`)
          .join('');
      throw e;
    }
  };
}

/** Runs the teardown steps in order; one failing does not keep the others from running. */
export async function teardown(...steps) {
  for (const s of steps) {
    try {
      await s?.();
    } catch (e) {
      console.error('teardown:', e);
    }
  }
}

/**
 * On the provider's development login page: signs in as `user` and approves the consent screen
 * if one is shown. Resolves once the browser has left the provider.
 */
export async function signInAtIdp(page, idp, user) {
  const login = page.locator('form input[name="login"]');
  await login.waitFor();
  await login.fill(user);
  await page.locator('form input[name="password"]').fill('not-checked-by-dev-login');
  await page.locator('form button[type="submit"]').click();
  const consent = page.locator('form input[name="prompt"][value="consent"]');
  const left = page.waitForURL((u) => u.origin !== idp.issuer);
  left.catch(() => {});
  await Promise.race([consent.waitFor({ state: 'attached' }), left]);
  if (new URL(page.url()).origin === idp.issuer && (await consent.count())) {
    await page.locator('form button[type="submit"]').click();
  }
  await left;
}

/** The identity headers the echo upstream shows on its HTML page. */
export async function shownHeader(page, name) {
  return page.locator(`[data-header="${name}"]`).allTextContents();
}

/**
 * `fetch(path)` from inside `page`, as the application's own scripts would; `redirect:
 * 'manual'` makes a redirect visible (an opaque-redirect response) instead of following it.
 */
export function fetchFrom(page, path, init = {}) {
  return page.evaluate(
    async ([p, i]) => {
      const r = await fetch(p, { ...i, redirect: 'manual' });
      return {
        status: r.status,
        type: r.type,
        wwwAuthenticate: r.headers.get('www-authenticate'),
        body: await r.text(),
      };
    },
    [path, init],
  );
}

/**
 * The usual set-up: the provider, the echo upstream and portcullis on a free port in front of
 * it, ready. `idp` options go to startIdp (redirect URIs are filled in); `proxy` options to
 * proxyConfig. `close()` ends all of them.
 */
export async function startStack({ idp: idpOptions = {}, proxy: proxyOptions = {} } = {}) {
  requireTools();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const stack = { scratch: scratchDir() };
  stack.close = () =>
    teardown(
      () => stack.proxy?.stop(),
      () => stack.idp?.close(),
      () => stack.upstream?.close(),
      () => stack.scratch.remove(),
    );
  try {
    stack.idp = await startIdp({
      redirectUris: [`${base}/oauth2/callback`],
      postLogoutRedirectUris: [`${base}/`],
      ...idpOptions,
    });
    stack.upstream = await startUpstream();
    stack.proxy = Proxy.start(
      stack.scratch.dir,
      port,
      proxyConfig({ port, idp: stack.idp, upstream: stack.upstream.url, ...proxyOptions }),
    );
    await stack.proxy.waitReady();
  } catch (e) {
    await stack.close();
    throw e;
  }
  return stack;
}

/** Debian's redis-server on a free loopback port, without persistence; ended by PID. */
export async function startRedis(dir) {
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = once(child, 'exit');
  await waitUntil('redis-server to answer', 10_000, () =>
    new Promise((resolve) => {
      const s = createConnection({ port, host: '127.0.0.1' }, () => s.write('PING\r\n'));
      s.on('data', (d) => {
        s.destroy();
        resolve(d.toString().startsWith('+PONG'));
      });
      s.on('error', () => resolve(false));
    }),
  );
  return {
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * portcullis replicas on `ports`, logging in at `idp` in front of `upstream`, sharing one
 * session secret and the sessions in `redis` (from `startRedis`); ready when they return.
 */
export async function startReplicas({ dir, ports, idp, upstream, redis }) {
  const sessionSecret = randomBytes(32).toString('base64');
  const replicas = ports.map((port) =>
    Proxy.start(
      dir,
      port,
      proxyConfig({
        port,
        idp,
        upstream: upstream.url,
        sessionSecret,
        sessionExtra: 'store = "redis"',
        extra: `\n[session.redis]\nurl = "${redis.url}"\n`,
      }),
    ),
  );
  await Promise.all(replicas.map((p) => p.waitReady()));
  return replicas;
}

/**
 * Records what the provider posts to the back-channel logout URI and passes it on to
 * portcullis: the test can then replay exactly that request.
 */
export async function startRecorder(target) {
  const bodies = [];
  const server = createHttpServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString();
    bodies.push(body);
    const r = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': req.headers['content-type'] ?? '' },
      body,
    });
    res.writeHead(r.status);
    res.end(await r.text());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}/backchannel`,
    bodies,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
