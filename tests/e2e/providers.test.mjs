// Several identity providers in one portcullis: two oidc-provider instances, each with a user
// alice whose `sub` is `alice`, driven by Chromium. The chooser page leads to the provider a
// person picks; a route chooses its own; the upstream tells the two alices apart; and a
// sign-out at one provider (its back-channel logout) ends only that provider's session.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  Proxy,
  freePort,
  launchBrowser,
  newContext,
  requireTools,
  scratchDir,
  shownHeader,
  signInAtIdp,
  startRecorder,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';
import { startIdp } from './idp.mjs';
import { startUpstream } from './upstream.mjs';

describe('two providers in one portcullis', { timeout: 90_000 }, () => {
  let scratch;
  let a;
  let b;
  let upstream;
  let recorder;
  let proxy;
  let browser;
  const pages = [];
  const step = stepper('providers', () => ({
    pages,
    logs: { portcullis: proxy?.log(), a: a?.errors.join('\n'), b: b?.errors.join('\n') },
  }));

  before(async () => {
    requireTools();
    scratch = scratchDir();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    recorder = await startRecorder(`${base}/oauth2/backchannel_logout`);
    a = await startIdp({ redirectUris: [`${base}/oauth2/callback`], postLogoutRedirectUris: [] });
    b = await startIdp({
      redirectUris: [`${base}/oauth2/callback/b`],
      postLogoutRedirectUris: [],
      features: { backchannelLogout: { enabled: true } },
      // The provider refuses to call special-use addresses; everything here is on loopback.
      options: { fetch: (url, { dispatcher: _ssrfGuard, ...rest }) => globalThis.fetch(url, rest) },
      webClient: { backchannel_logout_uri: recorder.url, backchannel_logout_session_required: true },
    });
    upstream = await startUpstream();
    const provider = (id, idp, path) => `
[[oidc.providers]]
id = "${id}"
name = "Provider ${id.toUpperCase()}"
issuer = "${idp.issuer}"
client_id = "${idp.clientId}"
client_secret = "${idp.clientSecret}"
redirect_url = "${base}${path}"
`;
    proxy = Proxy.start(
      scratch.dir,
      port,
      `
[server]
listen = "127.0.0.1:${port}"
shutdown_grace = "1s"
[upstream]
url = "${upstream.url}"
${provider('a', a, '/oauth2/callback')}
${provider('b', b, '/oauth2/callback/b')}
[session]
secrets = ["${randomBytes(32).toString('base64')}"]
secure = false
[headers]
user_format = "{provider}:{user}"
[[routes]]
path = "/a-only"
provider = "a"
[logging]
format = "json"
`,
    );
    await proxy.waitReady();
    browser = await launchBrowser();
  });

  after(() =>
    teardown(
      () => browser?.close(),
      () => proxy?.stop(),
      () => recorder?.close(),
      () => a?.close(),
      () => b?.close(),
      () => upstream?.close(),
      () => scratch?.remove(),
    ),
  );

  const newPage = async () => {
    const page = await (await newContext(browser)).newPage();
    pages.push(page);
    return page;
  };
  // What a program holding the page's cookies gets at `path`. (Each page stays on the site of
  // one provider: both providers live on 127.0.0.1, and a browser keeps one cookie jar per
  // host whatever the port, so their session cookies would overwrite each other.)
  const status = (page, path = '/app') =>
    page.context()
      .cookies(proxy.base)
      .then((cookies) =>
        fetch(proxy.url(path), {
          headers: {
            accept: 'application/json',
            cookie: cookies.map((c) => `${c.name}=${c.value}`).join('; '),
          },
          redirect: 'manual',
        }),
      )
      .then((r) => r.status);

  let atA;
  let atB;

  it('a person picks a provider on the chooser page, and the upstream sees whose alice it is', (t) =>
    step(t, 'chooser', async () => {
      atB = await newPage();
      await atB.goto(proxy.url('/app'));
      assert.equal(new URL(atB.url()).pathname, '/oauth2/start');
      assert.equal(await atB.getByRole('link', { name: 'Provider A' }).count(), 1);
      await atB.getByRole('link', { name: 'Provider B' }).click();
      await atB.waitForURL((u) => u.origin === b.issuer);
      await signInAtIdp(atB, b, 'alice');
      await atB.waitForURL(proxy.url('/app'));
      assert.deepEqual(await shownHeader(atB, 'x-forwarded-user'), ['b:alice']);
      assert.deepEqual(await shownHeader(atB, 'x-forwarded-issuer'), [b.issuer]);
    }));

  it('a route that chooses its provider goes straight there', (t) =>
    step(t, 'route', async () => {
      atA = await newPage();
      await atA.goto(proxy.url('/a-only/report'));
      await atA.waitForURL((u) => u.origin === a.issuer);
      await signInAtIdp(atA, a, 'alice');
      await atA.waitForURL(proxy.url('/a-only/report'));
      assert.deepEqual(await shownHeader(atA, 'x-forwarded-user'), ['a:alice']);
      assert.deepEqual(await shownHeader(atA, 'x-forwarded-issuer'), [a.issuer]);
      // b's alice is not a's: the route takes none of b's sessions.
      assert.equal(await status(atB, '/a-only/report'), 401);
      assert.equal(await status(atA, '/a-only/report'), 200);
    }));

  it("signing out at one provider ends only that provider's session", (t) =>
    step(t, 'logout', async () => {
      assert.equal(await status(atA), 200);
      assert.equal(await status(atB), 200);
      await atB.goto(`${b.issuer}/session/end`);
      await atB.locator('button[name="logout"][value="yes"]').click();
      await waitUntil('b to post its logout token', 10_000, () => recorder.bodies.length > 0);
      await waitUntil("b's session to end", 10_000, async () => (await status(atB)) === 401);
      assert.equal(await status(atA), 200, "a's alice is still signed in");
    }));
});
