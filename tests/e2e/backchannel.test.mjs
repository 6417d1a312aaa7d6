// OpenID Connect Back-Channel Logout with oidc-provider's backchannelLogout feature: alice
// signs in through one of two replicas that share Redis, then signs out at the provider; the
// provider posts a logout token, and her next request on either replica is refused. The token
// the provider sent, replayed, and a forged one are refused with 400.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  freePort,
  launchBrowser,
  newContext,
  requireTools,
  scratchDir,
  signInAtIdp,
  startRecorder,
  startRedis,
  startReplicas,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';
import { CLIENT_ID, startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

describe('back-channel logout from oidc-provider', { timeout: 90_000 }, () => {
  let scratch;
  let redis;
  let idp;
  let upstream;
  let recorder;
  let browser;
  let page;
  const replicas = [];
  const step = stepper('backchannel', () => ({
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
    const ports = [await freePort(), await freePort()];
    recorder = await startRecorder(`http://127.0.0.1:${ports[0]}/oauth2/backchannel_logout`);
    idp = await startIdp({
      redirectUris: ports.map((p) => `http://127.0.0.1:${p}/oauth2/callback`),
      postLogoutRedirectUris: [],
      features: { backchannelLogout: { enabled: true } },
      // The provider refuses to call special-use addresses (SSRF protection); here the
      // relying party is on loopback, as everything in the tests is.
      options: {
        fetch: (url, { dispatcher: _ssrfGuard, ...rest }) => globalThis.fetch(url, rest),
      },
      webClient: {
        backchannel_logout_uri: recorder.url,
        backchannel_logout_session_required: true,
      },
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
      () => recorder?.close(),
      () => idp?.close(),
      () => upstream?.close(),
      () => redis?.stop(),
      () => scratch?.remove(),
    ),
  );

  it('signing out at the provider ends the session on every replica', async (t) => {
    let cookie;
    const status = (replica) =>
      fetch(replica.url('/app'), {
        headers: { cookie, accept: 'application/json' },
        redirect: 'manual',
      }).then((r) => r.status);
    await step(t, 'sign in', async () => {
      const target = replicas[0].url('/app');
      await page.goto(target);
      await signInAtIdp(page, idp, 'alice');
      await page.waitForURL(target);
      cookie = (await page.context().cookies(replicas[0].base))
        .filter((c) => c.name.startsWith('_portcullis') && !c.name.includes('_flow_'))
        .map((c) => `${c.name}=${c.value}`)
        .join('; ');
      for (const replica of replicas) assert.equal(await status(replica), 200);
    });
    await step(t, 'sign out at the provider', async () => {
      await page.goto(`${idp.issuer}/session/end`);
      await page.locator('button[name="logout"][value="yes"]').click();
      await waitUntil('the provider to post the logout token', 10_000, () => recorder.bodies.length > 0);
      const token = new URLSearchParams(recorder.bodies[0]).get('logout_token');
      const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
      assert.equal(claims.aud, CLIENT_ID);
      assert.ok(claims.sid, 'the provider names the login');
    });
    await step(t, 'every replica refuses the cookie', async () => {
      for (const replica of replicas) assert.equal(await status(replica), 401);
    });
    await step(t, 'the same token again, and a forged one, are refused', async () => {
      const url = replicas[1].url('/oauth2/backchannel_logout');
      const post = (body) =>
        fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body,
        }).then((r) => r.status);
      assert.equal(await post(recorder.bodies[0]), 400, 'replayed');
      const token = new URLSearchParams(recorder.bodies[0]).get('logout_token');
      const [h, p, s] = token.split('.');
      const forgedPayload = Buffer.from(
        JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url')), jti: 'another', sub: 'bob' }),
      ).toString('base64url');
      const forged = `${h}.${forgedPayload}.${s}`;
      assert.equal(await post(new URLSearchParams({ logout_token: forged }).toString()), 400, 'forged');
    });
  });
});
