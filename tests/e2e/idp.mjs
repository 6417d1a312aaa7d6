// A real, certified OpenID provider for the end-to-end tests: oidc-provider on loopback over
// plain http, with its built-in development login and consent pages.
//
// - `portcullis`: a confidential web client (authorization code with PKCE, refresh tokens).
// - `ci-runner`: a client_credentials client; its access tokens are JWTs (ES256, `at+jwt`)
//   for the resource `API_AUDIENCE` with the scope `api:read`.
// - Two users: alice (groups sre, dev) and bob (group dev). The development login page accepts
//   any password; the login name becomes the account id, which is the `sub`.
// - Signing keys: one RSA (RS256, ID tokens) and one EC P-256 (ES256, access tokens).
//
// The returned handle can rotate the signing keys (new keys published, old ones withdrawn) and
// stop and restart the provider on the same port, so tests can stage a key rotation and an
// outage without restarting portcullis. Grants, sessions and refresh tokens live in the
// provider's in-memory store, which both survive.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';

import Provider from 'oidc-provider';

export const CLIENT_ID = 'portcullis';
export const MACHINE_CLIENT_ID = 'ci-runner';
export const API_AUDIENCE = 'https://api.portcullis.test';
export const API_SCOPE = 'api:read';

export const USERS = {
  alice: {
    email: 'alice@example.com',
    email_verified: true,
    preferred_username: 'alice',
    name: 'Alice Example',
    groups: ['sre', 'dev'],
  },
  bob: {
    email: 'bob@example.com',
    email_verified: true,
    preferred_username: 'bob',
    name: 'Bob Example',
    groups: ['dev'],
  },
};

/** A fresh RS256 and ES256 signing key pair, private JWKs with new key ids. */
function signingKeys() {
  const tag = randomBytes(4).toString('hex');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: `rs-${tag}`, alg: 'RS256', use: 'sig' },
    { ...ec.export({ format: 'jwk' }), kid: `es-${tag}`, alg: 'ES256', use: 'sig' },
  ];
}

/**
 * oidc-provider's mutual-TLS hooks for a provider that terminates TLS itself: the client
 * certificate is the one on the connection, verified against the CA the server was given,
 * and a `tls_client_auth_san_dns` registration is matched against its DNS names.
 */
const MTLS_HOOKS = {
  getCertificate(ctx) {
    const socket = ctx.socket;
    if (typeof socket.getPeerX509Certificate !== 'function') return undefined;
    return socket.getPeerX509Certificate() ?? undefined;
  },
  certificateAuthorized(ctx) {
    return ctx.socket.authorized === true;
  },
  certificateSubjectMatches(ctx, property, expected) {
    const cert = MTLS_HOOKS.getCertificate(ctx);
    if (!cert || property !== 'tls_client_auth_san_dns') return false;
    return (cert.subjectAltName ?? '').split(', ').includes(`DNS:${expected}`);
  },
};

/**
 * Starts the provider on 127.0.0.1 on an ephemeral port (or on `port`, one the caller reserved
 * among others, so that the kernel cannot hand the provider one of those).
 *
 * @param {{ redirectUris: string[], postLogoutRedirectUris: string[],
 *   accessTokenTtl?: number, webClient?: object, clients?: object[], features?: object,
 *   tls?: { key: string, cert: string, ca: string }, port?: number }} opts
 *   accessTokenTtl: seconds a login's access token lives (a short one makes portcullis
 *   refresh the session); webClient: metadata merged into portcullis' client (another
 *   token_endpoint_auth_method); clients: more clients; features: merged into the features;
 *   options: more provider options (e.g. rotateRefreshToken); tls: PEM key, certificate and
 *   client CA of a second, HTTPS listener for mutual TLS, which
 *   discovery names as the `mtls_endpoint_aliases` token endpoint (mTLS features on)
 */
export async function startIdp({
  redirectUris,
  postLogoutRedirectUris,
  accessTokenTtl = 3600,
  webClient = {},
  clients = [],
  features = {},
  tls,
  options = {},
  port: listenPort = 0,
}) {
  const clientSecret = randomBytes(24).toString('base64url');
  const machineSecret = randomBytes(24).toString('base64url');
  const cookieKeys = [randomBytes(32).toString('base64url')];
  // What the provider did, for assertions: every request path, and the errors it reported.
  const seen = { requests: [], grants: [], errors: [] };
  let keys = signingKeys();
  // The HTTPS listener for mutual TLS, when asked for: same provider, same callback.
  const tlsServer = tls
    ? createTlsServer({ key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: false })
    : undefined;
  if (tlsServer) await listen(tlsServer, 0);
  const mtlsBase = tlsServer ? `https://127.0.0.1:${tlsServer.address().port}` : undefined;

  function build(issuer) {
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: clientSecret,
          application_type: 'web',
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          redirect_uris: redirectUris,
          post_logout_redirect_uris: postLogoutRedirectUris,
          ...webClient,
        },
        {
          client_id: MACHINE_CLIENT_ID,
          client_secret: machineSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        },
        ...clients,
      ],
      ...(mtlsBase
        ? {
            discovery: { mtls_endpoint_aliases: { token_endpoint: `${mtlsBase}/token` } },
            clientAuthMethods: [
              'client_secret_basic',
              'client_secret_post',
              'private_key_jwt',
              'tls_client_auth',
            ],
          }
        : {}),
      jwks: { keys },
      cookies: { keys: cookieKeys },
      // Which claims each scope releases; `groups` rides on `profile`.
      claims: {
        openid: ['sub'],
        email: ['email', 'email_verified'],
        profile: ['preferred_username', 'name', 'groups'],
      },
      // Put the scope's claims into the ID token too, not only behind the userinfo endpoint.
      conformIdTokenClaims: false,
      // The provider requires PKCE only of public clients by default; demand it of this
      // confidential one as well, so the test proves the proxy sends it.
      pkce: { required: () => true },
      // Refresh tokens for the web client without `offline_access` (the provider's default
      // asks for it), as many providers do for a confidential client.
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      features: {
        devInteractions: { enabled: true },
        rpInitiatedLogout: { enabled: true },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          // client_credentials without a `resource` parameter still gets the API's token.
          defaultResource: async (_ctx, client, oneOf) =>
            oneOf ?? (client.clientId === MACHINE_CLIENT_ID ? API_AUDIENCE : undefined),
          useGrantedResource: async () => false,
          getResourceServerInfo: async (_ctx, resource) => {
            if (resource !== API_AUDIENCE) throw new Provider.errors.InvalidTarget();
            return {
              scope: API_SCOPE,
              audience: API_AUDIENCE,
              accessTokenTTL: 600,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'ES256' } },
            };
          },
        },
        ...(mtlsBase
          ? {
              mTLS: {
                enabled: true,
                certificateBoundAccessTokens: true,
                tlsClientAuth: true,
                ...MTLS_HOOKS,
              },
            }
          : {}),
        ...features,
      },
      ttl: {
        AccessToken: accessTokenTtl,
        AuthorizationCode: 60,
        ClientCredentials: 600,
        IdToken: 3600,
        Interaction: 600,
        RefreshToken: 86400,
        Session: 3600,
        Grant: 3600,
      },
      ...options,
      async findAccount(_ctx, id) {
        const user = USERS[id];
        if (!user) return undefined;
        return {
          accountId: id,
          async claims() {
            return { sub: id, ...user };
          },
        };
      },
    });
    for (const event of [
      'server_error',
      'authorization.error',
      'grant.error',
      'end_session.error',
      'userinfo.error',
      'jwks.error',
      'discovery.error',
      'backchannel.error',
    ]) {
      provider.on(event, (...args) => {
        const err = args.find((a) => a instanceof Error);
        seen.errors.push(
          `${event}: ${err ? `${err.message} ${err.error_description ?? ''}` : ''}`.trim(),
        );
      });
    }
    provider.on('grant.success', (ctx) => {
      seen.grants.push(ctx.oidc.params?.grant_type ?? 'unknown');
    });
    return provider;
  }

  const server = createServer();
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await listen(server, listenPort);
  const port = server.address().port;
  const issuer = `http://127.0.0.1:${port}`;
  let callback = build(issuer).callback();
  server.on('request', (req, res) => {
    seen.requests.push(new URL(req.url, issuer).pathname);
    callback(req, res);
  });
  tlsServer?.on('request', (req, res) => {
    seen.requests.push(`mtls:${new URL(req.url, issuer).pathname}`);
    callback(req, res);
  });

  function close() {
    const closing = tlsServer?.listening
      ? new Promise((resolve) => {
          tlsServer.close(() => resolve());
          tlsServer.closeAllConnections();
        })
      : Promise.resolve();
    return Promise.all([
      closing,
      new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
    ]);
  }

  return {
    issuer,
    clientId: CLIENT_ID,
    clientSecret,
    machineClientId: MACHINE_CLIENT_ID,
    machineClientSecret: machineSecret,
    tokenEndpoint: `${issuer}/token`,
    /** The token endpoint on the HTTPS listener (mutual TLS), when there is one. */
    mtlsTokenEndpoint: mtlsBase ? `${mtlsBase}/token` : undefined,
    seen,
    errors: seen.errors,
    /** The key ids currently published. */
    kids: () => keys.map((k) => k.kid),
    /** How many times the key set was fetched. */
    jwksFetches: () => seen.requests.filter((p) => p === '/jwks').length,
    /** How many refresh_token grants succeeded. */
    refreshes: () => seen.grants.filter((g) => g === 'refresh_token').length,
    /** New signing keys published, the old ones withdrawn; stored grants stay. */
    rotateKeys() {
      keys = signingKeys();
      callback = build(issuer).callback();
      return keys.map((k) => k.kid);
    },
    /** An outage: the port stops accepting connections and open ones are cut. */
    stop: close,
    /** The end of the outage: the same issuer, keys and stored grants. */
    async restart() {
      await listen(server, port);
    },
    close,
  };
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A client_credentials access token for the API, as a script would get one. */
export async function machineToken(idp) {
  const r = await fetch(idp.tokenEndpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(
        `${encodeURIComponent(idp.machineClientId)}:${encodeURIComponent(idp.machineClientSecret)}`,
      ).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: API_SCOPE }),
  });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`client_credentials: ${r.status} ${JSON.stringify(body)}`);
  return body.access_token;
}
