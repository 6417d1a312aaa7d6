// End to end with real parts: the portcullis binary in front of an echo upstream, logging in
// at oidc-provider (a certified OpenID provider), driven by Debian's Chromium.
//
// Run from this directory: `npm ci && node --test` (build the proxy first: `cargo build`).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  fetchFrom,
  launchBrowser,
  newContext,
  shownHeader,
  signInAtIdp,
  startStack,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';

const DEEP_PATH = '/reports/q3?year=2026&tab=cost';
// The provider's access tokens live this long; portcullis refreshes the session after that.
const ACCESS_TOKEN_TTL = 3;

describe('portcullis with oidc-provider and Chromium', { timeout: 90_000 }, () => {
  let stack;
  let idp;
  let proxy;
  let browser;
  let context;
  let page;
  let tabs = [];
  let deepLink;
  const step = stepper('login', () => ({
    pages: [page, ...tabs].filter(Boolean),
    logs: { portcullis: proxy?.log(), provider: idp?.errors.join('\n') },
  }));

  before(async () => {
    stack = await startStack({ idp: { accessTokenTtl: ACCESS_TOKEN_TTL } });
    ({ idp, proxy } = stack);
    deepLink = proxy.url(DEEP_PATH);
    browser = await launchBrowser();
    context = await newContext(browser);
    page = await context.newPage();
  });

  after(() => teardown(() => browser?.close(), () => stack?.close()));

  const onIdp = (url) => url.origin === idp.issuer;

  const sessionCookies = async (ctx) =>
    (await ctx.cookies(proxy.base))
      .map((c) => c.name)
      .filter((n) => n.startsWith('_portcullis') && !n.includes('_flow_'));

  /** The identity portcullis forwarded, as the upstream's page shows it. */
  async function assertShowsAlice(p) {
    assert.deepEqual(await shownHeader(p, 'x-forwarded-user'), ['alice']);
    assert.deepEqual(await shownHeader(p, 'x-forwarded-email'), ['alice@example.com']);
    const [groups] = await shownHeader(p, 'x-forwarded-groups');
    assert.deepEqual(groups.split(',').map((g) => g.trim()).sort(), ['dev', 'sre']);
  }

  it('a deep link leads through the provider login back to itself, with the identity forwarded', (t) =>
    step(t, 'deep-link', async () => {
      await page.goto(deepLink);
      await page.waitForURL(onIdp);
      assert.match(new URL(page.url()).pathname, /^\/interaction\//);
      await signInAtIdp(page, idp, 'alice');
      await page.waitForURL(deepLink);
      assert.equal(page.url(), deepLink);
      assert.equal(await page.locator('#uri').textContent(), DEEP_PATH);
      await assertShowsAlice(page);
      // The proxy's own cookies never reach the application.
      for (const cookie of await shownHeader(page, 'cookie')) {
        assert.ok(!cookie.includes('_portcullis'), `cookie reached upstream: ${cookie}`);
      }
      assert.deepEqual(await sessionCookies(context), ['_portcullis']);
    }));

  it('fetch() from the page is authenticated by the session', (t) =>
    step(t, 'fetch-with-session', async () => {
      const r = await fetchFrom(page, '/api/x', { headers: { accept: 'application/json' } });
      assert.equal(r.status, 200, r.body);
      const seen = JSON.parse(r.body);
      assert.equal(seen.uri, '/api/x');
      const get = (n) => seen.headers.filter(([k]) => k === n).map(([, v]) => v);
      assert.deepEqual(get('x-forwarded-user'), ['alice']);
      // And with the browser's own defaults (Accept: */*).
      assert.equal((await fetchFrom(page, '/api/x')).status, 200);
    }));

  it('the session outlives the access token through a refresh, with no visible redirect', (t) =>
    step(t, 'refresh', async () => {
      const before = idp.refreshes();
      const visited = [];
      const onNav = (frame) => frame === page.mainFrame() && visited.push(frame.url());
      page.on('framenavigated', onNav);
      try {
        // Keep using the app until the provider has seen a refresh: each reload must show
        // alice's page straight away, before and after her access token expires.
        await waitUntil('a refresh_token grant at the provider', (ACCESS_TOKEN_TTL + 10) * 1000, async () => {
          await page.reload();
          assert.equal(page.url(), deepLink);
          await assertShowsAlice(page);
          return idp.refreshes() > before;
        });
      } finally {
        page.off('framenavigated', onNav);
      }
      assert.ok(visited.length > 0);
      const elsewhere = visited.filter((u) => u !== deepLink);
      assert.deepEqual(elsewhere, [], 'the browser was sent somewhere during the refresh');
      assert.equal(idp.refreshes(), before + 1, 'one refresh per expiry');
      // The refreshed session keeps working, for pages and for fetch().
      const r = await fetchFrom(page, '/api/after-refresh', { headers: { accept: 'application/json' } });
      assert.equal(r.status, 200, r.body);
    }));

  it('two tabs that start a login at once both end signed in on their own page', (t) =>
    step(t, 'two-tabs', async () => {
      const ctx = await newContext(browser);
      tabs = [await ctx.newPage(), await ctx.newPage()];
      const links = [proxy.url('/tab/one?n=1'), proxy.url('/tab/two?n=2')];
      // Where the second tab was sent to authorize (its own state, nonce and PKCE challenge).
      const authorize = tabs[1].waitForRequest((r) => {
        const u = new URL(r.url());
        return onIdp(u) && u.pathname === '/auth';
      });
      authorize.catch(() => {});
      // Both leave for the provider before either comes back: two logins in flight.
      await Promise.all(tabs.map((p, i) => p.goto(links[i])));
      await Promise.all(tabs.map((p) => p.waitForURL(onIdp)));
      const secondAuthorize = (await authorize).url();
      // The person signs in in the first tab. (Submitting both login forms at once would
      // test the provider, which refuses an interaction whose session changed meanwhile.)
      await signInAtIdp(tabs[0], idp, 'alice');
      await tabs[0].waitForURL(links[0]);
      await assertShowsAlice(tabs[0]);
      // The second tab's login, still in flight, goes on: the provider knows alice now and
      // sends it straight back with the second login's state, which portcullis still holds.
      await tabs[1].goto(secondAuthorize);
      await tabs[1].waitForURL(links[1]);
      await assertShowsAlice(tabs[1]);
      assert.deepEqual(await sessionCookies(ctx), ['_portcullis']);
      await ctx.close();
      tabs = [];
    }));

  it('once the session is gone, fetch() gets a 401, not a redirect', (t) =>
    step(t, 'fetch-without-session', async () => {
      const ctx = await newContext(browser);
      const p = await ctx.newPage();
      tabs = [p];
      await p.goto(proxy.url('/ping'));
      for (const init of [{}, { headers: { accept: 'application/json' } }]) {
        const r = await fetchFrom(p, '/api/x', init);
        assert.equal(r.type, 'basic', `a redirect instead of a 401 (${JSON.stringify(init)})`);
        assert.equal(r.status, 401, r.body);
        assert.equal(JSON.parse(r.body).error, 'unauthorized');
      }
      await ctx.close();
      tabs = [];
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
      await page.locator('form input[name="login"]').waitFor();
      assert.deepEqual(await sessionCookies(context), [], 'no session cookie is left');

      // fetch() from a page of the proxy's origin: a 401, never a redirect to log in.
      await page.goto(proxy.url('/ping'));
      const r = await fetchFrom(page, '/api/x');
      assert.equal(r.type, 'basic', 'a redirect instead of a 401');
      assert.equal(r.status, 401, r.body);

      // The deep link asks for a login again: the provider's session is gone too.
      await page.goto(deepLink);
      await page.waitForURL(onIdp);
      await page.locator('form input[name="login"]').waitFor();
      assert.match(new URL(page.url()).pathname, /^\/interaction\//);
    }));
});
