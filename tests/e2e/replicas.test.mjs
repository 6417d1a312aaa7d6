// Three portcullis replicas sharing one Redis (`session.store = "redis"`), in front of
// oidc-provider rotating its refresh tokens: a burst of requests of one session, spread over
// the replicas right after its access token expired, costs exactly one refresh at the
// provider, signs nobody out and fails no request.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  freePort,
  launchBrowser,
  newContext,
  requireTools,
  scratchDir,
  signInAtIdp,
  startRedis,
  startReplicas,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';
import { startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

const ACCESS_TOKEN_TTL = 2;

describe('three replicas, one Redis, a rotating provider', { timeout: 90_000 }, () => {
  let scratch;
  let redis;
  let idp;
  let upstream;
  let browser;
  let page;
  const replicas = [];
  const step = stepper('replicas', () => ({
    pages: page ? [page] : [],
    logs: {
      ...Object.fromEntries(replicas.map((p, i) => [`portcullis-${i}`, p.log()])),
      provider: idp?.errors.join('\n'),
    },
  }));

  before(async () => {
    requireTools();
    scratch = scratchDir();
    redis = await startRedis(scratch.dir);
    const ports = [await freePort(), await freePort(), await freePort()];
    idp = await startIdp({
      redirectUris: ports.map((p) => `http://127.0.0.1:${p}/oauth2/callback`),
      postLogoutRedirectUris: [],
      accessTokenTtl: ACCESS_TOKEN_TTL,
      // Every refresh token is spent once: a second use is taken as theft and ends the grant.
      options: { rotateRefreshToken: true },
    });
    upstream = await startUpstream();
    replicas.push(...(await startReplicas({ dir: scratch.dir, ports, idp, upstream, redis })));
    browser = await launchBrowser();
    page = await (await newContext(browser)).newPage();
  });

  after(() =>
    teardown(
      () => browser?.close(),
      ...replicas.map((p) => () => p.stop()),
      () => idp?.close(),
      () => upstream?.close(),
      () => redis?.stop(),
      () => scratch?.remove(),
    ),
  );

  it('a burst after expiry is one refresh, no sign-out, no failure', async (t) => {
    let cookie;
    await step(t, 'sign in on the first replica', async () => {
      const target = replicas[0].url('/app');
      await page.goto(target);
      await signInAtIdp(page, idp, 'alice');
      await page.waitForURL(target);
      const cookies = await page.context().cookies(replicas[0].base);
      cookie = cookies
        .filter((c) => c.name.startsWith('_portcullis') && !c.name.includes('_flow_'))
        .map((c) => `${c.name}=${c.value}`)
        .join('; ');
      assert.ok(cookie, 'a session cookie');
      assert.equal(idp.refreshes(), 0);
    });
    await step(t, '30 requests over three replicas after expiry', async () => {
      const expired = Date.now() + (ACCESS_TOKEN_TTL + 1) * 1000;
      await waitUntil('the access token to expire', 10_000, async () => Date.now() >= expired);
      const calls = Array.from({ length: 30 }, (_, i) =>
        fetch(replicas[i % 3].url('/app'), {
          headers: { cookie, accept: 'application/json' },
          redirect: 'manual',
        }).then((r) => r.status),
      );
      const statuses = await Promise.all(calls);
      assert.deepEqual(statuses, Array(30).fill(200), statuses.join(' '));
      assert.equal(idp.refreshes(), 1, 'exactly one refresh_token grant');
      assert.deepEqual(idp.errors, [], 'no grant refused at the provider');
    });
    await step(t, 'the session goes on on every replica', async () => {
      for (const replica of replicas) {
        const r = await fetch(replica.url('/app'), {
          headers: { cookie, accept: 'application/json' },
          redirect: 'manual',
        });
        assert.equal(r.status, 200);
        const seen = JSON.parse(await r.text());
        assert.deepEqual(
          seen.headers.filter(([k]) => k === 'x-forwarded-user').map(([, v]) => v),
          ['alice'],
        );
      }
    });
  });
});
