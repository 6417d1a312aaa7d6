// `portcullis login`, `portcullis curl` and `portcullis token`, as an SRE's script uses them:
// the device sign-in (RFC 8628) at oidc-provider (its deviceFlow feature), the person's step
// done by Chromium, the session kept in a 0600 file, refreshed on the way when its tokens run
// out, and a clear "log in again" once it has ended.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  BINARY,
  launchBrowser,
  newContext,
  startStack,
  stepper,
  teardown,
  waitUntil,
} from './harness.mjs';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

describe('portcullis login / curl / token', { timeout: 120_000 }, () => {
  let stack;
  let browser;
  let page;
  let home;
  let base;
  const step = stepper('login-cli', () => ({
    pages: page ? [page] : [],
    logs: { portcullis: stack?.proxy?.log(), provider: stack?.idp?.errors.join('\n') },
  }));
  const env = () => ({ ...process.env, XDG_CONFIG_HOME: home, RUST_LOG: 'off' });
  /**
   * Runs a command to its end, without blocking this process: the provider answers from it
   * (a refresh on the way needs it).
   */
  const exec = (file, args, options = {}) =>
    new Promise((resolve) => {
      execFile(file, args, { encoding: 'utf8', timeout: 30_000, ...options }, (error, stdout, stderr) =>
        resolve({ status: error ? (error.code ?? null) : 0, stdout, stderr }),
      );
    });
  const run = (...args) => exec(BINARY, args, { env: env() });

  before(async () => {
    stack = await startStack({
      idp: {
        // Short access tokens: portcullis refreshes the session soon after the sign-in.
        accessTokenTtl: 3,
        features: { deviceFlow: { enabled: true } },
        webClient: { grant_types: ['authorization_code', 'refresh_token', DEVICE_GRANT] },
      },
    });
    base = stack.proxy.base;
    home = stack.scratch.dir;
    browser = await launchBrowser();
    page = await (await newContext(browser)).newPage();
  });

  after(() => teardown(() => browser?.close(), () => stack?.close()));

  it('login shows a code, the person approves it in a browser, the session is kept 0600', (t) =>
    step(t, 'login', async () => {
      const login = spawn(BINARY, ['login', base], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let said = '';
      login.stderr.setEncoding('utf8');
      login.stderr.on('data', (d) => (said += d));
      const exited = new Promise((resolve) => login.on('exit', resolve));
      await waitUntil('portcullis login to show where to go', 20_000, () => /open (http\S+)/.test(said));
      const where = said.match(/open (http\S+)/)[1];
      assert.ok(where.startsWith(`${stack.idp.issuer}/device`), where);
      // The person: confirms the code, signs in, consents.
      await page.goto(where);
      for (let i = 0; i < 6 && !/success/i.test(await page.content()); i++) {
        if (await page.locator('input[name="login"]').count()) {
          await page.locator('input[name="login"]').fill('alice');
          await page.locator('input[name="password"]').fill('not-checked-by-dev-login');
        }
        await Promise.all([
          page.waitForLoadState('load'),
          page.locator('button[type="submit"], input[type="submit"]').first().click(),
        ]);
      }
      assert.match(await page.content(), /success/i);
      assert.equal(await exited, 0, said);
      assert.match(said, /signed in; the session for/);
      const file = join(home, 'portcullis', 'sessions.json');
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(join(home, 'portcullis')).mode & 0o777, 0o700);
      const saved = JSON.parse(readFileSync(file, 'utf8'))[base];
      assert.match(saved.cookie, /^_portcullis=/);
      // The session never stood in a command line.
      assert.ok(!login.spawnargs.join(' ').includes(saved.cookie.split('=')[1]));
    }));

  it('curl sends the session; the application sees the person', async () => {
    const r = await run('curl', `${base}/api/whoami`, '-H', 'Accept: application/json');
    assert.equal(r.status, 0, r.stderr);
    const seen = JSON.parse(r.stdout);
    const user = seen.headers.filter(([n]) => n === 'x-forwarded-user').map(([, v]) => v);
    assert.deepEqual(user, ['alice']);
  });

  it('token prints a Cookie header, refreshed when the tokens ran out', async () => {
    const first = await run('token', base);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /^Cookie: _portcullis=/);
    // The provider's access token lives 3 s: portcullis refreshes the session and sets a new
    // cookie, which token keeps and prints.
    let latest = first.stdout;
    await waitUntil('the session to be refreshed', 20_000, async () => {
      const r = await run('token', base);
      assert.equal(r.status, 0, r.stderr);
      latest = r.stdout;
      return latest !== first.stdout;
    });
    assert.ok(stack.idp.refreshes() >= 1);
    const r = await exec('curl', ['-s', '-H', latest.trim(), '-H', 'Accept: application/json', `${base}/api/x`]);
    assert.equal(JSON.parse(r.stdout).uri, '/api/x', 'the printed header works for another tool');
  });

  it('once the session has ended, the commands say to log in again', async () => {
    const out = await run('curl', '-X', 'POST', `${base}/oauth2/sign_out`);
    assert.equal(out.status, 0, out.stderr);
    for (const args of [['curl', `${base}/api/x`], ['token', base]]) {
      const r = await run(...args);
      assert.equal(r.status, 2, `${args}: ${r.stdout} ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`run \`portcullis login ${base}\``));
    }
  });
});
