// Identity the upstream can verify, checked by verifiers nobody here wrote: AWS's own
// aws-jwt-verify (its ALB verifier, as an application written for ALB uses it) on
// x-amzn-oidc-data, and jose (npm) and PyJWT (PyPI) on X-Portcullis-Assertion, each fetching
// the keys from portcullis the way it fetches them from ALB or an issuer.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { AlbJwtVerifier } from 'aws-jwt-verify';
import { AlbJwksCache } from 'aws-jwt-verify/alb-cache';
import { createRemoteJWKSet, jwtVerify } from 'jose';

import {
  ROOT,
  launchBrowser,
  newContext,
  shownHeader,
  signInAtIdp,
  startStack,
  stepper,
  teardown,
} from './harness.mjs';

const SIGNER = 'arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/portcullis/0123456789abcdef';

describe('signed identity headers', { timeout: 90_000 }, () => {
  let stack;
  let browser;
  let page;
  const step = stepper('signed', () => ({
    pages: page ? [page] : [],
    logs: { portcullis: stack?.proxy?.log() },
  }));

  before(async () => {
    stack = await startStack({
      proxy: {
        extra: `
[headers]
style = "both"
assertion = true
[headers.alb]
signer = "${SIGNER}"
`,
      },
    });
    browser = await launchBrowser();
    page = await (await newContext(browser)).newPage();
  });

  after(() => teardown(() => browser?.close(), () => stack?.close()));

  let data;
  let assertion;

  it('a signed-in user reaches the application with both signed headers', (t) =>
    step(t, 'sign in', async () => {
      const target = stack.proxy.url('/app');
      await page.goto(target);
      await signInAtIdp(page, stack.idp, 'alice');
      await page.waitForURL(target);
      assert.deepEqual(await shownHeader(page, 'x-amzn-oidc-identity'), ['alice']);
      assert.equal((await shownHeader(page, 'x-amzn-oidc-accesstoken')).length, 1);
      assert.deepEqual(await shownHeader(page, 'x-forwarded-user'), ['alice']);
      [data] = await shownHeader(page, 'x-amzn-oidc-data');
      [assertion] = await shownHeader(page, 'x-portcullis-assertion');
      assert.ok(data && assertion);
    }));

  it("AWS's ALB verifier accepts x-amzn-oidc-data with the key portcullis publishes", async () => {
    // Its key cache as it is, with a fetcher that speaks plain HTTP: its own refuses
    // anything but https, and everything here is on loopback.
    const fetcher = { fetch: async (uri) => (await fetch(uri)).arrayBuffer() };
    const verifier = (props) =>
      AlbJwtVerifier.create(
        {
          albArn: SIGNER,
          issuer: stack.idp.issuer,
          clientId: stack.idp.clientId,
          jwksUri: stack.proxy.url('/oauth2/alb-keys'),
          ...props,
        },
        { jwksCache: new AlbJwksCache({ fetcher }) },
      );
    const claims = await verifier().verify(data);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.email, 'alice@example.com');
    assert.equal(claims.iss, stack.idp.issuer);
    // What it checks, it checks: another signer, another client, are refused.
    await assert.rejects(verifier({ albArn: SIGNER.replace('portcullis', 'other') }).verify(data));
    await assert.rejects(verifier({ clientId: 'another-client' }).verify(data));
  });

  it('jose verifies the assertion with the JWKS', async () => {
    const jwks = createRemoteJWKSet(new URL(stack.proxy.url('/.well-known/portcullis/jwks.json')));
    const expected = {
      issuer: stack.proxy.base,
      audience: stack.upstream.url,
      algorithms: ['ES256'],
      maxTokenAge: '5m',
    };
    const { payload } = await jwtVerify(assertion, jwks, expected);
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.groups.sort(), ['dev', 'sre']);
    assert.ok(payload.exp - payload.iat <= 300 && payload.jti);
    await assert.rejects(jwtVerify(assertion, jwks, { ...expected, audience: 'https://another.example' }));
  });

  it('PyJWT verifies the assertion with the JWKS', () => {
    const script = `
import sys, jwt
token, url, iss, aud = sys.argv[1:5]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["ES256"], issuer=iss, audience=aud,
                    options={"require": ["exp", "iat", "jti", "sub"]})
print(claims["sub"])
`;
    const run = spawnSync(
      'python3',
      ['-c', script, assertion, stack.proxy.url('/.well-known/portcullis/jwks.json'), stack.proxy.base, stack.upstream.url],
      { env: { ...process.env, PYTHONPATH: join(ROOT, 'target/python') }, encoding: 'utf8' },
    );
    assert.equal(run.status, 0, `PyJWT (is it in target/python? bash .ci/test installs it): ${run.stderr}`);
    assert.equal(run.stdout.trim(), 'alice');
  });

  it("a client's own copies never reach the application", async () => {
    const cookies = (await page.context().cookies(stack.proxy.base))
      .filter((c) => c.name.startsWith('_portcullis') && !c.name.includes('_flow_'))
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    const r = await fetch(stack.proxy.url('/app'), {
      headers: {
        accept: 'application/json',
        cookie: cookies,
        'x-portcullis-assertion': 'forged',
        'x-amzn-oidc-data': 'forged',
        'x-amzn-oidc-identity': 'mallory',
      },
    });
    const seen = await r.json();
    const values = (name) => seen.headers.filter(([n]) => n === name).map(([, v]) => v);
    assert.deepEqual(values('x-amzn-oidc-identity'), ['alice']);
    for (const name of ['x-portcullis-assertion', 'x-amzn-oidc-data']) {
      assert.equal(values(name).length, 1);
      assert.notEqual(values(name)[0], 'forged');
    }
  });
});
