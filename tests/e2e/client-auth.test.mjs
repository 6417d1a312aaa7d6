// portcullis authenticates to the provider without a shared secret (`oidc.client_auth`):
// a browser login (and the session refresh after it) through oidc-provider, once with an
// RFC 7523 assertion (`private_key_jwt`) and once with a client certificate on the connection
// to the provider's mutual-TLS token endpoint (`tls_client_auth`, RFC 8705), in Chromium.

import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import {
  launchBrowser,
  newContext,
  scratchDir,
  shownHeader,
  signInAtIdp,
  startStack,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';
import { makePki } from './pki.mjs';

describe('portcullis authenticating to oidc-provider without a secret', { timeout: 120_000 }, () => {
  let scratch;
  let pki;
  let browser;
  let stack;
  let page;
  const step = stepper('client-auth', () => ({
    pages: page ? [page] : [],
    logs: { portcullis: stack?.proxy?.log(), provider: stack?.idp?.errors.join('\n') },
  }));

  before(async () => {
    scratch = scratchDir();
    pki = makePki(scratch.dir);
    browser = await launchBrowser();
  });

  after(() => teardown(() => browser?.close(), () => stack?.close(), () => scratch?.remove()));

  /** Signs alice in through portcullis, then waits for a session refresh (2 s tokens). */
  async function signInAndRefresh(t, label) {
    const context = await newContext(browser);
    page = await context.newPage();
    const { idp, proxy } = stack;
    await step(t, `${label}: sign-in`, async () => {
      await page.goto(proxy.url('/'));
      await page.waitForURL((u) => u.origin === idp.issuer);
      await signInAtIdp(page, idp, 'alice');
      await page.waitForURL(proxy.url('/'));
      assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
      assert.ok(idp.seen.grants.includes('authorization_code'));
    });
    await step(t, `${label}: refresh`, async () => {
      await waitUntil('a session refresh', 20_000, async () => {
        await page.reload();
        return idp.refreshes() > 0;
      });
      assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
    });
    await context.close();
  }

  it('private_key_jwt: an assertion signed with its key', async (t) => {
    const key = pki.issue('portcullis-rp-jwt', { dns: 'portcullis.rp' });
    const jwk = createPublicKey(createPrivateKey(key.keyPem)).export({ format: 'jwk' });
    stack = await startStack({
      idp: {
        accessTokenTtl: 2,
        webClient: {
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...jwk, use: 'sig', alg: 'ES256' }] },
        },
      },
      proxy: {
        clientAuth: `client_auth = "private_key_jwt"\nclient_key = "${key.key}"`,
      },
    });
    await signInAndRefresh(t, 'private_key_jwt');
    await step(t, 'private_key_jwt: no secret was ever sent', async () => {
      assert.deepEqual(stack.idp.errors, []);
    });
    await stack.close();
    stack = undefined;
  });

  it('tls_client_auth: its certificate on the mutual-TLS token endpoint', async (t) => {
    const server = pki.issue('provider', { server: true });
    const client = pki.issue('portcullis-rp', { dns: 'portcullis.rp' });
    stack = await startStack({
      idp: {
        accessTokenTtl: 2,
        tls: { key: server.keyPem, cert: server.certPem, ca: pki.ca.pem },
        webClient: {
          token_endpoint_auth_method: 'tls_client_auth',
          tls_client_auth_san_dns: 'portcullis.rp',
        },
      },
      proxy: {
        clientAuth: [
          'client_auth = "tls_client_auth"',
          `client_cert = "${client.cert}"`,
          `client_key = "${client.key}"`,
          `provider_ca = "${pki.ca.cert}"`,
        ].join('\n'),
      },
    });
    await signInAndRefresh(t, 'tls_client_auth');
    await step(t, 'tls_client_auth: the token endpoint was the mutual-TLS alias', async () => {
      const calls = stack.idp.seen.requests;
      assert.ok(calls.includes('mtls:/token'), calls.join(' '));
      assert.ok(!calls.includes('/token'), 'never the plain token endpoint');
    });
  });
});
