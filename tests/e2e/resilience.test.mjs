// The identity provider changes under a running portcullis: it rotates its signing keys, then
// goes away for a while and comes back. portcullis is never restarted.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  get,
  launchBrowser,
  newContext,
  shownHeader,
  signInAtIdp,
  startStack,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';
import { API_AUDIENCE, machineToken } from './idp.mjs';

const kidOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url')).kid;

describe('key rotation and an outage at the provider', { timeout: 90_000 }, () => {
  let stack;
  let idp;
  let proxy;
  let browser;
  let alice; // a page signed in before anything happens
  let page; // the page of the current step
  let oldToken;
  let newToken;
  const step = stepper('resilience', () => ({
    pages: [alice, page].filter(Boolean),
    logs: { portcullis: proxy?.log(), provider: idp?.errors.join('\n') },
  }));

  /** GET `path` with a Bearer token: the status and the caller the upstream saw. */
  async function withBearer(token, path = '/api/whoami') {
    const r = await get(proxy.url(path), { authorization: `Bearer ${token}`, accept: 'application/json' });
    const user = r.status === 200 ? JSON.parse(r.body).headers.find(([k]) => k === 'x-forwarded-user')?.[1] : null;
    return { status: r.status, user, challenge: r.headers.get('www-authenticate') };
  }

  async function readyBody() {
    const r = await get(proxy.url('/ready'));
    return `${r.status} ${r.body}`;
  }

  /** A fresh browser profile signing in as `user`; resolves on the page it returned to. */
  async function signIn(user, path) {
    const p = await (await newContext(browser)).newPage();
    page = p;
    await p.goto(proxy.url(path));
    await signInAtIdp(p, idp, user);
    await p.waitForURL(proxy.url(path));
    assert.deepEqual(await shownHeader(p, 'x-forwarded-user'), [user]);
    return p;
  }

  before(async () => {
    stack = await startStack({
      proxy: {
        // Notice the outage (and its end) within about a second.
        oidcExtra: 'health_check_interval = "1s"',
        extra: `[bearer]\naudiences = ["${API_AUDIENCE}"]\n`,
      },
    });
    ({ idp, proxy } = stack);
    browser = await launchBrowser();
  });

  after(() => teardown(() => browser?.close(), () => stack?.close()));

  it('before: a browser session and a client-credentials token both work', (t) =>
    step(t, 'before', async () => {
      alice = await signIn('alice', '/before');
      oldToken = await machineToken(idp);
      assert.deepEqual(await withBearer(oldToken), { status: 200, user: 'ci-runner', challenge: null });
    }));

  it('rotation: the new key is fetched once, no restart; the withdrawn key stops working', (t) =>
    step(t, 'rotation', async () => {
      const fetchesBefore = idp.jwksFetches();
      const [newRsa, newEc] = idp.rotateKeys();
      newToken = await machineToken(idp);
      assert.equal(kidOf(newToken), newEc);
      assert.deepEqual((await withBearer(newToken)).status, 200);
      assert.equal(idp.jwksFetches(), fetchesBefore + 1, 'one JWKS refetch for the new key');
      // The same token again: remembered, no further fetch.
      assert.deepEqual((await withBearer(newToken)).status, 200);
      assert.equal(idp.jwksFetches(), fetchesBefore + 1);

      // The old token's key is gone from the provider's set: it no longer passes, even though
      // portcullis had verified and remembered it.
      const old = await withBearer(oldToken);
      assert.equal(old.status, 401);
      assert.match(old.challenge, /invalid_token/);

      // A new login: its ID token is signed with the new RSA key, already known.
      const bob = await signIn('bob', '/after-rotation');
      await bob.context().close();
      assert.equal(idp.jwksFetches(), fetchesBefore + 1);
      assert.ok(newRsa);
      // Alice's session never depended on the keys.
      await alice.reload();
      assert.deepEqual(await shownHeader(alice, 'x-forwarded-user'), ['alice']);
    }));

  it('outage: sessions and verified tokens keep working, /ready says degraded, login says 503', (t) =>
    step(t, 'outage', async () => {
      await idp.stop();
      await waitUntil('/ready to report degraded', 15_000, async () =>
        (await readyBody()).startsWith('200 degraded'),
      );
      assert.match(await readyBody(), /identity provider unreachable/);

      await alice.reload();
      assert.deepEqual(await shownHeader(alice, 'x-forwarded-user'), ['alice']);
      assert.deepEqual(await withBearer(newToken), { status: 200, user: 'ci-runner', challenge: null });

      // Someone new tries to sign in: a clear page, not the browser's connection error.
      const p = await (await newContext(browser)).newPage();
      page = p;
      const resp = await p.goto(proxy.url('/needs-login'));
      assert.equal(resp.status(), 503);
      assert.equal(new URL(p.url()).origin, proxy.base);
      assert.match(await p.locator('body').innerText(), /Sign-in is unavailable/);
      assert.equal(resp.headers()['retry-after'], '5');
    }));

  it('recovery: the provider is back and logins work, without restarting portcullis', (t) =>
    step(t, 'recovery', async () => {
      await idp.restart();
      await waitUntil('/ready to report OK', 15_000, async () => (await readyBody()) === '200 OK');
      const bob = await signIn('bob', '/after-outage');
      await bob.context().close();
      assert.equal((await withBearer(await machineToken(idp))).status, 200);
    }));
});
