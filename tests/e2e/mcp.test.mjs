// RFC 9728 with a client nobody here wrote: the Model Context Protocol SDK's client
// (@modelcontextprotocol/sdk) connects to an MCP server behind portcullis with nothing but the
// server's URL and its client credentials. portcullis' 401 names its resource metadata; the
// SDK reads it, finds oidc-provider as the authorization server, gets a token for the
// resource there, and calls a tool as that client.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import Provider from 'oidc-provider';

import { Proxy, freePort, proxyConfig, requireTools, scratchDir, teardown } from './harness.mjs';
import { startIdp } from './idp.mjs';

/** An MCP server (stateless Streamable HTTP) whose one tool says who portcullis vouched for. */
async function startMcpServer() {
  const server = createServer(async (req, res) => {
    const mcp = new McpServer({ name: 'whoami', version: '1.0.0' });
    mcp.tool('whoami', 'Who portcullis says is calling', async (extra) => ({
      content: [{ type: 'text', text: String(extra.requestInfo?.headers?.['x-forwarded-user'] ?? '-') }],
    }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      transport.close();
      mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

describe('an MCP client finds the authorization server from the 401', { timeout: 60_000 }, () => {
  let scratch;
  let idp;
  let mcp;
  let proxy;
  let resource;

  before(async () => {
    requireTools({ browser: false });
    scratch = scratchDir();
    const port = await freePort();
    resource = `http://127.0.0.1:${port}`;
    idp = await startIdp({
      redirectUris: [`${resource}/oauth2/callback`],
      postLogoutRedirectUris: [],
      // JWT access tokens for portcullis (RFC 8707 resource indicators), for this resource only.
      features: {
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => oneOf,
          useGrantedResource: async () => false,
          getResourceServerInfo: async (_ctx, r) => {
            if (r !== resource) throw new Provider.errors.InvalidTarget();
            return {
              scope: 'mcp:tools',
              audience: resource,
              accessTokenTTL: 600,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'ES256' } },
            };
          },
        },
      },
    });
    mcp = await startMcpServer();
    proxy = Proxy.start(
      scratch.dir,
      port,
      proxyConfig({ port, idp, upstream: mcp.url, extra: `[bearer]\naudiences = ["${resource}"]\n` }),
    );
    await proxy.waitReady();
  });

  after(() =>
    teardown(
      () => proxy?.stop(),
      () => mcp?.close(),
      () => idp?.close(),
      () => scratch?.remove(),
    ),
  );

  it("portcullis' 401 names its metadata, which names the provider", async () => {
    const r = await fetch(proxy.url('/mcp'), {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(r.status, 401);
    const challenge = r.headers.get('www-authenticate');
    const metadataUrl = `${resource}/.well-known/oauth-protected-resource`;
    assert.match(challenge, new RegExp(`^Bearer .*resource_metadata="${metadataUrl}"`));
    const doc = await (await fetch(metadataUrl)).json();
    assert.deepEqual(doc, {
      resource,
      authorization_servers: [idp.issuer],
      bearer_methods_supported: ['header'],
    });
  });

  it('the SDK discovers the provider, gets a token for the resource and calls a tool', async () => {
    const authProvider = new ClientCredentialsProvider({
      clientId: idp.machineClientId,
      clientSecret: idp.machineClientSecret,
      // The SDK refuses credentials for another authorization server than the one it finds.
      expectedIssuer: idp.issuer,
    });
    const client = new Client({ name: 'portcullis-e2e', version: '1.0.0' });
    const serverUrl = new URL(proxy.url('/mcp'));
    // The first connection meets the 401; the SDK authorizes and retries by itself.
    await client
      .connect(new StreamableHTTPClientTransport(serverUrl, { authProvider }))
      .catch((e) => {
        e.message += `\n--- provider errors ---\n${idp.errors.join('\n')}\n--- portcullis ---\n${proxy.log().slice(-3000)}`;
        throw e;
      });
    const tokens = authProvider.tokens();
    assert.ok(tokens?.access_token, 'the SDK obtained a token');
    const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
    assert.equal(claims.iss, idp.issuer);
    assert.equal(claims.aud, resource, 'a token for the resource the metadata names (RFC 8707)');
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    assert.deepEqual(result.content, [{ type: 'text', text: idp.machineClientId }]);
    await client.close();
  });
});
