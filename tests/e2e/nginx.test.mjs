// nginx `auth_request` in front of the application, asking portcullis about each request: the
// recipe users copy (deploy/nginx/auth-request.conf), run as it is with only its addresses
// changed, with Debian's nginx, the portcullis binary, oidc-provider and Chromium.
//
// Run from this directory: `node --test nginx.test.mjs` (build the proxy first: `cargo build`;
// nginx from `apt-get install nginx-light`, or point NGINX at one with auth_request).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  fetchFrom,
  ROOT,
  Proxy,
  freePort,
  get,
  launchBrowser,
  newContext,
  proxyConfig,
  requireTools,
  scratchDir,
  shownHeader,
  signInAtIdp,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';
import { API_AUDIENCE, machineToken, startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

const NGINX = process.env.NGINX ?? '/usr/sbin/nginx';
const RECIPE = join(ROOT, 'deploy/nginx/auth-request.conf');
// A query nginx cannot pass through rd= intact: two parameters, a `+` and a `%xx`.
const DEEP_PATH = '/reports/q3?tab=cost+centre&from=2026-01-01T00%3A00&year=2026';
// The provider's access tokens live this long; portcullis refreshes the session after that.
const ACCESS_TOKEN_TTL = 2;

/** Replaces `from`, which must occur exactly once, so the recipe and this test cannot drift. */
function replaceOnce(text, from, to) {
  const count = text.split(from).length - 1;
  assert.equal(count, 1, `${RECIPE}: expected "${from}" exactly once, found it ${count} times`);
  return text.replace(from, () => to);
}

/**
 * The recipe with test addresses, inside the smallest main configuration nginx accepts, plus a
 * server of the test's own that answers `nonce` to prove that this nginx owns the port.
 */
function nginxConfig(dir, { port, portcullis, upstream, nonce }) {
  let site = readFileSync(RECIPE, 'utf8');
  site = replaceOnce(site, 'listen 80;', `listen 127.0.0.1:${port};`);
  site = replaceOnce(site, 'server_name app.example.com;', 'server_name 127.0.0.1;');
  site = replaceOnce(site, '127.0.0.1:4180', `127.0.0.1:${portcullis}`);
  site = replaceOnce(site, '127.0.0.1:8080', new URL(upstream).host);
  writeFileSync(join(dir, 'site.conf'), site);
  return `
daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${dir}/site.conf;
    server {
        listen 127.0.0.1:${port};
        server_name probe.invalid;
        location = /nonce { return 200 "${nonce}"; }
    }
}
`;
}

/** Another process took a port between freePort() and the bind: worth a try with others. */
class PortTaken extends Error {}

/**
 * Polls `up` until it says yes (a readiness probe), but stops at once when `failed` returns an
 * error: the process exited, or its port was taken (PortTaken).
 */
async function serverUp(what, ms, up, failed) {
  let reason;
  await waitUntil(what, ms, async () => Boolean((reason = failed())) || (await up()));
  if (reason) throw reason;
}

/** nginx in the foreground, one process (no master), its error log kept in memory. */
class Nginx {
  constructor(dir, port, config) {
    this.dir = dir;
    this.base = `http://127.0.0.1:${port}`;
    const path = join(dir, 'nginx.conf');
    writeFileSync(path, config);
    this.stderr = [];
    this.child = spawn(NGINX, ['-p', `${dir}/`, '-e', 'stderr', '-c', path], {
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
    const access = join(this.dir, 'access.log');
    const accessLog = existsSync(access) ? readFileSync(access, 'utf8') : '';
    return `${this.stderr.join('')}--- access.log ---\n${accessLog}`;
  }

  /** Up once its probe server answers with `nonce`: this nginx, not another, has the port. */
  async waitUp(nonce, ms = 10_000) {
    await serverUp(
      'nginx to answer on its port',
      ms,
      async () => (await rawGet(this.url('/nonce'), { host: 'probe.invalid' })).body === nonce,
      () => {
        if (/Address already in use/.test(this.stderr.join(''))) {
          return new PortTaken(`nginx: ${this.base} is in use`);
        }
        const { exitCode, signalCode } = this.child;
        if (exitCode !== null || signalCode !== null) {
          return new Error(`nginx exited (${exitCode ?? signalCode})\n${this.log()}`);
        }
        return undefined;
      },
    );
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * Up once `/ready` says OK and `/oauth2/start` leads to this test's provider: this portcullis,
 * not one of another test that took the port, answers.
 */
async function proxyUp(proxy, idp, ms = 20_000) {
  await serverUp(
    'portcullis to be ready',
    ms,
    async () => {
      if ((await get(proxy.url('/ready'))).body !== 'OK') return false;
      const start = await get(proxy.url('/oauth2/start'));
      return start.status === 302 && new URL(start.headers.get('location')).origin === idp.issuer;
    },
    () => {
      // pingora keeps trying to bind a port in use.
      if (/is in use, will try again/.test(proxy.log())) {
        return new PortTaken(`portcullis: ${proxy.base} is in use`);
      }
      const { exitCode, signalCode } = proxy.child;
      if (exitCode !== null || signalCode !== null) {
        return new Error(`portcullis exited (${exitCode ?? signalCode})\n${proxy.log()}`);
      }
      return undefined;
    },
  );
}

/**
 * GET `url` with these headers and no others (but Connection). Node's fetch() cannot: it sets
 * Sec-Fetch-Mode: cors itself, whatever the caller says.
 */
async function rawGet(url, headers) {
  const req = request(url, { headers, signal: AbortSignal.timeout(5000) });
  req.end();
  const [res] = await once(req, 'response');
  res.setEncoding('utf8');
  let body = '';
  for await (const chunk of res) body += chunk;
  return { status: res.statusCode, headers: res.headers, body };
}

/** The header values the echo upstream reports in its JSON answer. */
const echoed = (seen, name) => seen.headers.filter(([k]) => k === name).map(([, v]) => v);

/** portcullis' JSON log events (a line still being written is skipped). */
function logEvents(log) {
  return log.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line)];
    } catch {
      return [];
    }
  });
}

describe('nginx auth_request recipe with portcullis', { timeout: 60_000 }, () => {
  let idp;
  let upstream;
  let proxy;
  let nginx;
  let browser;
  let context;
  let page;
  let scratch;
  let deepLink;
  // Every value the session cookie had, none of which may be logged.
  const sessionValues = [];
  // Pages of a step's own browser context, for the failure screenshots.
  const extraPages = [];

  const step = stepper('nginx', () => ({
    pages: [page, ...extraPages].filter(Boolean),
    logs: {
      portcullis: proxy?.log(),
      nginx: nginx?.log(),
      'idp-errors': idp?.errors.join('\n'),
    },
  }));

  before(async () => {
    requireTools();
    if (!existsSync(NGINX)) {
      throw new Error(`nginx is missing at ${NGINX} (apt-get install nginx-light, or set NGINX)`);
    }
    // nginx -V writes to stderr.
    const built = spawnSync(NGINX, ['-V'], { encoding: 'utf8' });
    if (!/--with-http_auth_request_module/.test(`${built.stdout}${built.stderr}`)) {
      throw new Error(`${NGINX} lacks the auth_request module (nginx -V)`);
    }
    upstream = await startUpstream();
    scratch = scratchDir();
    // Other tests run at the same time and may take a port between freePort() and the bind.
    for (let attempt = 1; ; attempt++) {
      try {
        await startServers();
        break;
      } catch (e) {
        await teardown(() => nginx?.stop(), () => proxy?.stop(), () => idp?.close());
        nginx = proxy = idp = undefined;
        if (!(e instanceof PortTaken) || attempt === 3) throw e;
        console.error(`${e.message}; trying other ports`);
      }
    }
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
  });

  /** The provider, portcullis and nginx, each told about the others' ports. */
  async function startServers() {
    const nginxPort = await freePort();
    let proxyPort;
    do proxyPort = await freePort();
    while (proxyPort === nginxPort);
    const origin = `http://127.0.0.1:${nginxPort}`;
    deepLink = `${origin}${DEEP_PATH}`;
    idp = await startIdp({
      redirectUris: [`${origin}/oauth2/callback`],
      postLogoutRedirectUris: [`${origin}/`],
      accessTokenTtl: ACCESS_TOKEN_TTL,
    });
    proxy = Proxy.start(
      scratch.dir,
      proxyPort,
      proxyConfig({
        port: proxyPort,
        idp,
        upstream: upstream.url,
        publicBase: origin,
        serverExtra: 'trusted_proxies = ["127.0.0.1"]',
        extra: `
[bearer]
audiences = ["${API_AUDIENCE}"]

[[routes]]
path = "/admin"
groups = ["admins"]
`,
      }),
    );
    await proxyUp(proxy, idp);
    const nonce = randomBytes(8).toString('hex');
    const config = nginxConfig(scratch.dir, {
      port: nginxPort,
      portcullis: proxyPort,
      upstream: upstream.url,
      nonce,
    });
    nginx = new Nginx(scratch.dir, nginxPort, config);
    await nginx.waitUp(nonce);
  }

  after(() =>
    teardown(
      () => browser?.close(),
      () => nginx?.stop(),
      () => proxy?.stop(),
      () => idp?.close(),
      () => upstream?.close(),
      () => scratch?.remove(),
    ),
  );

  const onIdp = (url) => url.origin === idp.issuer;
  /** How many requests for `uri` reached the application. */
  const reached = (uri) => upstream.requests.filter((r) => r.uri === uri).length;

  /** The value of the browser's session cookie. */
  const sessionCookie = async () => {
    const cookies = await context.cookies(deepLink);
    const value = cookies.find((c) => c.name === '_portcullis')?.value;
    assert.ok(value, `no session cookie: ${cookies.map((c) => c.name)}`);
    if (!sessionValues.includes(value)) sessionValues.push(value);
    return value;
  };

  /** `fetch(path)` from the current page. */
  const fetchFromPage = (path, init = {}) => fetchFrom(page, path, init);

  it('a deep link leads through the provider login back to itself, identity set by nginx', (t) =>
    step(t, 'login', async () => {
      const first = await page.goto(deepLink);
      const at = page.url();
      assert.ok(onIdp(new URL(at)), `not sent to log in: ${first.status()} at ${at}`);
      await signInAtIdp(page, idp, 'alice');
      // Back through nginx on an application page; the whole query came back, the part after
      // the `&` included.
      await page.waitForURL((u) => u.origin === nginx.base && !u.pathname.startsWith('/oauth2/'));
      assert.equal(page.url(), deepLink);
      assert.equal(await page.locator('#uri').textContent(), DEEP_PATH);

      assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
      assert.deepEqual(await shownHeader(page, 'x-forwarded-email'), ['alice@example.com']);
      assert.deepEqual(await shownHeader(page, 'x-forwarded-preferred-username'), ['alice']);
      const [groups] = await shownHeader(page, 'x-forwarded-groups');
      assert.ok(groups?.split(',').includes('sre'), `x-forwarded-groups: ${groups}`);

      // nginx forwarded the page, after asking portcullis: the application was reached once,
      // and portcullis answered the check for alice but never proxied the page itself.
      assert.equal(reached(DEEP_PATH), 1);
      const events = logEvents(proxy.log());
      assert.ok(
        events.some((e) => e.path === '/oauth2/auth' && e.status === 202 && e.user === 'alice'),
        'portcullis answered the auth subrequest for alice with 202',
      );
      assert.ok(!events.some((e) => e.path?.startsWith('/reports')), 'portcullis proxied the page');

      await sessionCookie();
    }));

  it('a session refreshed during the check reaches the browser through nginx', (t) =>
    step(t, 'refresh', async () => {
      const before = idp.refreshes();
      const old = await sessionCookie();
      // Keep using the app until the access token has expired and portcullis has refreshed
      // the session in an auth subrequest: every reload shows alice's page.
      await waitUntil('a refresh_token grant', (ACCESS_TOKEN_TTL + 10) * 1000, async () => {
        await page.reload();
        assert.equal(page.url(), deepLink);
        assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
        return idp.refreshes() > before;
      });
      assert.equal(idp.refreshes(), before + 1, 'one refresh per expiry');
      // The new cookie came with the 202, and nginx handed it on with the page.
      const renewed = await sessionCookie();
      assert.notEqual(renewed, old, 'the refreshed session cookie did not reach the browser');
      await page.reload();
      assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
    }));

  it('a session refreshed during a check that refuses the request reaches the browser too', (t) =>
    step(t, 'refresh-on-403', async () => {
      // bob, in a browser of his own, asks for /admin, which needs a group he lacks, until his
      // access token has expired: the refresh then happens in a check that answers 403, and
      // its cookie must not be lost (the browser would keep a refresh token already spent).
      const admin = nginx.url('/admin');
      const ctx = await newContext(browser);
      try {
        const p = await ctx.newPage();
        extraPages.push(p);
        await p.goto(admin);
        await p.waitForURL(onIdp);
        await signInAtIdp(p, idp, 'bob');
        await p.waitForURL(admin);
        const bobCookie = async () => {
          const value = (await ctx.cookies(admin)).find((c) => c.name === '_portcullis')?.value;
          assert.ok(value, 'bob has no session cookie');
          if (!sessionValues.includes(value)) sessionValues.push(value);
          return value;
        };
        const before = idp.refreshes();
        const old = await bobCookie();
        await waitUntil('a refresh_token grant', (ACCESS_TOKEN_TTL + 10) * 1000, async () => {
          const r = await p.reload();
          assert.equal(r.status(), 403);
          return idp.refreshes() > before;
        });
        assert.equal(idp.refreshes(), before + 1, 'one refresh per expiry');
        assert.equal(reached('/admin'), 0, 'a refused request reached the application');
        const renewed = await bobCookie();
        assert.notEqual(renewed, old, 'the cookie refreshed on a 403 did not reach the browser');
      } finally {
        extraPages.length = 0;
        await ctx.close();
      }
    }));

  it('identity headers a client forges never reach the application', (t) =>
    step(t, 'forged-headers', async () => {
      // Every forged value says "mallory", so that any of them is easy to spot upstream.
      const forged = {
        accept: 'application/json',
        'x-forwarded-user': 'mallory',
        'x-forwarded-email': 'mallory@example.com',
        'x-forwarded-groups': 'mallory-admins',
        'x-forwarded-preferred-username': 'mallory',
        'x-forwarded-access-token': 'mallory',
        'x-auth-request-user': 'mallory',
        'x-auth-request-email': 'mallory@example.com',
        'x-auth-request-groups': 'mallory-admins',
        'remote-user': 'mallory',
        x_forwarded_user: 'mallory',
        // Facts about the original request are nginx's to report, and path overrides must not
        // reach an application that might obey them.
        'x-original-uri': '/mallory',
        'x-forwarded-uri': '/mallory',
        'x-original-url': '/mallory',
        'x-rewrite-url': '/mallory',
      };
      // With alice's session (the browser's cookies): alice, and only alice.
      const r = await context.request.get(nginx.url('/api/whoami'), {
        headers: forged,
        maxRedirects: 0,
      });
      assert.equal(r.status(), 200, await r.text());
      const seen = await r.json();
      assert.equal(seen.uri, '/api/whoami');
      assert.deepEqual(echoed(seen, 'x-forwarded-user'), ['alice']);
      assert.deepEqual(echoed(seen, 'x-forwarded-email'), ['alice@example.com']);
      assert.deepEqual(echoed(seen, 'x-forwarded-preferred-username'), ['alice']);
      const mallory = seen.headers.filter(([, v]) => /mallory/.test(v));
      assert.deepEqual(mallory, [], 'a forged header reached the application');

      // Without a session the forged headers get nowhere.
      const anon = await get(nginx.url('/api/anonymous'), forged);
      assert.equal(anon.status, 401, anon.body);
      assert.equal(reached('/api/anonymous'), 0, 'an anonymous request reached the application');
    }));

  it('without a session, fetch() and scripts get 401 while page loads go to log in', (t) =>
    step(t, 'api-401', async () => {
      await context.clearCookies({ name: '_portcullis' });
      const pageLoads = reached(DEEP_PATH);
      for (const init of [{ headers: { accept: 'application/json' } }, {}]) {
        const r = await fetchFromPage('/api/x', init);
        assert.equal(r.type, 'basic', `a redirect instead of a 401 (${JSON.stringify(init)})`);
        assert.equal(r.status, 401, r.body);
        assert.equal(JSON.parse(r.body).error, 'unauthorized');
        assert.match(r.wwwAuthenticate ?? '', /^Bearer /);
      }
      // What the map in the recipe tells apart, as the requests arrive.
      const chrome =
        'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
      const cases = [
        [{ 'sec-fetch-mode': 'navigate', accept: chrome }, 302],
        [{ accept: chrome }, 302], // a browser without Sec-Fetch-Mode
        [{ 'sec-fetch-mode': 'cors', accept: 'text/html' }, 401], // htmx and the like
        [{ accept: '*/*' }, 401], // curl
        [{}, 401],
      ];
      for (const [headers, status] of cases) {
        const r = await rawGet(nginx.url(DEEP_PATH), headers);
        assert.equal(r.status, status, `${JSON.stringify(headers)}: ${r.body}`);
        if (status === 302) {
          const login = new URL(r.headers.location);
          assert.ok(onIdp(login), `login redirect to ${login}`);
          assert.equal(
            login.searchParams.get('redirect_uri'),
            nginx.url('/oauth2/callback'),
          );
        }
      }
      assert.equal(reached('/api/x'), 0, 'an anonymous request reached the application');
      assert.equal(reached(DEEP_PATH), pageLoads, 'an anonymous request reached the application');
    }));

  it('bearer tokens pass through nginx; a bad one gets 401', (t) =>
    step(t, 'bearer', async () => {
      const token = await machineToken(idp);
      const r = await get(nginx.url('/api/reports'), {
        authorization: `Bearer ${token}`,
        accept: 'application/json',
      });
      assert.equal(r.status, 200, r.body);
      const seen = JSON.parse(r.body);
      assert.deepEqual(echoed(seen, 'x-forwarded-user'), ['ci-runner']);

      const bad = await get(nginx.url('/api/refused'), {
        authorization: 'Bearer not-a-token',
        accept: 'application/json',
      });
      assert.equal(bad.status, 401, bad.body);
      assert.match(bad.headers.get('content-type') ?? '', /^application\/json/);
      assert.match(bad.headers.get('www-authenticate') ?? '', /invalid_token/);
      assert.equal(reached('/api/refused'), 0, 'a bad token reached the application');
    }));

  it('no token or cookie value is logged', (t) =>
    step(t, 'logs', async () => {
      for (const [what, log] of [
        ['portcullis', proxy.log()],
        ['nginx', nginx.log()],
      ]) {
        assert.doesNotMatch(log, /eyJ/, `a JWT in the ${what} log`);
        for (const value of sessionValues) {
          assert.ok(!log.includes(value), `the session cookie in the ${what} log`);
        }
      }
    }));
});
