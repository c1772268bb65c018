// A real OpenID Connect provider (the `oidc-provider` package) for skillgate's
// integration tests, listening on 127.0.0.1 over plain http.
//
//   OIDC_PORT=0 node tests/node/oidc_provider.mjs
//
// Once it listens, and its discovery document answers, it prints exactly one
// JSON line on stdout:
//
//   {"issuer":"http://127.0.0.1:PORT","client_id":"…","client_secret":"…","token_endpoint":"…"}
//
// Everything else it says goes to stderr. It has one confidential client that
// may only use the client_credentials grant; its access tokens are JWTs
// (RFC 9068, header `typ: at+jwt`, RS256) for the resource server whose
// audience is `skillgate`, and they carry `groups: ["ci", "billing"]`.
//
// It stops on SIGTERM/SIGINT and when its stdin reaches end of file, so a test
// process that dies (even by SIGKILL, which closes the pipe) leaves no orphan.
// Set OIDC_KEEP_STDIN=1 to run it by hand with stdin at /dev/null.

import { randomBytes, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

// oidc-provider prints its development notices with console.info, which goes
// to stdout; stdout must carry only the one JSON line.
console.info = (...args) => console.error(...args);
console.log = (...args) => console.error(...args);

/** Audience of the access tokens, and what skillgate checks `aud` against. */
const AUDIENCE = 'skillgate';
/**
 * Resource indicator (RFC 8707) a client asks for. oidc-provider requires an
 * absolute URI here, so a bare `skillgate` is refused with invalid_target;
 * the URN maps to the audience above.
 */
const RESOURCE = 'urn:skillgate';
const SCOPE = 'messages:write';
/**
 * Resource servers by indicator. The second one exists so tests can get a
 * real, validly signed token whose audience is *not* skillgate.
 */
const RESOURCE_SERVERS = new Map([
  [RESOURCE, AUDIENCE],
  ['urn:other-service', 'other-service'],
]);
const GROUPS = ['ci', 'billing'];

const CLIENT_ID = 'skillgate-ci';
const CLIENT_SECRET = randomBytes(32).toString('base64url');

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const kid = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;
  return [
    // The first RS256 key is the one access tokens are signed with.
    { ...rsa, kid: kid('rsa'), alg: 'RS256', use: 'sig' },
    { ...ec, kid: kid('ec'), alg: 'ES256', use: 'sig' },
  ];
}

function stop(server, code) {
  server.close(() => process.exit(code));
  server.closeAllConnections?.();
  // Never hang on a connection that does not close.
  setTimeout(() => process.exit(code), 2000).unref();
}

async function main() {
  const port = Number.parseInt(process.env.OIDC_PORT ?? '0', 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`OIDC_PORT must be a port number, got ${JSON.stringify(process.env.OIDC_PORT)}`);
  }

  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: SCOPE,
      },
    ],
    // Both ways of sending the secret work on the token endpoint.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    scopes: ['openid', SCOPE],
    jwks: { keys: signingKeys() },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          const audience = RESOURCE_SERVERS.get(resourceIndicator);
          if (audience === undefined) {
            throw new errors.InvalidTarget();
          }
          return {
            audience,
            scope: SCOPE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 60 * 60,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => {
      if (token.clientId === CLIENT_ID) {
        return { groups: GROUPS };
      }
      return undefined;
    },
    ttl: {
      ClientCredentials: 60 * 60,
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
  server.on('request', provider.callback());

  process.on('SIGTERM', () => stop(server, 0));
  process.on('SIGINT', () => stop(server, 0));
  if (process.env.OIDC_KEEP_STDIN !== '1') {
    process.stdin.on('end', () => stop(server, 0));
    process.stdin.on('error', () => stop(server, 0));
    process.stdin.resume();
  }

  // Announce only once discovery really answers.
  const discoveryResponse = await fetch(`${issuer}/.well-known/openid-configuration`);
  if (!discoveryResponse.ok) {
    throw new Error(`own discovery document answered ${discoveryResponse.status}`);
  }
  const discovery = await discoveryResponse.json();
  if (discovery.issuer !== issuer) {
    throw new Error(`discovery issuer ${discovery.issuer} is not ${issuer}`);
  }

  process.stdout.write(`${JSON.stringify({
    issuer,
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    token_endpoint: discovery.token_endpoint,
    jwks_uri: discovery.jwks_uri,
    resource: RESOURCE,
    audience: AUDIENCE,
    scope: SCOPE,
  })}\n`);
}

main().catch((err) => {
  console.error('oidc_provider.mjs failed:', err);
  process.exit(1);
});
