// A real, certified OpenID provider for the end-to-end test: oidc-provider on loopback over
// plain http, with its built-in development login and consent pages.
//
// Two users, alice (groups sre, dev) and bob (group dev). The development login page accepts
// any password; the login name becomes the account id, which is the `sub`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

export const CLIENT_ID = 'portcullis';
export const CLIENT_SECRET = randomBytes(24).toString('base64url');

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

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `e2e-${randomBytes(4).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
}

/**
 * Starts the provider on 127.0.0.1 on an ephemeral port.
 *
 * @param {{ redirectUri: string, postLogoutRedirectUri: string }} opts
 * @returns {Promise<{ issuer: string, clientId: string, clientSecret: string,
 *   errors: string[], close: () => Promise<void> }>}
 */
export async function startIdp({ redirectUri, postLogoutRedirectUri }) {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        application_type: 'web',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: [redirectUri],
        post_logout_redirect_uris: [postLogoutRedirectUri],
      },
    ],
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
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
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 3600,
      Grant: 3600,
    },
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

  // Everything the provider refuses is kept, so a failing test can say why.
  const errors = [];
  for (const event of [
    'server_error',
    'authorization.error',
    'grant.error',
    'end_session.error',
    'userinfo.error',
    'jwks.error',
    'discovery.error',
  ]) {
    provider.on(event, (...args) => {
      const err = args.find((a) => a instanceof Error);
      errors.push(`${event}: ${err ? `${err.message} ${err.error_description ?? ''}` : ''}`.trim());
    });
  }

  server.on('request', provider.callback());

  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  return {
    issuer,
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    errors,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
