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
// (RFC 9068, header `typ: at+jwt`) for the resource server whose audience is
// `skillgate`, and they carry `groups: ["ci", "billing"]`.
//
// Signing algorithms: the JWKS has one key per algorithm in ALGORITHMS
// (RS256 and PS256 on two RSA keys, ES256 on P-256, EdDSA on Ed25519). A token
// for `urn:skillgate` is signed with OIDC_ACCESS_TOKEN_ALG (default RS256); a
// token for `urn:skillgate:<alg in lower case>` (e.g. `urn:skillgate:es256`)
// with that algorithm, same audience.
//
// Key rotation: `POST /admin/rotate-keys` with `Authorization: Bearer
// <admin_token>` (from the JSON line) replaces every signing key with a fresh
// one (new kids) without changing the port, issuer or client; it answers
// `{"kids":{"RS256":"…",…}}`. Tokens signed before it no longer verify against
// the new JWKS.
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
/** Every access-token signing algorithm this provider has a key for. */
const ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const DEFAULT_ALG = process.env.OIDC_ACCESS_TOKEN_ALG ?? 'RS256';
if (!ALGORITHMS.includes(DEFAULT_ALG)) {
  throw new Error(`OIDC_ACCESS_TOKEN_ALG must be one of ${ALGORITHMS.join(', ')}, got ${DEFAULT_ALG}`);
}
/**
 * Resource servers by indicator: audience and signing algorithm. `urn:other-service`
 * exists so tests can get a real, validly signed token whose audience is *not*
 * skillgate; `urn:skillgate:<alg>` picks the signing algorithm.
 */
const RESOURCE_SERVERS = new Map([
  [RESOURCE, { audience: AUDIENCE, alg: DEFAULT_ALG }],
  ['urn:other-service', { audience: 'other-service', alg: DEFAULT_ALG }],
  ...ALGORITHMS.map((alg) => [`${RESOURCE}:${alg.toLowerCase()}`, { audience: AUDIENCE, alg }]),
]);
/** Guards the admin endpoint; printed in the JSON line. */
const ADMIN_TOKEN = randomBytes(24).toString('base64url');
const GROUPS = ['ci', 'billing'];

const CLIENT_ID = 'skillgate-ci';
const CLIENT_SECRET = randomBytes(32).toString('base64url');

function signingKeys() {
  const jwk = (type, options) => generateKeyPairSync(type, options).privateKey.export({ format: 'jwk' });
  const kid = (prefix) => `${prefix}-${randomBytes(6).toString('hex')}`;
  return [
    // The first key is the RSA key RS256 access tokens are signed with.
    { ...jwk('rsa', { modulusLength: 2048 }), kid: kid('rsa'), alg: 'RS256', use: 'sig' },
    { ...jwk('ec', { namedCurve: 'P-256' }), kid: kid('ec'), alg: 'ES256', use: 'sig' },
    { ...jwk('rsa', { modulusLength: 2048 }), kid: kid('rsa-pss'), alg: 'PS256', use: 'sig' },
    { ...jwk('ed25519'), kid: kid('ed'), alg: 'EdDSA', use: 'sig' },
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

  const makeProvider = (keys) => new Provider(issuer, {
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
    jwks: { keys },
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
          const rs = RESOURCE_SERVERS.get(resourceIndicator);
          if (rs === undefined) {
            throw new errors.InvalidTarget();
          }
          return {
            audience: rs.audience,
            scope: SCOPE,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 60 * 60,
            jwt: { sign: { alg: rs.alg } },
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
  const kidsOf = (keys) => Object.fromEntries(keys.map((k) => [k.alg, k.kid]));
  const start = (keys) => {
    const provider = makeProvider(keys);
    provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error:', err));
    return { handle: provider.callback(), kids: kidsOf(keys) };
  };
  let current = start(signingKeys());

  // Rotation swaps in a provider with fresh keys; the port, issuer and
  // client stay, so a relying party sees only a new JWKS.
  const admin = async (req, res) => {
    const send = (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${ADMIN_TOKEN}`) {
      send(401, { error: 'unauthorized' });
    } else if (req.method !== 'POST' || req.url !== '/admin/rotate-keys') {
      send(404, { error: 'not_found' });
    } else {
      current = start(signingKeys());
      console.error('oidc_provider.mjs: signing keys rotated');
      send(200, { kids: current.kids });
    }
  };
  server.on('request', (req, res) => {
    if (req.url?.startsWith('/admin/')) {
      admin(req, res).catch((err) => {
        console.error('admin endpoint failed:', err);
        res.writeHead(500).end();
      });
    } else {
      current.handle(req, res);
    }
  });

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
    admin_token: ADMIN_TOKEN,
    algorithms: ALGORITHMS,
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    token_endpoint: discovery.token_endpoint,
    jwks_uri: discovery.jwks_uri,
    kids: current.kids,
    resource: RESOURCE,
    audience: AUDIENCE,
    scope: SCOPE,
  })}\n`);
}

main().catch((err) => {
  console.error('oidc_provider.mjs failed:', err);
  process.exit(1);
});
