// The README's "For scripts" section, run as written: a session cookie from a real browser
// login replayed with curl and Python, and client-credentials tokens from the real provider
// sent as Bearer with curl and Python.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { after, before, describe, it } from 'node:test';

import {
  launchBrowser,
  newContext,
  ROOT,
  signInAtIdp,
  startStack,
  stepper,
  teardown,
} from './harness.mjs';
import { API_AUDIENCE } from './idp.mjs';
import { assertSnippetIsFile, readmeSnippets } from './readme.mjs';

/** Runs `cmd args` with `env` added and `input` on stdin; resolves with its exit and output. */
function run(cmd, args, { env = {}, input = '' } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

/** The identity the echo upstream reports in its JSON answer. */
function forwardedUser(stdout) {
  const seen = JSON.parse(stdout);
  return seen.headers.filter(([k]) => k === 'x-forwarded-user').map(([, v]) => v);
}

describe('the README "For scripts" snippets', { timeout: 60_000 }, () => {
  let stack;
  let idp;
  let proxy;
  let browser;
  let page;
  let cookie;
  let env;
  const step = stepper('scripts', () => ({
    pages: page ? [page] : [],
    logs: { portcullis: proxy?.log(), provider: idp?.errors.join('\n') },
  }));

  before(async () => {
    stack = await startStack({
      proxy: { extra: `[bearer]\naudiences = ["${API_AUDIENCE}"]\n` },
    });
    ({ idp, proxy } = stack);
    browser = await launchBrowser();
    page = await (await newContext(browser)).newPage();
    env = {
      PORTCULLIS_URL: proxy.base,
      TOKEN_URL: idp.tokenEndpoint,
      CLIENT_ID: idp.machineClientId,
      CLIENT_SECRET: idp.machineClientSecret,
      SCOPE: 'api:read',
    };
  });

  after(() => teardown(() => browser?.close(), () => stack?.close()));

  it('a person signs in with the browser and copies the session cookie', (t) =>
    step(t, 'browser-login', async () => {
      await page.goto(proxy.url('/'));
      await signInAtIdp(page, idp, 'alice');
      await page.waitForURL(proxy.url('/'));
      const cookies = await page.context().cookies(proxy.base);
      const session = cookies.find((c) => c.name === '_portcullis');
      assert.ok(session, `no _portcullis cookie among ${cookies.map((c) => c.name)}`);
      cookie = session.value;
    }));

  it('every snippet runs and reaches the upstream as the right caller', (t) =>
    step(t, 'snippets', async () => {
      const blocks = readmeSnippets('For scripts');
      assert.ok(blocks.length >= 4, `only ${blocks.length} snippets found`);
      for (const block of blocks) {
        const where = `README.md:${block.line} (${block.lang})`;
        const bearer = /Bearer/.test(block.code);
        const expected = bearer ? idp.machineClientId : 'alice';
        let result;
        let rejected;
        if (block.file) {
          assertSnippetIsFile(block);
          assert.equal(block.lang, 'python', `${where}: only Python files are run`);
          result = await run('python3', [block.file], { env: { ...env, PORTCULLIS_COOKIE: cookie } });
          rejected = await run('python3', [block.file], {
            env: { ...env, PORTCULLIS_COOKIE: 'forged', CLIENT_SECRET: 'wrong' },
          });
        } else {
          assert.equal(block.lang, 'sh', `${where}: no test knows how to run this snippet`);
          const code = block.code
            .replaceAll('https://app.example.com', proxy.base)
            .replaceAll('https://idp.example.com/token', idp.tokenEndpoint);
          const sh = (input, secret) =>
            run('bash', ['-euo', 'pipefail', '-c', code], {
              env: { ...env, CLIENT_SECRET: secret },
              input,
            });
          result = await sh(`${cookie}\n`, env.CLIENT_SECRET);
          rejected = await sh('forged\n', 'wrong');
        }
        assert.equal(result.code, 0, `${where} failed:\n${result.stdout}\n${result.stderr}`);
        assert.deepEqual(forwardedUser(result.stdout), [expected], `${where}: ${result.stdout}`);
        // The same snippet with a forged cookie or a wrong client secret must fail loudly.
        assert.notEqual(rejected.code, 0, `${where} succeeded with bad credentials`);
      }
      // Nothing a script sent ends up in the proxy's log.
      assert.ok(!proxy.log().includes(cookie), 'the session cookie is in the log');
      assert.ok(!/eyJ[\w-]{10,}/.test(proxy.log()), 'a token is in the log');
    }));
});

