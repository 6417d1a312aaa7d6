// Programs as callers of a resource server, with clients nobody here wrote: oidc-provider
// issues certificate-bound tokens (RFC 8705, its mTLS features) to a client that
// authenticates with its certificate, and DPoP-bound tokens (RFC 9449, its dPoP feature) to
// an oauth4webapi client; curl and oauth4webapi then call portcullis with them.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

import * as oauth from 'oauth4webapi';
import { after, before, describe, it } from 'node:test';

import { freePort, Proxy, requireTools, scratchDir, stepper, teardown } from './harness.mjs';
import { API_AUDIENCE, API_SCOPE, startIdp } from './idp.mjs';
import { makePki } from './pki.mjs';
import { startUpstream } from './upstream.mjs';

const run = promisify(execFile);

/** curl, its status code and body; `args` before the URL. */
async function curl(url, args = []) {
  const { stdout } = await run('curl', [
    '-sS', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', ...args, url,
  ]);
  const cut = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(cut + 1)), body: stdout.slice(0, cut) };
}

/** The upstream's view of `x-forwarded-user`, from the echo's JSON. */
function forwardedUser(body) {
  return JSON.parse(body)
    .headers.filter(([k]) => k === 'x-forwarded-user')
    .map(([, v]) => v);
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));
}

describe('programs with sender-constrained tokens', { timeout: 90_000 }, () => {
  let scratch;
  let pki;
  let idp;
  let upstream;
  let proxy;
  let httpBase;
  let tlsBase;
  const dpopSecret = randomBytes(24).toString('base64url');
  const step = stepper('machines', () => ({
    pages: [],
    logs: { portcullis: proxy?.log(), provider: idp?.errors.join('\n') },
  }));

  before(async () => {
    requireTools({ browser: false });
    scratch = scratchDir();
    pki = makePki(scratch.dir);
    const server = pki.issue('server', { server: true });
    idp = await startIdp({
      redirectUris: ['http://127.0.0.1:1/oauth2/callback'],
      postLogoutRedirectUris: [],
      tls: { key: server.keyPem, cert: server.certPem, ca: pki.ca.pem },
      features: { dPoP: { enabled: true } },
      clients: [
        {
          // Authenticates with its certificate; its tokens are bound to it.
          client_id: 'mtls-runner',
          token_endpoint_auth_method: 'tls_client_auth',
          tls_client_auth_san_dns: 'mtls-runner.ci',
          tls_client_certificate_bound_access_tokens: true,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        },
        {
          client_id: 'dpop-runner',
          client_secret: dpopSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          dpop_bound_access_tokens: true,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        },
      ],
    });
    upstream = await startUpstream();
    const [httpPort, tlsPort] = [await freePort(), await freePort()];
    httpBase = `http://127.0.0.1:${httpPort}`;
    tlsBase = `https://127.0.0.1:${tlsPort}`;
    // A resource server: no browser login; the provider's tokens, bound or not.
    proxy = Proxy.start(
      scratch.dir,
      httpPort,
      `
[server]
listen = "127.0.0.1:${httpPort}"
shutdown_grace = "1s"

[[server.listeners]]
address = "127.0.0.1:${tlsPort}"
tls_cert = "${server.cert}"
tls_key = "${server.key}"
client_certs = "optional"
client_ca = "${pki.ca.cert}"

[upstream]
url = "${upstream.url}"

[session]
secrets = ["${randomBytes(32).toString('base64')}"]

[logging]
format = "json"

[bearer.dpop]
use_dpop_nonce = true

[[bearer.issuers]]
issuer = "${idp.issuer}"
audiences = ["${API_AUDIENCE}"]
user_claim = ["sub", "client_id"]
`,
    );
    await proxy.waitReady();
  });

  after(() =>
    teardown(
      () => proxy?.stop(),
      () => idp?.close(),
      () => upstream?.close(),
      () => scratch?.remove(),
    ),
  );

  it('takes a certificate-bound token only with its certificate', async (t) => {
    let token;
    let runner;
    let other;
    await step(t, 'the provider binds a token to the client certificate', async () => {
      runner = pki.issue('mtls-runner', { dns: 'mtls-runner.ci' });
      other = pki.issue('other', { dns: 'other.ci' });
      const got = await curl(idp.mtlsTokenEndpoint, [
        '--cacert', pki.ca.cert, '--cert', runner.cert, '--key', runner.key,
        '-d', 'grant_type=client_credentials', '-d', 'client_id=mtls-runner',
        '-d', `resource=${API_AUDIENCE}`, '-d', `scope=${API_SCOPE}`,
      ]);
      assert.equal(got.status, 200, got.body);
      token = JSON.parse(got.body).access_token;
      assert.ok(claimsOf(token).cnf?.['x5t#S256'], 'the token carries cnf.x5t#S256');
    });
    const call = (cert) =>
      curl(`${tlsBase}/api/reports`, [
        '--cacert', pki.ca.cert,
        '-H', `Authorization: Bearer ${token}`,
        '-H', 'Accept: application/json',
        ...(cert ? ['--cert', cert.cert, '--key', cert.key] : []),
      ]);
    await step(t, 'with its certificate: 200, as the client', async () => {
      const r = await call(runner);
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(forwardedUser(r.body), ['mtls-runner']);
    });
    await step(t, 'with another certificate of the same CA: 401', async () => {
      const r = await call(other);
      assert.equal(r.status, 401, r.body);
    });
    await step(t, 'without a certificate: 401', async () => {
      const r = await call(undefined);
      assert.equal(r.status, 401, r.body);
    });
  });

  it('takes a DPoP-bound token only with a fresh proof for the request', async (t) => {
    const client = { client_id: 'dpop-runner' };
    const insecure = { [oauth.allowInsecureRequests]: true };
    let DPoP;
    let token;
    const sent = [];
    const recording = (url, init) => {
      sent.push({ url, init });
      return fetch(url, init);
    };
    /** A call as oauth4webapi makes it, retrying once with the nonce portcullis asks for. */
    async function call(url, method = 'GET', customFetch = recording) {
      for (let attempt = 0; ; attempt++) {
        try {
          return await oauth.protectedResourceRequest(
            token, method, new URL(url), new Headers({ accept: 'application/json' }), null,
            { DPoP, ...insecure, [oauth.customFetch]: customFetch },
          );
        } catch (e) {
          if (attempt === 0 && oauth.isDPoPNonceError(e)) continue;
          if (e instanceof oauth.WWWAuthenticateChallengeError) return e.response;
          throw e;
        }
      }
    }

    await step(t, 'oauth4webapi gets a DPoP-bound token', async () => {
      const issuer = new URL(idp.issuer);
      const as = await oauth.processDiscoveryResponse(
        issuer,
        await oauth.discoveryRequest(issuer, insecure),
      );
      DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
      const response = await oauth.clientCredentialsGrantRequest(
        as, client, oauth.ClientSecretBasic(dpopSecret),
        { resource: API_AUDIENCE, scope: API_SCOPE },
        { DPoP, ...insecure },
      );
      const tokens = await oauth.processClientCredentialsResponse(as, client, response);
      assert.equal(tokens.token_type, 'dpop');
      token = tokens.access_token;
      assert.ok(claimsOf(token).cnf?.jkt, 'the token carries cnf.jkt');
    });
    await step(t, 'with its proof (and the nonce portcullis hands out): 200', async () => {
      const r = await call(`${httpBase}/api/reports`);
      const body = await r.text();
      assert.equal(r.status, 200, body);
      assert.deepEqual(forwardedUser(body), ['dpop-runner']);
      assert.equal(sent.length, 2, 'the first call was answered use_dpop_nonce, then retried');
      assert.ok(
        sent.some((s) => s.init.headers.authorization.startsWith('DPoP ')),
        'sent as Authorization: DPoP',
      );
    });
    await step(t, 'the same proof again: 401', async () => {
      const last = sent.at(-1);
      const r = await fetch(last.url, { method: 'GET', headers: last.init.headers });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate'), /invalid_dpop_proof/);
    });
    await step(t, 'a proof made for another URL: 401', async () => {
      const elsewhere = (url, init) => fetch(`${httpBase}/api/other`, init);
      const r = await call(`${httpBase}/api/reports`, 'GET', elsewhere);
      assert.equal(r.status, 401);
    });
    await step(t, 'a proof made for another method: 401', async () => {
      const asGet = (url, init) => fetch(url, { ...init, method: 'GET' });
      const r = await call(`${httpBase}/api/reports`, 'DELETE', asGet);
      assert.equal(r.status, 401);
    });
    await step(t, 'the bound token as a plain Bearer token: 401', async () => {
      const r = await fetch(`${httpBase}/api/reports`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate'), /DPoP/);
    });
  });
});
