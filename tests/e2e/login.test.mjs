// End to end with real parts: the portcullis binary in front of an echo upstream, logging in
// at oidc-provider (a certified OpenID provider), driven by a real Chromium.
//
// Run from this directory: `npm ci && node --test` (build the proxy first: `cargo build`).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const BINARY = process.env.PORTCULLIS_BIN ?? resolve(HERE, '../../target/debug/portcullis');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(HERE, 'artifacts');
const DEEP_PATH = '/reports/q3?year=2026';

/** A port that was free a moment ago (bind :0, read, close). */
async function freePort() {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

/** Polls `check` until it returns true or `ms` pass: a readiness probe, not a sleep. */
async function waitUntil(what, ms, check) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await sleep(50);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/** The portcullis binary as a child process; stderr (its JSON log) kept in memory. */
class Proxy {
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

  url(path) {
    return `${this.base}${path}`;
  }

  log() {
    return this.stderr.join('');
  }

  async waitReady(ms) {
    await waitUntil('portcullis /ready to answer 200', ms, async () => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`portcullis exited (${this.child.exitCode ?? this.child.signalCode})`);
      }
      const r = await fetch(this.url('/ready'), { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      return r.status === 200;
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

function proxyConfig({ port, issuer, clientId, clientSecret, upstream }) {
  const secret = randomBytes(32).toString('base64');
  return `
[server]
listen = "127.0.0.1:${port}"
shutdown_grace = "1s"

[upstream]
url = "${upstream}"

[oidc]
issuer = "${issuer}"
client_id = "${clientId}"
client_secret = "${clientSecret}"
redirect_url = "http://127.0.0.1:${port}/oauth2/callback"

[session]
secrets = ["${secret}"]
secure = false

[logging]
level = "info"
format = "json"
`;
}

describe('portcullis with oidc-provider and Chromium', { timeout: 60_000 }, () => {
  let idp;
  let upstream;
  let proxy;
  let browser;
  let context;
  let page;
  let scratch;
  let deepLink;
  // The steps build on one another: a later one is skipped once an earlier one failed.
  let failed = null;

  before(async () => {
    if (!existsSync(BINARY)) {
      throw new Error(
        `the portcullis binary is missing at ${BINARY}: build it first (cargo build, or cargo test) ` +
          'or point PORTCULLIS_BIN at it',
      );
    }
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is missing at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
    }
    const port = await freePort();
    deepLink = `http://127.0.0.1:${port}${DEEP_PATH}`;
    idp = await startIdp({
      redirectUri: `http://127.0.0.1:${port}/oauth2/callback`,
      postLogoutRedirectUri: `http://127.0.0.1:${port}/`,
    });
    upstream = await startUpstream();
    scratch = mkdtempSync(join(tmpdir(), 'portcullis-e2e-'));
    const configPath = join(scratch, 'config.toml');
    writeFileSync(
      configPath,
      proxyConfig({
        port,
        issuer: idp.issuer,
        clientId: idp.clientId,
        clientSecret: idp.clientSecret,
        upstream: upstream.url,
      }),
    );
    proxy = new Proxy(port, configPath);
    await proxy.waitReady(20_000);

    browser = await chromium.launch({
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
    context = await browser.newContext();
    context.setDefaultTimeout(10_000);
    // Only loopback exists here: the provider's stock pages @import a web font, which would
    // otherwise wait on a lookup that cannot succeed.
    await context.route(
      (url) => url.hostname !== '127.0.0.1',
      (route) => route.abort(),
    );
    page = await context.newPage();
  });

  after(async () => {
    const steps = [
      () => browser?.close(),
      () => proxy?.stop(),
      () => idp?.close(),
      () => upstream?.close(),
      () => scratch && rmSync(scratch, { recursive: true, force: true }),
    ];
    for (const step of steps) {
      try {
        await step();
      } catch (e) {
        console.error('teardown:', e);
      }
    }
  });

  /** Runs a step; on failure saves a screenshot and the logs under artifacts/ and rethrows. */
  async function step(t, name, fn) {
    if (failed) {
      t.skip(`an earlier step failed: ${failed}`);
      return;
    }
    try {
      await fn();
    } catch (e) {
      failed = name;
      mkdirSync(ARTIFACTS, { recursive: true });
      const slug = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
      try {
        await page?.screenshot({ path: join(ARTIFACTS, `${slug}.png`), fullPage: true });
      } catch (shot) {
        console.error('screenshot failed:', shot.message);
      }
      writeFileSync(join(ARTIFACTS, `${slug}.portcullis.log`), proxy?.log() ?? '');
      const idpErrors = idp?.errors.join('\n') ?? '';
      writeFileSync(join(ARTIFACTS, `${slug}.idp-errors.log`), idpErrors);
      e.message +=
        `\n(at ${page?.url()}; artifacts in ${ARTIFACTS})` +
        `\n--- provider errors ---\n${idpErrors}` +
        `\n--- portcullis stderr (tail) ---\n${(proxy?.log() ?? '').split('\n').slice(-25).join('\n')}`;
      throw e;
    }
  }

  const onIdp = (url) => url.origin === idp.issuer;
  const loginForm = () => page.locator('form input[name="login"]');

  /** `fetch(path)` from the current page; `redirect: 'manual'` makes a redirect visible. */
  const fetchFromPage = (path, init = {}) =>
    page.evaluate(
      async ([p, i]) => {
        const r = await fetch(p, { ...i, redirect: 'manual' });
        return { status: r.status, type: r.type, body: await r.text() };
      },
      [path, init],
    );

  const sessionCookies = async () =>
    (await context.cookies(proxy.base))
      .map((c) => c.name)
      .filter((n) => n.startsWith('_portcullis') && !n.includes('_flow_'));

  it('a deep link leads through the provider login back to itself, with the identity forwarded', (t) =>
    step(t, 'login', async () => {
      await page.goto(deepLink);
      await page.waitForURL(onIdp);
      await loginForm().waitFor();
      assert.match(new URL(page.url()).pathname, /^\/interaction\//);

      await loginForm().fill('alice');
      await page.locator('form input[name="password"]').fill('not-checked-by-dev-login');
      await page.locator('form button[type="submit"]').click();

      // The stock consent screen comes first on a fresh grant; approve it if shown.
      const consent = page.locator('form input[name="prompt"][value="consent"]');
      const echoed = page.locator('[data-header="x-forwarded-user"]');
      await consent.or(echoed).waitFor({ state: 'attached' });
      if (await consent.count()) {
        await page.locator('form button[type="submit"]').click();
      }
      await page.waitForURL(deepLink);
      assert.equal(page.url(), deepLink);
      assert.equal(await page.locator('#uri').textContent(), DEEP_PATH);

      const header = (name) => page.locator(`[data-header="${name}"]`);
      assert.equal(await header('x-forwarded-user').count(), 1);
      assert.equal(await header('x-forwarded-user').textContent(), 'alice');
      assert.equal(await header('x-forwarded-email').textContent(), 'alice@example.com');
      const groups = (await header('x-forwarded-groups').textContent()).split(',').map((g) => g.trim());
      assert.ok(groups.includes('sre'), `x-forwarded-groups: ${groups}`);
      // The proxy's own cookies never reach the application.
      for (const cookie of await header('cookie').allTextContents()) {
        assert.ok(!cookie.includes('_portcullis'), `cookie reached upstream: ${cookie}`);
      }
      assert.deepEqual(await sessionCookies(), ['_portcullis']);
    }));

  it('fetch() from the page is authenticated by the session', (t) =>
    step(t, 'fetch-with-session', async () => {
      const r = await fetchFromPage('/api/x', { headers: { accept: 'application/json' } });
      assert.equal(r.status, 200, r.body);
      const seen = JSON.parse(r.body);
      assert.equal(seen.uri, '/api/x');
      const get = (n) => seen.headers.filter(([k]) => k === n).map(([, v]) => v);
      assert.deepEqual(get('x-forwarded-user'), ['alice']);
      assert.deepEqual(get('x-forwarded-email'), ['alice@example.com']);
      // And with the browser's own defaults (Accept: */*).
      const plain = await fetchFromPage('/api/x');
      assert.equal(plain.status, 200);
    }));

  it('sign-out ends the session here and at the provider', (t) =>
    step(t, 'sign-out', async () => {
      const endSession = page.waitForRequest((req) => {
        const u = new URL(req.url());
        return onIdp(u) && u.pathname === '/session/end' && req.method() === 'GET';
      });
      endSession.catch(() => {}); // awaited below; never an unhandled rejection meanwhile
      await page.goto(proxy.url('/oauth2/sign_out'));
      const hint = new URL((await endSession).url()).searchParams;
      assert.ok(hint.get('id_token_hint'), 'the proxy sends id_token_hint');
      assert.equal(hint.get('post_logout_redirect_uri'), proxy.url('/'));

      // The provider asks to confirm the sign-out.
      const yes = page.locator('button[name="logout"][value="yes"]');
      await yes.waitFor();
      await yes.click();
      // Back at the proxy's root, which (signed out) sends the browser to log in again.
      await page.waitForURL((u) => onIdp(u) && u.pathname.startsWith('/interaction/'));
      await loginForm().waitFor();
      assert.deepEqual(await sessionCookies(), [], 'no session cookie is left');

      // fetch() from a page of the proxy's origin: a 401, never a redirect to log in.
      await page.goto(proxy.url('/ping'));
      for (const init of [{}, { headers: { accept: 'application/json' } }]) {
        const r = await fetchFromPage('/api/x', init);
        assert.equal(r.type, 'basic', `a redirect instead of a 401 (${JSON.stringify(init)})`);
        assert.equal(r.status, 401, r.body);
      }

      // The deep link asks for a login again: the provider's session is gone too.
      await page.goto(deepLink);
      await page.waitForURL(onIdp);
      await loginForm().waitFor();
      assert.match(new URL(page.url()).pathname, /^\/interaction\//);
    }));
});
